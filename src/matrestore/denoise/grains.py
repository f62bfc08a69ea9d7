"""Grain-size measurement of a (denoised) micrograph: what a metallographer denoises for.

::

    from matrestore.denoise import measure_grains
    res = measure_grains(denoised, pixel_size=0.2252, unit="um")
    res["summary"]["astm_g"], res["labels"], res["grains"][0]

Two segmentation rules (``method``):

* ``"levels"``: grains told apart by their grey levels — the one rule of the evaluation
  (:func:`matrestore.denoise.scoring.segment`: rank-normalised Sobel gradient, h-minima markers, watershed, thin
  regions and specks merged away), so its counts are those the model card's grain-count error is measured
  with. Right for tint-etched or polarised-light micrographs and for the network's output on them.
* ``"etched"``: grains as the bright cells of a network of dark etched boundaries (:data:`ETCHED`): Gaussian
  smoothing, robust 0.5–99.5 % normalisation, Otsu threshold; dark components smaller than ``min_speck`` px
  (pits, dust, inclusions that do not touch the network) are ignored; the bright phase is split at its necks by
  a watershed of its distance transform from h-maxima markers (``h`` px; this also closes small gaps in a
  boundary), regions smaller than ``min_area`` px are merged away, and the boundary pixels are shared out along
  the darkest line of each boundary (a watershed of the inverted image from the grains). Right for bright-field etched steels (the NIST micrograph).
* ``"auto"`` (default): ``"etched"`` when the image has such a network — after Otsu the dark phase (specks
  removed) covers 3–35 % of the image, is thin (mean half-width ≤ 3 px) and a network rather than scattered
  dots (at least half of it in line-like components: area ≥ :data:`LINEAR` × the square of the component's
  largest inscribed radius; a measure that does not depend on the image size) — else ``"levels"``. The
  result says which was used.

Per grain: area, equivalent
circle diameter, centroid, whether it touches the image border. Summary: counts (all / inside / cut by the
border), mean area and equivalent diameter of the grains inside, and, when the pixel size is known, the
**ASTM E112 planimetric (Jeffries) grain size number** ``G = 3.321928 log10(N_A) - 2.954`` with ``N_A`` the
grains per mm² counted as ``N_inside + N_border / 2`` over the image area, and the **lineal-intercept (Heyn)
number** ``G_l = -6.643856 log10(l) - 3.288`` with ``l`` (mm) the mean intercept length: the length of test
lines (every row and every column) over the grain boundaries they cross (runs under 3 px not counted).

No Qt, no napari: the Denoise widget and ``matrestore denoise grains`` both call :func:`measure_grains`.
"""

from __future__ import annotations

import math

import numpy as np

from .._validate import InputError, as_2d_image

__all__ = ["grains_csv", "table_csv", "mean_intercept", "astm_intercept_size", "ETCHED", "etched_network", "segment_etched", "choose_rule", "measure_grains", "grain_properties", "grain_summary", "astm_grain_size", "astm_planimetric_size", "WHOLE_MAX_PX", "UNIT_TO_MM", "GRAIN_COLUMNS"]

UNIT_TO_MM = {"nm": 1e-6, "nanometer": 1e-6, "um": 1e-3, "µm": 1e-3, "μm": 1e-3, "micrometer": 1e-3, "micron": 1e-3,
              "mm": 1.0, "millimeter": 1.0}
# the per-grain table's columns (CSV header)
GRAIN_COLUMNS = ("label", "area_px", "area", "diameter", "centroid_y", "centroid_x", "border")


# the etched-boundary rule (see the module docstring; fixed on the NIST micrograph's look, not tuned on a figure)
ETCHED = {"sigma": 1.0, "min_speck": 40, "h": 2.0, "min_area": 30}
# a whole-image segmentation holds ~0.45 GB per megapixel: larger images are measured field by field
# (matrestore.denoise.fields) by the Denoise widget and `matrestore denoise grains`
WHOLE_MAX_PX = 4_000_000
METHODS = ("auto", "etched", "levels")
# a dark component is line-like (a piece of a boundary network, not a pit or a dark grain) when its area is at
# least this many times the square of its largest inscribed radius (a disc: π; a line L long, w half wide: 2L/w)
LINEAR = 20.0


def _normalise(img, sigma: float) -> np.ndarray:
    from scipy import ndimage as ndi

    x = ndi.gaussian_filter(np.asarray(img, np.float64), sigma)
    lo, hi = np.percentile(x, [0.5, 99.5])
    if not hi > lo:
        lo, hi = float(x.min()), float(x.max())
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(x)


def etched_network(image, **rule) -> tuple[np.ndarray, dict]:
    """The dark etched-boundary phase of ``image`` (bool; specks removed) and its description
    ``{"threshold", "fraction", "half_width", "linear"}`` (see :func:`choose_rule`)."""
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu

    r = dict(ETCHED, **rule)
    x = _normalise(image, r["sigma"])
    t = float(threshold_otsu(x)) if np.ptp(x) > 0 else 0.5
    lab, n = ndi.label(x < t, structure=np.ones((3, 3), bool))
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    keep = sizes >= r["min_speck"]
    keep[0] = False
    dark = keep[lab]
    frac = float(dark.mean())
    dist = ndi.distance_transform_edt(dark)
    half = float(dist[dark].mean()) if dark.any() else 0.0
    linear = 0.0
    if keep.any():  # the share of the dark phase in line-like components: area >= LINEAR x (largest radius)²
        idx = np.flatnonzero(keep)
        radius = np.maximum(np.asarray(ndi.maximum(dist, lab, idx), np.float64), 0.5)
        area = sizes[idx].astype(np.float64)
        linear = float(area[area >= LINEAR * radius**2].sum() / area.sum())
    return dark, {"threshold": t, "fraction": frac, "half_width": half, "linear": linear}


def choose_rule(image) -> tuple[str, dict]:
    """``("etched" | "levels", the etched network's description)`` for ``method="auto"``."""
    _, d = etched_network(image)
    ok = 0.03 <= d["fraction"] <= 0.35 and d["half_width"] <= 3.0 and d["linear"] >= 0.5
    return ("etched" if ok else "levels"), d


def segment_etched(image, **rule) -> np.ndarray:
    """Grain labels (int32, 1…n) as the bright cells of the dark etched network (module docstring)."""
    from scipy import ndimage as ndi
    from skimage.morphology import h_maxima
    from skimage.segmentation import relabel_sequential, watershed

    r = dict(ETCHED, **rule)
    dark, _ = etched_network(image, **r)
    bright = ~dark
    if not bright.any():
        return np.ones(dark.shape, np.int32)
    dist = ndi.distance_transform_edt(bright)
    markers, n = ndi.label(h_maxima(ndi.gaussian_filter(dist, 1.0), r["h"]), structure=np.ones((3, 3), bool))
    if n == 0:
        markers, n = ndi.label(bright)
    lab = watershed(-dist, markers, mask=bright)
    area = np.bincount(lab.ravel(), minlength=lab.max() + 1)
    small = np.flatnonzero(area < r["min_area"])
    small = small[small > 0]
    if small.size and small.size < n:
        lab[np.isin(lab, small)] = 0
        lab = watershed(-dist, lab, mask=bright)
        lab[~bright] = 0
    lab = watershed(1.0 - _normalise(image, r["sigma"]), lab)  # boundary pixels: split along the darkest line
    return relabel_sequential(lab.astype(np.int32))[0]


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


def mean_intercept(labels, min_run: int = 3) -> float | None:
    """Mean lineal intercept (px) of a label image: the total length of all rows and columns as test lines
    over the number of grain-boundary crossings on them; None without a crossing. A run of a label shorter
    than ``min_run`` px along a line (a line grazing a jagged boundary, a sliver) is not a grain crossed:
    it joins the run before it."""
    lab = np.asarray(labels)
    cross = 0
    for lines in (lab, lab.T):
        for line in lines:
            change = np.flatnonzero(line[1:] != line[:-1]) + 1
            if change.size == 0:
                continue
            starts = np.concatenate([[0], change])
            lengths = np.diff(np.concatenate([starts, [line.size]]))
            vals = line[starts]
            keep = lengths >= min_run
            keep[0] = True
            v = vals[keep]
            cross += int(np.count_nonzero(v[1:] != v[:-1]))
    length = lab.shape[0] * (lab.shape[1] - 1) + lab.shape[1] * (lab.shape[0] - 1)
    return length / cross if cross else None


def astm_intercept_size(intercept_mm: float | None) -> float | None:
    """ASTM E112 grain size number from the mean lineal intercept (mm)."""
    return -6.643856 * math.log10(intercept_mm) - 3.288 if intercept_mm else None


def astm_planimetric_size(n_a: float | None) -> float | None:
    """ASTM E112 grain size number from ``n_a`` grains per mm² (true area); None for none."""
    return 3.321928 * math.log10(n_a) - 2.954 if n_a else None


def astm_grain_size(n_inside: int, n_border: int, area_mm2: float) -> float | None:
    """ASTM E112 planimetric grain size number from the grains inside / cut by the border of a field of
    ``area_mm2`` (true area on the specimen); None when no grain is counted."""
    return astm_planimetric_size((n_inside + 0.5 * n_border) / area_mm2)


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


def grain_summary(rows: list[dict], shape, pixel_size=None, unit=None, intercept_px: float | None = None) -> dict:
    """Counts, mean area / diameter of the grains inside, ASTM G (with a pixel size) of a grain table;
    with ``intercept_px`` (:func:`mean_intercept`) also the mean intercept (``unit``) and its ASTM number."""
    mm = _mm_per_px(pixel_size, unit)
    inside = [r for r in rows if not r["border"]]
    n_in, n_b = len(inside), len(rows) - len(inside)
    use = inside or rows
    out = {"count": len(rows), "inside": n_in, "border": n_b, "unit": unit if pixel_size is not None else "px",
           "pixel_size": None if pixel_size is None else float(pixel_size),
           "mean_area_px": float(np.mean([r["area_px"] for r in use])) if use else float("nan"),
           "mean_area": None, "mean_diameter": float(np.mean([r["diameter"] for r in use])) if use else float("nan"),
           "astm_g": None, "mean_intercept": None, "astm_g_intercept": None}
    if pixel_size is not None and use:
        out["mean_area"] = float(np.mean([r["area"] for r in use]))
    if mm is not None and rows:
        out["astm_g"] = astm_grain_size(n_in, n_b, float(shape[0] * shape[1]) * mm * mm)
    if intercept_px is not None:
        out["mean_intercept"] = intercept_px * (float(pixel_size) if pixel_size is not None else 1.0)
        if mm is not None:
            out["astm_g_intercept"] = astm_intercept_size(intercept_px * mm)
    return out


def measure_grains(image, pixel_size=None, unit=None, method: str = "auto", rule: dict | None = None,
                   labels=None) -> dict:
    """Segment ``image`` (2-D, any grey scale; or take ``labels``) and measure its grains.

    ``method``: ``"auto"``, ``"etched"`` or ``"levels"`` (module docstring); ``rule`` overrides that rule's
    parameters. Returns ``{"labels": int32 array, "grains": grain_properties rows, "summary": grain_summary
    (with ``"method"``: the rule used), "rule": its parameters, "network": the etched network's description
    (auto)}``. ``pixel_size`` in ``unit`` (nm, um/µm or mm) gives areas in
    ``unit``² and the ASTM E112 number; without it areas stay in px and ``astm_g`` is None.
    """
    from .scoring import SEGMENT, segment

    _mm_per_px(pixel_size, unit)  # a bad pixel size or unit is said before the work
    if method not in METHODS:
        raise InputError(f"unknown grain method {method!r}; choose from {', '.join(METHODS)}.")
    network = None
    if labels is None:
        img = as_2d_image(image, "image").astype(np.float64)
        if not np.all(np.isfinite(img)):
            raise InputError("image has NaN or infinite values; grains cannot be measured.")
        if min(img.shape) < 8:
            raise InputError(f"image of {img.shape[0]}×{img.shape[1]} px is too small to measure grains (8 px a side at least).")
        if float(np.ptp(img)) == 0.0:
            raise InputError("image is constant: there are no grain boundaries to find.")
        if method == "auto":
            method, network = choose_rule(img)
        lab = segment_etched(img, **(rule or {})) if method == "etched" else segment(img, **(rule or {}))
    else:
        method = "given"
        lab = np.asarray(labels)
        if lab.ndim != 2 or not np.issubdtype(lab.dtype, np.integer):
            raise InputError(f"labels must be a 2-D integer image, got {lab.ndim}-D {lab.dtype}.")
    rows = grain_properties(lab, pixel_size, unit)
    summary = dict(grain_summary(rows, lab.shape, pixel_size, unit, mean_intercept(lab)), method=method)
    base = ETCHED if method == "etched" else SEGMENT if method == "levels" else {}
    return {"labels": lab.astype(np.int32), "grains": rows, "summary": summary, "rule": dict(base, **(rule or {})),
            "network": network}


def table_csv(rows: list[dict], columns) -> str:
    """``rows`` as CSV text with the ``columns`` header (None: an empty cell); the per-grain and the
    per-field tables (:func:`grains_csv`, :func:`matrestore.denoise.fields.fields_csv`)."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: ("" if row.get(k) is None else row[k]) for k in columns})
    return buf.getvalue()


def grains_csv(rows: list[dict]) -> str:
    """The per-grain table (:func:`grain_properties` rows) as CSV text with the :data:`GRAIN_COLUMNS` header
    (an unknown size: an empty cell)."""
    return table_csv(rows, GRAIN_COLUMNS)
