"""Grain-size measurement of a (denoised) micrograph: what a metallographer denoises for.

::

    from matrestore.denoise import measure_grains
    res = measure_grains(denoised, pixel_size=0.2252, unit="um")
    res["summary"]["astm_g"], res["labels"], res["grains"][0]

Grains are found by the one segmentation rule of the evaluation (:func:`matrestore.denoise.scoring.segment`:
rank-normalised Sobel gradient, h-minima markers, watershed, thin regions and specks merged away), so the
figures here are those the model card's grain-count error is measured with. Per grain: area, equivalent
circle diameter, centroid, whether it touches the image border. Summary: counts (all / inside / cut by the
border), mean area and equivalent diameter of the grains inside, and, when the pixel size is known, the
**ASTM E112 planimetric (Jeffries) grain size number** ``G = 3.321928 log10(N_A) - 2.954`` with ``N_A`` the
grains per mm² counted as ``N_inside + N_border / 2`` over the image area.

No Qt, no napari: the Denoise widget and ``matrestore denoise grains`` both call :func:`measure_grains`.
"""

from __future__ import annotations

import math

import numpy as np

from .._validate import InputError, as_2d_image

__all__ = ["measure_grains", "grain_properties", "grain_summary", "astm_grain_size", "UNIT_TO_MM", "GRAIN_COLUMNS"]

UNIT_TO_MM = {"nm": 1e-6, "nanometer": 1e-6, "um": 1e-3, "µm": 1e-3, "μm": 1e-3, "micrometer": 1e-3, "micron": 1e-3,
              "mm": 1.0, "millimeter": 1.0}
# the per-grain table's columns (CSV header)
GRAIN_COLUMNS = ("label", "area_px", "area", "diameter", "centroid_y", "centroid_x", "border")


def _mm_per_px(pixel_size, unit) -> float | None:
    if pixel_size is None or unit is None:
        return None
    f = UNIT_TO_MM.get(str(unit).strip().lower().replace("\u00b5", "µ"))
    try:
        p = float(pixel_size)
    except (TypeError, ValueError):
        raise InputError(f"pixel size must be a number, got {pixel_size!r}.") from None
    if f is None:
        raise InputError(f"unknown length unit {unit!r}; use nm, um (µm) or mm.")
    if not (math.isfinite(p) and p > 0):
        raise InputError(f"pixel size must be positive, got {pixel_size!r}.")
    return p * f


def astm_grain_size(n_inside: int, n_border: int, area_mm2: float) -> float | None:
    """ASTM E112 planimetric grain size number from the grains inside / cut by the border of a field of
    ``area_mm2`` (true area on the specimen); None when no grain is counted."""
    n_a = (n_inside + 0.5 * n_border) / area_mm2
    return 3.321928 * math.log10(n_a) - 2.954 if n_a > 0 else None


def grain_properties(labels, pixel_size=None, unit=None) -> list[dict]:
    """One row per grain (:data:`GRAIN_COLUMNS`): area in px and in ``unit``² (None without a pixel size),
    equivalent circle diameter in ``unit`` (px without one), centroid (px, row/column), border contact."""
    from scipy import ndimage as ndi

    lab = np.asarray(labels)
    ids = np.unique(lab)
    ids = ids[ids > 0]
    if ids.size == 0:
        return []
    border = set(np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])).tolist())
    area = np.bincount(lab.ravel(), minlength=int(ids.max()) + 1)[ids]
    cents = ndi.center_of_mass(np.ones(lab.shape), lab, ids)
    px = None if pixel_size is None else float(pixel_size)
    rows = []
    for i, a, (cy, cx) in zip(ids.tolist(), area.tolist(), cents):
        d_px = 2.0 * math.sqrt(a / math.pi)
        rows.append({"label": int(i), "area_px": int(a), "area": None if px is None else a * px * px,
                     "diameter": d_px if px is None else d_px * px, "centroid_y": float(cy), "centroid_x": float(cx),
                     "border": i in border})
    return rows


def grain_summary(rows: list[dict], shape, pixel_size=None, unit=None) -> dict:
    """Counts, mean area / diameter of the grains inside, ASTM G (with a pixel size) of a grain table."""
    mm = _mm_per_px(pixel_size, unit)
    inside = [r for r in rows if not r["border"]]
    n_in, n_b = len(inside), len(rows) - len(inside)
    use = inside or rows
    out = {"count": len(rows), "inside": n_in, "border": n_b, "unit": unit if pixel_size is not None else "px",
           "pixel_size": None if pixel_size is None else float(pixel_size),
           "mean_area_px": float(np.mean([r["area_px"] for r in use])) if use else float("nan"),
           "mean_area": None, "mean_diameter": float(np.mean([r["diameter"] for r in use])) if use else float("nan"),
           "astm_g": None}
    if pixel_size is not None and use:
        out["mean_area"] = float(np.mean([r["area"] for r in use]))
    if mm is not None and rows:
        out["astm_g"] = astm_grain_size(n_in, n_b, float(shape[0] * shape[1]) * mm * mm)
    return out


def measure_grains(image, pixel_size=None, unit=None, rule: dict | None = None, labels=None) -> dict:
    """Segment ``image`` (2-D, any grey scale; or take ``labels``) and measure its grains.

    Returns ``{"labels": int32 array, "grains": grain_properties rows, "summary": grain_summary,
    "rule": the segmentation rule used}``. ``pixel_size`` in ``unit`` (nm, um/µm or mm) gives areas in
    ``unit``² and the ASTM E112 number; without it areas stay in px and ``astm_g`` is None.
    """
    from .scoring import SEGMENT, segment

    _mm_per_px(pixel_size, unit)  # a bad pixel size or unit is said before the work
    if labels is None:
        img = as_2d_image(image, "image").astype(np.float64)
        if not np.all(np.isfinite(img)):
            raise InputError("image has NaN or infinite values; grains cannot be measured.")
        if min(img.shape) < 8:
            raise InputError(f"image of {img.shape[0]}×{img.shape[1]} px is too small to measure grains (8 px a side at least).")
        if float(np.ptp(img)) == 0.0:
            raise InputError("image is constant: there are no grain boundaries to find.")
        lab = segment(img, **(rule or {}))
    else:
        lab = np.asarray(labels)
        if lab.ndim != 2 or not np.issubdtype(lab.dtype, np.integer):
            raise InputError(f"labels must be a 2-D integer image, got {lab.ndim}-D {lab.dtype}.")
    rows = grain_properties(lab, pixel_size, unit)
    return {"labels": lab.astype(np.int32), "grains": rows, "summary": grain_summary(rows, lab.shape, pixel_size, unit),
            "rule": dict(SEGMENT, **(rule or {}))}
