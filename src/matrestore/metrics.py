"""Image-quality metrics: PSNR, SSIM and ESSIM, plus set-level summaries (mean ± standard error).

All functions take a *reference* (ground truth) and an *image* of the same 2-D shape.

Data range
----------
``data_range=None`` means: 1.0 for float images (assumed to lie in [0, 1]) and the dtype's range for
integer images (255 for uint8, 65535 for uint16). Pass an explicit value when that is not right,
e.g. for 12-bit data stored as uint16 (:func:`matrestore.io.effective_range` finds it).

PSNR and SSIM follow scikit-image (``skimage.metrics``) with its defaults: SSIM uses a 7×7 uniform
window, K1 = 0.01, K2 = 0.03 and sample covariance, and is averaged over the positions where the
window fits inside the image.

ESSIM (edge-based SSIM; Chen, Yang, Po & Xie, ICASSP 2006) keeps SSIM's luminance and contrast terms
and replaces its structure term by a comparison of *edge-direction vectors*:

1. Sobel gradients (``scipy.ndimage.sobel`` divided by 8, i.e. intensity change per pixel) give at
   every pixel a magnitude ``m`` and a direction ``θ`` in [0°, 360°).
2. The direction is quantised into 8 bins of 45° centred on 0°, 45°, ..., 315°. The edge-direction
   vector of a pixel has 8 elements: ``m`` in the element of its bin, 0 elsewhere (magnitude-weighted).
3. Over each 7×7 window (the same uniform window as SSIM) the vectors of the two images are compared
   like SSIM compares pixels: with window (co)variances summed over the 8 directions,
   ``σ²_D = Σ_k var(D_k)`` and ``σ_DxDy = Σ_k cov(Dx_k, Dy_k)`` (sample covariance as in SSIM), the
   edge term is ``e = (2 σ_DxDy + C3) / (σ²_Dx + σ²_Dy + C3)`` with ``C3 = C2 / 2``. It is 1 when the
   edges have the same direction, position and strength, falls when they move, turn or weaken, and
   is negative when they are anti-correlated.
4. ``ESSIM map = l · c · e`` with ``l = (2 μx μy + C1) / (μx² + μy² + C1)``,
   ``c = (2 σx σy + C2) / (σx² + σy² + C2)`` (window statistics as in SSIM), ``C1 = (0.01 L)²``,
   ``C2 = (0.03 L)²``, ``L`` the data range. ESSIM is the mean of the map over the positions where
   the window fits (a border of 3 pixels is left out, as in scikit-image's SSIM).

ESSIM is 1 for identical images, symmetric in its two arguments and lies in [-1, 1]. Because blur
spreads and weakens edges, it falls further than SSIM when an image is blurred (tested), which is why
the SEM paper reports it: like there, ESSIM values are lower than SSIM values for interpolated images.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np
from scipy import ndimage as ndi

from ._validate import InputError, as_2d_image, check_same_shape

WIN_SIZE = 7
K1, K2 = 0.01, 0.03
N_DIRECTIONS = 8

__all__ = [
    "default_data_range",
    "percentile_range",
    "effective_data_range",
    "psnr",
    "ssim",
    "essim",
    "compute_all",
    "mean_sem",
    "summarize",
    "METRICS",
]

METRICS = ("psnr", "ssim", "essim")


def percentile_range(image, low: float, high: float, max_pixels: int = 4_000_000) -> tuple[float, float]:
    """``(lo, hi)``: the ``low``/``high`` percentiles of an image (on a regular subsample above
    ``max_pixels``: plenty for two percentiles), ``hi > lo`` guaranteed (min/max, then ``lo + 1``): the
    normalisation every network's input uses."""
    a = np.asarray(image, dtype=np.float64)
    if a.size > max_pixels:
        step = int(math.ceil(math.sqrt(a.size / max_pixels)))
        a = a[::step, ::step]
    lo, hi = np.percentile(a, [low, high])
    if not hi > lo:
        lo, hi = float(a.min()), float(a.max())
    if not hi > lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def default_data_range(image: np.ndarray) -> float:
    """The data range L assumed when none is given, only where the data cannot contradict it:

    - float images with values in [0, 1]: 1 (in [-1, 1] with negative values: 2, as scikit-image);
    - 8- and 16-bit integer images: the dtype's range (255, 65535, ...).

    Anything else — float values outside [-1, 1] (e.g. 0–255 data in float64) or 32/64-bit integers,
    whose dtype range says nothing about the data — raises :class:`InputError` asking for
    ``data_range`` (or :func:`effective_data_range`, which the CLI and widgets use).
    """
    if np.issubdtype(image.dtype, np.floating):
        lo, hi = float(np.min(image)), float(np.max(image))
        if lo >= 0.0 and hi <= 1.0:
            return 1.0
        if lo >= -1.0 and hi <= 1.0:
            return 2.0
        raise InputError(
            f"float values span [{lo:g}, {hi:g}], outside [0, 1]: the data range cannot be assumed; pass "
            "data_range (e.g. data_range=255 for 8-bit values) or use metrics.effective_data_range(reference).")
    info = np.iinfo(image.dtype)
    if info.bits > 16:
        raise InputError(
            f"{image.dtype} data: its dtype range ({info.min}..{info.max}) says nothing about the values; pass "
            "data_range (e.g. 255 or 4095) or use metrics.effective_data_range(reference).")
    return float(info.max - info.min) if info.min < 0 else float(info.max)


def effective_data_range(image: np.ndarray) -> float:
    """Data range of the values an image actually uses, for comparing real micrographs.

    Floats: 1.0 when the values lie in [0, 1], else ``max - min``. Integers: the smallest
    ``2**b - 1`` (b = 8, 10, 12, 14, 16, 32) that holds the maximum, so 8-bit data in a uint16
    container is compared on its 8-bit range, not on 65535.
    """
    arr = np.asarray(image)
    if np.issubdtype(arr.dtype, np.floating):
        lo, hi = float(np.min(arr)), float(np.max(arr))
        return 1.0 if (lo >= 0.0 and hi <= 1.0) else max(hi - lo, 1e-12)
    hi = int(np.max(arr))
    for bits in (8, 10, 12, 14, 16, 32):
        if hi <= 2**bits - 1:
            return float(2**bits - 1)
    return float(np.iinfo(arr.dtype).max)


def _prepare(reference, image, data_range):
    ref = as_2d_image(reference, "reference")
    img = as_2d_image(image, "image")
    check_same_shape(ref, img)
    if min(ref.shape) < WIN_SIZE:
        raise InputError(f"images of shape {ref.shape} are smaller than the {WIN_SIZE}×{WIN_SIZE} window.")
    if data_range is None:
        data_range = default_data_range(ref)
    data_range = float(data_range)
    if not data_range > 0:
        raise InputError(f"data_range must be positive, got {data_range}.")
    return ref.astype(np.float64), img.astype(np.float64), data_range


def psnr(reference, image, data_range=None) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(L² / MSE)``; ``inf`` for identical images."""
    ref, img, L = _prepare(reference, image, data_range)
    mse = float(np.mean((ref - img) ** 2))
    if mse == 0:
        return math.inf
    return 10.0 * math.log10(L * L / mse)


def _window_stats(x, y):
    """Window means, sample variances and covariance (skimage's SSIM conventions)."""
    filt = lambda a: ndi.uniform_filter(a, size=WIN_SIZE, mode="reflect")  # noqa: E731
    np_ = WIN_SIZE * WIN_SIZE
    cov_norm = np_ / (np_ - 1)
    ux, uy = filt(x), filt(y)
    vx = cov_norm * (filt(x * x) - ux * ux)
    vy = cov_norm * (filt(y * y) - uy * uy)
    vxy = cov_norm * (filt(x * y) - ux * uy)
    return ux, uy, np.maximum(vx, 0), np.maximum(vy, 0), vxy


def _crop_mean(m: np.ndarray) -> float:
    pad = (WIN_SIZE - 1) // 2
    return float(m[pad:-pad, pad:-pad].mean())


def ssim(reference, image, data_range=None, full: bool = False):
    """Structural similarity (Wang et al. 2004) with scikit-image's defaults.

    Returns the mean SSIM, or ``(mean, map)`` with ``full=True``.
    """
    ref, img, L = _prepare(reference, image, data_range)
    C1, C2 = (K1 * L) ** 2, (K2 * L) ** 2
    ux, uy, vx, vy, vxy = _window_stats(ref, img)
    smap = ((2 * ux * uy + C1) * (2 * vxy + C2)) / ((ux * ux + uy * uy + C1) * (vx + vy + C2))
    value = _crop_mean(smap)
    return (value, smap) if full else value


def edge_direction_maps(image: np.ndarray) -> np.ndarray:
    """Magnitude-weighted edge-direction vectors per pixel, shape (8, H, W) (see module docstring)."""
    gy = ndi.sobel(image, axis=0, mode="reflect") / 8.0
    gx = ndi.sobel(image, axis=1, mode="reflect") / 8.0
    mag = np.hypot(gx, gy)
    bins = np.round(np.arctan2(gy, gx) / (2 * np.pi / N_DIRECTIONS)).astype(np.int64) % N_DIRECTIONS
    return np.stack([np.where(bins == k, mag, 0.0) for k in range(N_DIRECTIONS)])


def essim(reference, image, data_range=None, full: bool = False):
    """Edge-based structural similarity (Chen, Yang, Po & Xie 2006); see the module docstring.

    Returns the mean ESSIM, or ``(mean, map)`` with ``full=True``.
    """
    ref, img, L = _prepare(reference, image, data_range)
    C1, C2 = (K1 * L) ** 2, (K2 * L) ** 2
    C3 = C2 / 2
    ux, uy, vx, vy, _ = _window_stats(ref, img)
    lum = (2 * ux * uy + C1) / (ux * ux + uy * uy + C1)
    con = (2 * np.sqrt(vx * vy) + C2) / (vx + vy + C2)
    var_dx = np.zeros_like(ref)
    var_dy = np.zeros_like(ref)
    cov_d = np.zeros_like(ref)
    for dx, dy in zip(edge_direction_maps(ref), edge_direction_maps(img)):
        _, _, vdx, vdy, cdxy = _window_stats(dx, dy)
        var_dx += vdx
        var_dy += vdy
        cov_d += cdxy
    edge = (2 * cov_d + C3) / (var_dx + var_dy + C3)
    emap = lum * con * edge
    value = _crop_mean(emap)
    return (value, emap) if full else value


_FUNCS = {"psnr": psnr, "ssim": ssim, "essim": essim}


def compute_all(reference, image, data_range=None, metrics: Sequence[str] = METRICS) -> dict:
    """All requested metrics as ``{"psnr": .., "ssim": .., "essim": ..}``."""
    unknown = set(metrics) - set(_FUNCS)
    if unknown:
        raise InputError(f"unknown metric(s) {sorted(unknown)}; choose from {list(_FUNCS)}.")
    return {m: _FUNCS[m](reference, image, data_range=data_range) for m in metrics}


def mean_sem(values: Iterable[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (sample std / sqrt(n)); SEM is 0 for a single value."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return math.nan, math.nan
    sem = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else 0.0
    return float(v.mean()), sem


def summarize(per_image: Sequence[Mapping[str, Mapping[str, float]]]) -> dict:
    """Set-level summary as in Tables 2-4 of the SEM paper.

    ``per_image`` is a list of ``{method: {metric: value}}``; the result is
    ``{method: {metric: {"mean": m, "sem": s, "n": n}}}``.
    """
    out: dict = {}
    for entry in per_image:
        for method, vals in entry.items():
            for metric, v in vals.items():
                out.setdefault(method, {}).setdefault(metric, []).append(v)
    return {
        method: {
            metric: dict(zip(("mean", "sem"), mean_sem(vs)), n=len(vs)) for metric, vs in metrics.items()
        }
        for method, metrics in out.items()
    }
