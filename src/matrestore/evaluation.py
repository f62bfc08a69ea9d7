"""Compare restored images with a ground truth: the engine behind ``matrestore compare`` and the
Compare widget (one place, so both give the same numbers).

Typical use::

    hr, meta = matrestore.io.read_image("HR.tif")
    result = evaluate_baselines(hr, scale=4)           # LR made by area averaging
    print(format_table(result["metrics"]))
"""

from __future__ import annotations

import csv
import io as _io
from typing import Mapping, Sequence

import numpy as np

from ._validate import InputError, as_2d_image, check_same_shape
from .baselines import METHODS, upsample
from .degrade import crop_to_multiple, downsample
from .metrics import METRICS, compute_all, effective_data_range, summarize

__all__ = [
    "match_lr_hr",
    "compare_images",
    "evaluate_baselines",
    "format_table",
    "format_summary",
    "table_to_csv",
    "find_overlaps",
    "check_not_constant",
    "LABELS",
]

LABELS = {"psnr": "PSNR (dB)", "ssim": "SSIM", "essim": "ESSIM"}


def match_lr_hr(hr: np.ndarray, lr: np.ndarray, scale: int) -> np.ndarray:
    """Crop ``hr`` to ``scale × lr.shape`` (bottom/right) or explain why the two do not fit."""
    hr = as_2d_image(hr, "ground truth")
    lr = as_2d_image(lr, "low-resolution image")
    want = (lr.shape[0] * scale, lr.shape[1] * scale)
    if any(w > h or h - w >= scale for w, h in zip(want, hr.shape)):
        raise InputError(
            f"low-resolution image {lr.shape} × scale {scale} = {want} does not match the ground truth "
            f"{hr.shape}; expected a low-resolution image of shape "
            f"{(hr.shape[0] // scale, hr.shape[1] // scale)} (or check the scale)."
        )
    return hr[: want[0], : want[1]]


def check_not_constant(image: np.ndarray, name: str = "ground truth") -> None:
    """InputError for a constant image: PSNR/SSIM/ESSIM against it measure nothing (ESSIM is undefined)."""
    lo, hi = np.min(image), np.max(image)
    if lo == hi:
        raise InputError(f"{name} is constant (every pixel {lo:g}): there is no structure to compare; "
                         "use an image with content.")


def find_overlaps(truth, references: Mapping[str, np.ndarray], patch: int = 32, n_patches: int = 5,
                  threshold: float = 0.95) -> list[tuple[str, float]]:
    """References that show (part of) the field of ``truth``: ``[(name, correlation), ...]``.

    The ``n_patches`` most textured ``patch``² windows of ``truth`` are searched in every reference by
    normalised cross-correlation; a reference where any of them correlates at ``threshold`` or more
    contains those pixels (the same file, a crop of the ground truth, or an image containing it), and
    an evaluation with it among the references would be flattered. Same pixel size assumed.
    """
    from skimage.feature import match_template

    t = as_2d_image(truth, "ground truth").astype(np.float64)
    p = int(min(patch, *t.shape))
    mine = _textured_patches(t, p, n_patches)
    found = []
    for name, ref in references.items():
        r = np.asarray(ref, dtype=np.float64)
        if r.ndim != 2 or min(r.shape) < p:
            continue
        # the truth's patches in the reference (it contains the field), and the reference's in the truth
        # (it is a crop of the field)
        pairs = [(r, q) for q in mine] + [(t, q) for q in _textured_patches(r, p, n_patches)]
        best = max((float(match_template(big, q).max()) for big, q in pairs), default=0.0)
        if best >= threshold:
            found.append((name, best))
    return found


def _textured_patches(img: np.ndarray, p: int, n: int) -> list[np.ndarray]:
    """The ``n`` ``p``² windows (on a half-overlapping grid) with the largest variance."""
    from skimage.util import view_as_windows

    win = view_as_windows(img, (p, p), max(p // 2, 1))
    var = win.reshape(*win.shape[:2], -1).var(-1)
    order = np.argsort(var, axis=None)[::-1][:n]
    return [win[np.unravel_index(i, var.shape)] for i in order if var.flat[i] > 0]


def compare_images(
    reference, candidates: Mapping[str, np.ndarray], data_range=None, metrics: Sequence[str] = METRICS
) -> dict:
    """``{name: {metric: value}}`` for every candidate against the reference.

    ``data_range=None`` uses :func:`matrestore.metrics.effective_data_range` of the reference.
    """
    ref = as_2d_image(reference, "ground truth")
    if not candidates:
        raise InputError("no candidate images to compare with the ground truth; give at least one.")
    check_not_constant(ref, "ground truth")
    if data_range is None:
        data_range = effective_data_range(ref)
    out = {}
    for name, img in candidates.items():
        img = as_2d_image(img, name)
        check_same_shape(ref, img, ("ground truth", name))
        out[name] = compute_all(ref, img, data_range=data_range, metrics=metrics)
    return out


def evaluate_baselines(
    hr,
    lr=None,
    scale: int = 4,
    methods: Sequence[str] = METHODS,
    extra: Mapping[str, np.ndarray] | None = None,
    data_range=None,
    noise: float | None = None,
    seed: int = 0,
) -> dict:
    """Upsample an LR image with each baseline and score it against the HR ground truth.

    Without ``lr`` the LR image is made from ``hr`` by area averaging (:func:`degrade.downsample`).
    ``extra`` adds already upsampled candidates (e.g. a network's output) of the HR shape.

    Returns ``{"hr": cropped HR, "lr": LR, "images": {method: upsampled}, "metrics": {method:
    {metric: value}}, "data_range": L, "scale": s}``.
    """
    if isinstance(scale, bool) or int(scale) != scale or scale < 1:
        raise InputError(f"scale must be a positive integer, got {scale!r}.")
    scale = int(scale)
    hr = as_2d_image(hr, "ground truth", min_size=scale)
    check_not_constant(hr, "ground truth")
    if lr is None:
        hr_c = crop_to_multiple(hr, scale)
        lr = downsample(hr_c, scale, noise=noise, seed=seed)
    else:
        hr_c = match_lr_hr(hr, lr, scale)
    images = {m: upsample(lr, scale, m) for m in methods}
    for name, img in (extra or {}).items():
        images[name] = img
    if data_range is None:
        data_range = effective_data_range(hr_c)
    scores = compare_images(hr_c, images, data_range=data_range)
    return {"hr": hr_c, "lr": lr, "images": images, "metrics": scores, "data_range": data_range, "scale": scale}


def _fmt(metric: str, v) -> str:
    """A table cell: 2 decimals for PSNR, 4 for the others; "inf" and "n/a" (None, NaN) spelled out."""
    if v is None or v != v:
        return "n/a"
    if v in (float("inf"), float("-inf")):
        return "inf" if v > 0 else "-inf"
    return f"{v:.2f}" if metric == "psnr" else f"{v:.4f}"


def format_table(scores: Mapping[str, Mapping[str, float]], metrics: Sequence[str] = METRICS) -> str:
    """Plain-text table, one row per method (as printed by the CLI)."""
    header = ["method"] + [LABELS.get(m, m) for m in metrics]
    rows = [[name] + [_fmt(m, vals[m]) for m in metrics] for name, vals in scores.items()]
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def format_summary(summary: Mapping, metrics: Sequence[str] = METRICS) -> str:
    """Table of mean ± standard error per method (Tables 2-4 of the SEM paper)."""
    header = ["method"] + [LABELS.get(m, m) for m in metrics]
    rows = []
    for name, vals in summary.items():
        row = [name]
        for m in metrics:
            s = vals[m]
            row.append(f"{_fmt(m, s['mean'])} ± {_fmt(m, s['sem'])}")
        rows.append(row)
    n = next(iter(next(iter(summary.values())).values()))["n"] if summary else 0
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([f"mean ± standard error over {n} image(s)", line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def table_to_csv(scores: Mapping[str, Mapping[str, float]], metrics: Sequence[str] = METRICS) -> str:
    """CSV text with a header row ``method,psnr,ssim,essim``."""
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method", *metrics])
    for name, vals in scores.items():
        w.writerow([name, *(repr(float(vals[m])) for m in metrics)])
    return buf.getvalue()


summarize = summarize  # re-exported for callers of this module
