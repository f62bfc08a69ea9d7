"""Evaluation of denoised grain micrographs against synthetic ground truth (docs/denoise.md, "Metrics").

Grain grey levels are arbitrary, so the figures that matter do not depend on the grey scale:

* **boundary F1** (``tol`` = 2 px): predicted boundaries are those of :func:`segment` (one fixed rule,
  invariant to any monotone change of the grey scale); true boundaries those of the grain labels, both by
  :func:`~matrestore.denoise.synth.boundary_map`. Precision: share of predicted boundary pixels within
  ``tol`` px (Euclidean) of a true one; recall: share of true boundary pixels within ``tol`` of a
  predicted one; F1 their harmonic mean.
* **grain count error**: ``|n_pred - n_true| / n_true`` from the segmentation (every grain, including
  those cut by the border); **mean grain area error**: the same for the mean area of the grains not
  touching the border.
* **PSNR / SSIM after an affine fit**: the output ``y`` is replaced by ``a y + b`` (least squares to the
  ground truth) before PSNR/SSIM with ``data_range = 1`` (the ground truth lies in [0, 1]).
* **scratch residual**: RMS of the affine-fitted output minus the ground truth inside the scratch mask.
* **time**: wall-clock seconds per image.
"""

from __future__ import annotations

import json
import math
import time
from typing import Callable, Mapping, Sequence

import numpy as np

from .._validate import InputError, as_2d_image
from ..metrics import psnr, ssim
from .synth import boundary_map

__all__ = [
    "SEGMENT",
    "segment",
    "robust_normalise",
    "affine_fit",
    "boundary_f1",
    "grain_stats",
    "evaluate_output",
    "evaluate_methods",
    "summarise",
    "format_table",
    "METRIC_NAMES",
]

# the one segmentation rule (fixed before any evaluation; see segment)
SEGMENT = {"normalise": "rank", "low": 1.0, "high": 99.0, "sigma": 1.0, "h": 0.03, "min_width": 2.5, "min_area": 30}

METRIC_NAMES = {
    "f1": "boundary F1",
    "precision": "boundary precision",
    "recall": "boundary recall",
    "count_err": "grain count error",
    "area_err": "mean grain area error",
    "psnr": "PSNR (affine) dB",
    "ssim": "SSIM (affine)",
    "scratch": "scratch residual",
    "time_s": "time per image s",
}


def rank_normalise(image) -> np.ndarray:
    """Each pixel's rank among all pixels, scaled to [0, 1] (ties share their mean rank): the same for
    every strictly increasing change of the grey scale (and mirrored for decreasing ones)."""
    from scipy.stats import rankdata

    a = np.asarray(image, dtype=np.float64)
    r = rankdata(a.ravel(), method="average").reshape(a.shape)
    return (r - 1.0) / max(a.size - 1, 1)


def robust_normalise(image, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """``(image - p_low) / (p_high - p_low)`` (float64): the same for any affine grey scale."""
    a = np.asarray(image, dtype=np.float64)
    lo, hi = np.percentile(a, [low, high])
    if not hi > lo:
        lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def segment(image, **rule) -> np.ndarray:
    """Grain labels (int32, 1…n) of a (denoised) micrograph by one fixed rule (:data:`SEGMENT`):

    1. replace every pixel by its rank, scaled to [0, 1] (so any monotone grey scale — an affine one, a
       gamma, a histogram matching — gives the same result; ``normalise="percentile"``: the 1st/99th
       percentiles instead, invariant to affine changes only);
    2. gradient magnitude (Sobel) of the image smoothed by a Gaussian of ``sigma`` px;
    3. markers: the regional minima of the gradient deeper than ``h`` (h-minima), one per basin;
    4. watershed of the gradient from the markers (every pixel gets a grain);
    5. regions narrower than ``2 × min_width`` px (largest distance to their border below
       ``min_width``: lines such as etched boundaries or scratches) or smaller than ``min_area`` px lose
       their marker, and the watershed is repeated.
    """
    from scipy import ndimage as ndi
    from skimage.filters import sobel
    from skimage.morphology import h_minima
    from skimage.segmentation import watershed

    r = dict(SEGMENT, **rule)
    x = rank_normalise(image) if r["normalise"] == "rank" else robust_normalise(image, r["low"], r["high"])
    g = sobel(ndi.gaussian_filter(x, r["sigma"]))
    markers, n = ndi.label(h_minima(g, r["h"]), structure=np.ones((3, 3), bool))
    if n == 0:
        return np.ones(x.shape, np.int32)
    lab = watershed(g, markers)
    for _ in range(2):
        inner = ~boundary_map(lab)
        inner[:, 1:] &= ~boundary_map(lab)[:, :-1]
        inner[1:, :] &= ~boundary_map(lab)[:-1, :]
        dist = ndi.distance_transform_edt(inner)
        idx = np.arange(1, lab.max() + 1)
        width = ndi.maximum(dist, lab, idx)
        area = np.bincount(lab.ravel(), minlength=lab.max() + 1)[1:]
        bad = idx[(np.asarray(width) < r["min_width"]) | (area < r["min_area"])]
        if bad.size == 0 or bad.size == idx.size:
            break
        m = markers.copy()
        m[np.isin(lab, bad)] = 0
        markers, _ = ndi.label(m > 0, structure=np.ones((3, 3), bool))
        if markers.max() == 0:
            break
        lab = watershed(g, markers)
    return lab.astype(np.int32)


def affine_fit(image, reference) -> np.ndarray:
    """``a · image + b`` with ``a, b`` least-squares fitted to ``reference`` (float64)."""
    y = np.asarray(image, dtype=np.float64).ravel()
    t = np.asarray(reference, dtype=np.float64).ravel()
    A = np.stack([y, np.ones_like(y)], 1)
    (a, b), *_ = np.linalg.lstsq(A, t, rcond=None)
    return (a * np.asarray(image, dtype=np.float64) + b)


def boundary_f1(pred: np.ndarray, true: np.ndarray, tol: float = 2.0) -> dict:
    """``{"precision", "recall", "f1"}`` of boolean boundary maps with a distance tolerance."""
    from scipy import ndimage as ndi

    pred, true = np.asarray(pred, bool), np.asarray(true, bool)
    if pred.shape != true.shape:
        raise InputError(f"boundary maps of shapes {pred.shape} and {true.shape} differ.")
    if not true.any() and not pred.any():
        return {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    if not pred.any() or not true.any():
        return {"precision": 0.0 if pred.any() else 1.0, "recall": 0.0 if true.any() else 1.0, "f1": 0.0}
    d_true = ndi.distance_transform_edt(~true)
    d_pred = ndi.distance_transform_edt(~pred)
    p = float(np.mean(d_true[pred] <= tol))
    r = float(np.mean(d_pred[true] <= tol))
    f = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return {"precision": p, "recall": r, "f1": f}


def grain_stats(labels: np.ndarray) -> dict:
    """``{"count": grains, "mean_area": mean area (px) of the grains not touching the border}``."""
    lab = np.asarray(labels)
    ids = np.unique(lab)
    ids = ids[ids > 0]
    border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    inner = np.setdiff1d(ids, border)
    areas = np.bincount(lab.ravel())
    mean_area = float(np.mean(areas[inner])) if inner.size else float(lab.size / max(ids.size, 1))
    return {"count": int(ids.size), "mean_area": mean_area}


def evaluate_output(output, clean, labels, masks: Mapping | None = None, tol: float = 2.0, rule: dict | None = None) -> dict:
    """Every metric of one output against its ground truth (``clean`` in [0, 1], grain ``labels``)."""
    out = as_2d_image(output, "output").astype(np.float64)
    if out.shape != np.shape(clean):
        raise InputError(f"output {out.shape} and ground truth {np.shape(clean)} differ in shape.")
    seg = segment(out, **(rule or {}))
    res = boundary_f1(boundary_map(seg), boundary_map(labels), tol)
    ps, ts = grain_stats(seg), grain_stats(labels)
    res["count_err"] = abs(ps["count"] - ts["count"]) / max(ts["count"], 1)
    res["area_err"] = abs(ps["mean_area"] - ts["mean_area"]) / max(ts["mean_area"], 1e-9)
    res["count"], res["count_true"] = ps["count"], ts["count"]
    fit = affine_fit(out, clean)
    res["psnr"] = psnr(np.asarray(clean, np.float64), fit, data_range=1.0)
    res["ssim"] = ssim(np.asarray(clean, np.float64), fit, data_range=1.0)
    sm = None if masks is None else masks.get("scratch")
    res["scratch"] = float(np.sqrt(np.mean((fit[sm] - np.asarray(clean)[sm]) ** 2))) if sm is not None and np.any(sm) else float("nan")
    return res


def evaluate_methods(pairs: Sequence, methods: Mapping[str, Callable], progress: Callable | None = None, tol: float = 2.0):
    """Generator: runs every method (``name -> f(noisy) -> output``) on every pair (objects with
    ``noisy``, ``clean``, ``labels``, ``masks``), yields ``{"kind": "step", ...}`` records, returns
    ``{"per_image": {method: [metrics, ...]}, "summary": {method: {metric: mean}}}``."""
    from ..progress import Kind, record

    per: dict = {m: [] for m in methods}
    total = len(pairs) * len(methods)
    k = 0
    t0 = time.perf_counter()
    for i, p in enumerate(pairs):
        for name, fn in methods.items():
            t = time.perf_counter()
            out = fn(p.noisy)
            dt = time.perf_counter() - t
            m = evaluate_output(out, p.clean, p.labels, p.masks, tol)
            m["time_s"] = dt
            per[name].append(m)
            k += 1
            yield record(Kind.STEP, step=k, total=total, message=f"image {i + 1}: {name}", elapsed_s=time.perf_counter() - t0)
    return {"per_image": per, "summary": summarise(per)}


def summarise(per: Mapping[str, Sequence[Mapping]]) -> dict:
    out = {}
    for name, rows in per.items():
        out[name] = {}
        for key in METRIC_NAMES:
            vals = [r[key] for r in rows if key in r and r[key] is not None and np.isfinite(r[key])]
            out[name][key] = float(np.mean(vals)) if vals else float("nan")
            if len(vals) > 1:
                out[name][key + "_sem"] = float(np.std(vals, ddof=1) / math.sqrt(len(vals)))
        out[name]["n"] = len(rows)
    return out


def format_table(summary: Mapping, keys=("f1", "precision", "recall", "count_err", "area_err", "psnr", "ssim", "scratch", "time_s")) -> str:
    """A Markdown table of a :func:`summarise` result, one row per method."""
    head = "| method | " + " | ".join(METRIC_NAMES[k] for k in keys) + " |"
    sep = "|---|" + "---:|" * len(keys)
    rows = [head, sep]
    for name, m in summary.items():
        cells = []
        for k in keys:
            v = m.get(k, float("nan"))
            cells.append("–" if v is None or not np.isfinite(v) else (f"{v:.2f}" if k == "psnr" else f"{v:.3f}"))
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def to_json(doc) -> str:
    def fix(o):
        if isinstance(o, dict):
            return {str(k): fix(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [fix(v) for v in o]
        if isinstance(o, (np.floating, float)):
            return float(o) if np.isfinite(o) else None
        if isinstance(o, np.integer):
            return int(o)
        return o

    return json.dumps(fix(doc), indent=1)
