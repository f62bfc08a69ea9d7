"""Grain size of a micrograph of any size, field by field (ASTM E112's statistics), out of core.

A gigapixel mosaic, a Zarr store or a large TIFF cannot be segmented whole in memory, and ASTM E112
does not ask for that: it measures a number of *fields* and reports their mean with its 95 % confidence
interval and relative accuracy. :func:`measure_fields_iter` does exactly that:

* **fields**: squares of ``field`` px on a regular grid (centred; the margins that do not fill a field are
  left out), all of them or ``max_fields`` chosen evenly over the image (grid cells at the points of the R2
  low-discrepancy sequence, the sampling of :func:`matrestore.denoise.lazy.sample_windows`: no regular
  stride that could alias with a periodic structure or a mosaic's seams). Only one field is in memory at a
  time (read from the lazy source: :func:`matrestore.io.open_lazy`).
* **per field**: :func:`~matrestore.denoise.grains.measure_grains` (the same rules), one rule for all
  fields (``method="auto"`` chooses it once, on the field nearest the image centre, so the fields are
  comparable); the field's grains per area ``N_A = (N_inside + N_border/2) / A`` (Jeffries) and its mean
  lineal intercept ``l``.
* **statistics** (ASTM E112, section 15–16 "statistical analysis"): for ``N_A`` and for ``l`` over the
  ``n`` fields, the mean ``x̄``, the standard deviation ``s``, the 95 % confidence interval ``t(0.975,
  n−1)·s/√n`` and the relative accuracy ``%RA = 100·CI/x̄`` (ASTM: 10 % or less is usually acceptable); the
  grain size numbers ``G`` and ``G_l`` from the means (with a pixel size).
* ``model=`` measures the *denoised* image: the lazy denoiser's image-wide preparation
  (:func:`~matrestore.denoise.lazy.prepare_iter`: normalisation, histogram look-up), then each field denoised
  alone with its halo (:func:`~matrestore.denoise.lazy.denoised_region`).

No Qt, no napari; progress records and a cancel flag as every long job here.
"""

from __future__ import annotations

import math
import time

import numpy as np

from .._validate import InputError
from ..progress import Kind, is_cancelled, record
from .grains import (METHODS, _mm_per_px, astm_intercept_size, astm_planimetric_size, choose_rule, measure_grains,
                     table_csv)

__all__ = ["field_grid", "measure_fields_iter", "measure_fields", "field_statistics", "fields_csv", "FIELD_COLUMNS",
           "MIN_FIELD"]

MIN_FIELD = 64  # px: a field smaller than this holds too few grains to count
FIELD_COLUMNS = ("field", "y0", "x0", "size", "count", "inside", "border", "n_per_area", "mean_intercept", "astm_g",
                 "astm_g_intercept")


def field_grid(shape, field: int = 1024, max_fields: int | None = None) -> list[tuple[int, int, int, int]]:
    """The fields ``(y0, y1, x0, x1)`` of an image of ``shape`` (module docstring): squares of ``field`` px
    (the image's shorter side when smaller) on a centred grid, raster order; ``max_fields`` of them chosen at
    the R2 sequence's points when there are more."""
    H, W = int(shape[0]), int(shape[1])
    f = min(int(field), H, W)
    if f < MIN_FIELD:
        raise InputError(f"a field of {f} px is too small to count grains in ({MIN_FIELD} px a side at least; "
                         f"the image is {H}×{W}).")
    ny, nx = H // f, W // f
    oy, ox = (H - ny * f) // 2, (W - nx * f) // 2
    cells = [(i, j) for i in range(ny) for j in range(nx)]
    if max_fields is not None:
        if int(max_fields) < 1:
            raise InputError(f"max_fields must be at least 1, got {max_fields}.")
        if len(cells) > int(max_fields):
            from .lazy import r2_points

            chosen, k = [], 1
            while len(chosen) < int(max_fields):
                u, v = r2_points(k)
                c = (min(ny - 1, int(u * ny)), min(nx - 1, int(v * nx)))
                if c not in chosen:
                    chosen.append(c)
                k += 1
            cells = sorted(chosen)
    return [(oy + i * f, oy + (i + 1) * f, ox + j * f, ox + (j + 1) * f) for i, j in cells]


def _t975(dof: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.975, dof))


def field_statistics(values) -> dict:
    """Mean, standard deviation, 95 % confidence interval (Student's t) and relative accuracy (%) of
    per-field values (None entries left out); ``n`` fields used."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
    n = int(v.size)
    out = {"n": n, "mean": float(v.mean()) if n else None, "std": None, "ci95": None, "ra_percent": None}
    if n >= 2:
        s = float(v.std(ddof=1))
        ci = _t975(n - 1) * s / math.sqrt(n)
        out.update(std=s, ci95=ci, ra_percent=100.0 * ci / out["mean"] if out["mean"] else None)
    return out


def measure_fields_iter(source, field: int = 1024, *, pixel_size=None, unit=None, method: str = "auto",
                        rule: dict | None = None, max_fields: int | None = None, model=None, denoise_options=None,
                        device=None, cancel=None):
    """Generator: measure the grains of ``source`` field by field (module docstring); progress records, then
    returns ``{"fields": one row per field (FIELD_COLUMNS), "summary": {...}, "rule", "method"}``.

    ``source``: anything :func:`matrestore.io.open_lazy` takes (array, dask or zarr array, TIFF, Zarr store);
    its pixel size is used when ``pixel_size``/``unit`` are not given. ``model``: a denoising model (or
    ``"default"``, ``"etched"``, a path) to measure the denoised image instead of the input."""
    from ..io import open_lazy
    from .lazy import lazy_grey

    if method not in METHODS:
        raise InputError(f"unknown grain method {method!r}; choose from {', '.join(METHODS)}.")
    if (pixel_size is None) != (unit is None):
        raise InputError("give the pixel size and its unit together (e.g. 0.2252 and 'um').")
    img = open_lazy(source)
    if pixel_size is None and img.pixel_size_nm:
        pixel_size, unit = float(img.pixel_size_nm), "nm"
    mm = _mm_per_px(pixel_size, unit)
    x, note = lazy_grey(img.data, "luminance", img.name)
    if note:
        yield record(Kind.WARNING, message=note)
    fields = field_grid(x.shape, field, max_fields)
    kernel = None
    if model is not None:
        from .lazy import prepare_iter

        kernel = yield from prepare_iter(x, model, denoise_options, device=device, cancel=cancel)
        if kernel is None:
            yield record(Kind.STOPPED, message="stopped while preparing the denoiser", step=0, total=len(fields))
            return None
    stage = "input" if kernel is None else "denoised"

    def read(win):
        if kernel is not None:  # the field alone with its halo, not the blocks around it
            from .lazy import denoised_region

            return denoised_region(kernel, x, win).astype(np.float64)
        y0, y1, x0, x1 = win
        return np.asarray(x[y0:y1, x0:x1], np.float64)

    chosen_from, read_once = None, {}
    if method == "auto":  # one rule for every field, chosen on the field nearest the centre
        cy, cx = x.shape[0] / 2, x.shape[1] / 2
        k = min(range(len(fields)), key=lambda i: (fields[i][0] + fields[i][1] - 2 * cy) ** 2
                + (fields[i][2] + fields[i][3] - 2 * cx) ** 2)
        centre = read(fields[k])
        if not np.all(np.isfinite(centre)) or float(np.ptp(centre)) == 0.0:
            raise InputError(f"field {k} (at the image centre) is constant or not finite: no rule can be chosen; "
                             "give the method.")
        method, _net = choose_rule(centre)
        chosen_from = k
        read_once = {k: centre}  # measured in the loop below without reading (or denoising) it again
    yield record(Kind.PHASE, phase="fields", message=(
        f"{len(fields)} field(s) of {fields[0][1] - fields[0][0]} px, {stage} image, {method} rule"
        + (f" (chosen on field {chosen_from})" if chosen_from is not None else "")), step=0, total=len(fields))
    rows, t0 = [], time.perf_counter()
    for i, win in enumerate(fields):
        if is_cancelled(cancel):
            yield record(Kind.STOPPED, message=f"stopped after {i} of {len(fields)} fields", step=i, total=len(fields))
            return None
        a = read_once.pop(i) if i in read_once else read(win)
        side = win[1] - win[0]
        row = {"field": i, "y0": win[0], "x0": win[2], "size": side, "count": 0, "inside": 0, "border": 0,
               "n_per_area": None, "mean_intercept": None, "astm_g": None, "astm_g_intercept": None, "error": None}
        try:
            res = measure_grains(a, pixel_size, unit, method=method, rule=rule)
        except InputError as exc:  # a blank field (a mosaic's empty margin): said in its row, not counted
            row["error"] = str(exc)
        else:
            s = res["summary"]
            area = side * side * (mm * mm if mm else 1.0)
            row.update(count=s["count"], inside=s["inside"], border=s["border"],
                       n_per_area=(s["inside"] + 0.5 * s["border"]) / area, mean_intercept=s["mean_intercept"],
                       astm_g=s["astm_g"], astm_g_intercept=s["astm_g_intercept"])
        rows.append(row)
        el = time.perf_counter() - t0
        yield record(Kind.STEP, step=i + 1, total=len(fields), elapsed_s=el,
                     eta_s=el / (i + 1) * (len(fields) - i - 1), message=f"field {i + 1}/{len(fields)}")
    na = field_statistics([r["n_per_area"] for r in rows])
    li = field_statistics([r["mean_intercept"] for r in rows])
    area_unit = "mm²" if mm else "px²"
    summary = {
        "fields": len(rows), "measured": na["n"], "field_px": fields[0][1] - fields[0][0], "stage": stage,
        "method": method, "rule_chosen_on_field": chosen_from, "unit": unit if pixel_size is not None else "px",
        "pixel_size": None if pixel_size is None else float(pixel_size),
        "grains_per_area": dict(na, unit=f"1/{area_unit}"),
        "mean_intercept": dict(li, unit=unit if pixel_size is not None else "px"),
        "astm_g": None, "astm_g_intercept": None,
        "grains_counted": int(sum(r["count"] for r in rows)),
        # the Jeffries mean grain area 1/N_A, in px² and (with a pixel size) in the unit²
        "mean_area_px": None, "mean_area": None,
    }
    if na["mean"]:
        summary["mean_area_px"] = 1.0 / (na["mean"] * (mm * mm if mm else 1.0))
        if mm:
            summary["mean_area"] = summary["mean_area_px"] * float(pixel_size) ** 2
            summary["astm_g"] = astm_planimetric_size(na["mean"])
    if mm and li["mean"]:  # the fields' intercepts are in the pixel size's unit
        summary["astm_g_intercept"] = astm_intercept_size(li["mean"] * mm / float(pixel_size))
    yield record(Kind.DONE, message=_line(summary))
    return {"fields": rows, "summary": summary, "method": method, "rule": rule or {}}


def _line(s: dict) -> str:
    na = s["grains_per_area"]
    ra = f", relative accuracy {na['ra_percent']:.1f} %" if na["ra_percent"] is not None else ""
    g = f"ASTM G {s['astm_g']:.2f}" if s["astm_g"] is not None else "no ASTM G (no pixel size)"
    gl = f", G intercept {s['astm_g_intercept']:.2f}" if s["astm_g_intercept"] is not None else ""
    return f"{s['measured']} of {s['fields']} fields measured ({s['method']} rule): {g}{gl}{ra}"


def measure_fields(source, field: int = 1024, progress=None, **kw) -> dict:
    """:func:`measure_fields_iter` run to the end (``progress``: a callback for its records)."""
    from ..progress import drive

    return drive(measure_fields_iter(source, field, **kw), progress)


def fields_csv(rows: list[dict]) -> str:
    """The per-field table as CSV text (:data:`FIELD_COLUMNS` and ``error``)."""
    return table_csv(rows, list(FIELD_COLUMNS) + ["error"])
