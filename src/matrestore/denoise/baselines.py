"""Classical denoisers (scikit-image) with parameters chosen WITHOUT ground truth.

Each works on the image mapped to [0, 1] by its 0.5/99.5 percentiles and returns the result in the
input's grey scale (float32). ``calibrate=True`` (default) picks the parameter by self-supervised
J-invariant calibration (:func:`skimage.restoration.calibrate_denoiser`) over the grid below, scaled by
the noise level from :func:`skimage.restoration.estimate_sigma` where the parameter is an intensity;
``calibrate=False`` uses the rule of thumb (the middle of each grid).

=========== ================================================================ =====================
method       parameter grid                                                   rule of thumb
=========== ================================================================ =====================
gaussian     sigma ∈ {0.5, 1, 1.5, 2, 3, 4} px                                 1.5 px
median       size ∈ {3, 5, 7, 9} px                                           5 px
bilateral    sigma_color ∈ σ̂·{1, 2, 4}, sigma_spatial ∈ {1, 2, 3} px             2σ̂, 2 px
nl_means     h ∈ σ̂·{0.6, 0.8, 1.0, 1.2}, patch 5, distance 6, fast mode        0.8σ̂
tv           weight ∈ σ̂·{0.5, 1, 2, 4, 8} (Chambolle)                          2σ̂
wavelet      BayesShrink, soft, db1, σ̂ estimated (no grid)                     same
bm3d         sigma_psd = σ̂ (only when the optional ``bm3d`` package is present) same
=========== ================================================================ =====================

σ̂: :func:`noise_sigma` of the normalised image (``skimage.restoration.estimate_sigma`` when PyWavelets is
installed, else the same MAD estimate on Haar coefficients). ``wavelet`` needs PyWavelets.
BM3D's licence is non-commercial: it is never a dependency, only used when installed.
"""

from __future__ import annotations

import time
from functools import partial

import numpy as np

from .._validate import InputError
from .apply import prepare_input
from .modelio import norm_stats

__all__ = ["BASELINES", "available_baselines", "run_baseline", "baseline_params"]

BASELINES = ("gaussian", "median", "bilateral", "nl_means", "tv", "wavelet", "bm3d")


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except Exception:  # noqa: BLE001
        return False
    return True


def _has_bm3d() -> bool:
    return _importable("bm3d")


def _has_pywt() -> bool:
    return _importable("pywt")


def available_baselines() -> list[str]:
    """The baselines usable here (``bm3d`` only when its package is installed; ``wavelet`` needs
    PyWavelets, which scikit-image's wavelet functions use)."""
    return [b for b in BASELINES if (b != "bm3d" or _has_bm3d()) and (b != "wavelet" or _has_pywt())]


def noise_sigma(x: np.ndarray) -> tuple[float, str]:
    """``(σ̂, estimator)``: Gaussian noise level of ``x`` without ground truth —
    :func:`skimage.restoration.estimate_sigma` (wavelet MAD, needs PyWavelets) when available, else the same
    estimate (Donoho's median absolute deviation / 0.6745) on the finest Haar diagonal coefficients."""
    if _has_pywt():
        from skimage.restoration import estimate_sigma

        return float(estimate_sigma(x)), "skimage.restoration.estimate_sigma"
    h, w = (x.shape[0] // 2) * 2, (x.shape[1] // 2) * 2
    a = x[:h:2, :w:2], x[:h:2, 1:w:2], x[1:h:2, :w:2], x[1:h:2, 1:w:2]
    hh = (a[0] - a[1] - a[2] + a[3]) / 2.0
    return float(np.median(np.abs(hh)) / 0.6745), "Haar diagonal MAD / 0.6745"


def _gaussian(x, sigma):
    from scipy import ndimage as ndi

    return ndi.gaussian_filter(x, sigma)


def _median(x, size):
    from scipy import ndimage as ndi

    return ndi.median_filter(x, size=int(size))


def _bilateral(x, sigma_color, sigma_spatial):
    from skimage.restoration import denoise_bilateral

    lo = float(x.min())
    return denoise_bilateral(x - lo, sigma_color=sigma_color, sigma_spatial=sigma_spatial) + lo


def _nl_means(x, h, sigma):
    from skimage.restoration import denoise_nl_means

    return denoise_nl_means(x, h=h, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True)


def _tv(x, weight):
    from skimage.restoration import denoise_tv_chambolle

    return denoise_tv_chambolle(x, weight=weight)


def _wavelet(x):
    from skimage.restoration import denoise_wavelet

    return denoise_wavelet(x, method="BayesShrink", mode="soft", rescale_sigma=True)


def _bm3d(x, sigma):
    import bm3d

    return np.asarray(bm3d.bm3d(x, sigma_psd=max(sigma, 1e-3)), dtype=np.float64)


def baseline_params(name: str, sigma: float) -> tuple:
    """``(function, grid of parameter dicts, rule-of-thumb dict)`` of a baseline at noise level ``sigma``."""
    s = max(float(sigma), 1e-3)
    if name == "gaussian":
        g = [{"sigma": v} for v in (0.5, 1.0, 1.5, 2.0, 3.0, 4.0)]
        return _gaussian, g, {"sigma": 1.5}
    if name == "median":
        return _median, [{"size": v} for v in (3, 5, 7, 9)], {"size": 5}
    if name == "bilateral":
        g = [{"sigma_color": s * a, "sigma_spatial": b} for a in (1, 2, 4) for b in (1, 2, 3)]
        return _bilateral, g, {"sigma_color": 2 * s, "sigma_spatial": 2}
    if name == "nl_means":
        return partial(_nl_means, sigma=s), [{"h": s * a} for a in (0.6, 0.8, 1.0, 1.2)], {"h": 0.8 * s}
    if name == "tv":
        return _tv, [{"weight": s * a} for a in (0.5, 1, 2, 4, 8)], {"weight": 2 * s}
    if name == "wavelet":
        return _wavelet, [], {}
    if name == "bm3d":
        return partial(_bm3d, sigma=s), [], {}
    raise InputError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}.")


def _calibrate(x, fn, grid):
    """The parameter dict of ``grid`` with the lowest J-invariant (self-supervised) loss."""
    from skimage.restoration import calibrate_denoiser

    space = {k: sorted({g[k] for g in grid}) for k in grid[0]}  # every grid here is a product of value lists
    _, (tested, losses) = calibrate_denoiser(x, fn, denoise_parameters=space, stride=4, approximate_loss=True,
                                             extra_output=True)
    return dict(tested[int(np.argmin(losses))])


def run_baseline(image, name: str, *, calibrate: bool = True, colour: str = "luminance", return_params: bool = False):
    """Denoise ``image`` with the classical method ``name`` (see module docstring); float32 in the
    input's grey scale. ``return_params=True`` also returns the parameters used (and the time)."""
    if name == "bm3d" and not _has_bm3d():
        raise InputError("BM3D needs the optional 'bm3d' package (non-commercial licence): pip install bm3d.")
    if name == "wavelet" and not _has_pywt():
        raise InputError("the wavelet baseline needs the PyWavelets package (pip install PyWavelets).")
    grey, _ = prepare_input(image, colour)
    t0 = time.perf_counter()
    lo, hi = norm_stats(grey)
    x = (grey - lo) / (hi - lo)
    sigma, estimator = noise_sigma(x)
    fn, grid, rule = baseline_params(name, sigma)
    params = _calibrate(x, fn, grid) if (calibrate and grid) else dict(rule)
    y = fn(x, **params)
    out = (np.asarray(y, dtype=np.float64) * (hi - lo) + lo).astype(np.float32)
    if return_params:
        return out, {"method": name, "sigma_est": sigma, "sigma_estimator": estimator, **{k: float(v) for k, v in params.items()},
                     "calibrated": bool(calibrate and grid), "time_s": time.perf_counter() - t0}
    return out
