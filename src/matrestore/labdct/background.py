"""Backgrounds from real stacks (the paper's appendix A) and synthetic training inputs (eqs. 1–2).

**Background extraction** (:func:`extract_background`), frame by frame:

1. spot mask: Sobel gradient magnitude of the lightly smoothed frame (σ = 1 px) above its median +
   ``k_sobel`` robust σ, holes filled, united with pixels brighter than a σ = 8 px Gaussian of the frame by
   ``k_bright`` noise σ (bright spot interiors, zingers);
2. mask growth: dilation by a disk of ``grow`` px (the paper: a Gaussian then a 13-px disk at 2032²;
   4 px here at 1024² binned);
3. filling: the masked pixels are replaced by a normalised Gaussian convolution of the unmasked ones
   (σ = ``grow``, doubled until every hole is reached), then a Gaussian filter (σ = 1 px);
4. rolling median over ``window`` filled frames (60 in the paper; all there are when fewer);
5. normalisation: each frame divided by its maximum -> ``I_BG`` in [0, 1].

**Synthetic inputs** (:func:`synthesize`), per frame, with a noise-free spot frame ``S`` (zero background,
already at the chosen brightness):

* eq. 1: ``x0 = S + R_BG · I_BG`` with ``R_BG`` uniform in ``[I0 − √I0, I0 + √I0]`` (drawn per frame, so
  the background level changes from frame to frame as in real scans);
* eq. 2: ``x = x0 + τ · Poisson(x0 / 2)``.

**Ground truth**: LoG segmentation of the noise-free frame (:func:`ground_truth`): background
``gt_level`` counts, σ = 0.5 px, 20 % of each component's maximum, no minimum size.
"""

from __future__ import annotations

import time

import numpy as np
from scipy import ndimage as ndi

from .._validate import InputError
from ..progress import Kind, drive, is_cancelled, record
from .routine import log_segment, noise_sigma, rolling_median_iter
from .stack import as_stack

__all__ = ["spot_mask_for_background", "fill_masked", "extract_background", "extract_background_iter",
           "synthesize", "ground_truth", "spot_scale", "GT_SETTINGS"]

GT_SETTINGS = {"sigma": 0.5, "percent": 20.0, "min_size": 1}


def _disk(r: int) -> np.ndarray:
    y, x = np.ogrid[-r : r + 1, -r : r + 1]
    return x * x + y * y <= r * r


def spot_mask_for_background(frame: np.ndarray, k_sobel: float = 6.0, k_bright: float = 6.0, grow: int = 4) -> np.ndarray:
    """Pixels to replace: spots found by Sobel + threshold, filled and grown (steps 1–2)."""
    f = np.asarray(frame, np.float32)
    g = ndi.gaussian_filter(f, 1.0)
    mag = np.hypot(ndi.sobel(g, 0), ndi.sobel(g, 1))
    med = np.median(mag)
    mad = 1.4826 * np.median(np.abs(mag - med))
    m = ndi.binary_fill_holes(mag > med + k_sobel * max(mad, 1e-6))
    hp = g - ndi.gaussian_filter(f, 8.0)
    m |= hp > k_bright * max(noise_sigma(g), 1e-6)
    if grow > 0:
        m = ndi.binary_dilation(m, _disk(int(grow)))
    return m


def fill_masked(frame: np.ndarray, mask: np.ndarray, sigma: float = 6.0) -> np.ndarray:
    """Masked pixels replaced by the normalised Gaussian convolution of the unmasked ones (step 3)."""
    f = np.asarray(frame, np.float32).copy()
    keep = (~mask).astype(np.float32)
    if keep.sum() == 0:
        raise InputError("the background mask covers the whole frame; nothing left to fill from.")
    todo = mask.copy()
    s = float(max(sigma, 1.0))
    while todo.any():
        num = ndi.gaussian_filter(f * keep, s)
        den = ndi.gaussian_filter(keep, s)
        ok = todo & (den > 1e-3)
        f[ok] = num[ok] / den[ok]
        todo &= ~ok
        s *= 2
        if s > 4 * max(f.shape):
            f[todo] = float(np.median(f[~mask]))
            break
    return ndi.gaussian_filter(f, 1.0)


def extract_background_iter(stack, window: int = 60, grow: int = 4, k_sobel: float = 6.0, k_bright: float = 6.0,
                            circular=None, cancel=None):
    st = as_stack(stack, name="background stack")
    n = len(st)
    win = min(int(window), n)
    circ = st.full_turn if circular is None else bool(circular)
    t0 = time.perf_counter()
    yield record(Kind.SETUP, message=f"{n} frames, rolling median over {win}", total=2 * n)

    class _Filled:  # frames filled on demand (the rolling median holds `win` of them)
        def __init__(self):
            self.done = 0

        def __len__(self):
            return n

        def __getitem__(self, k):
            f = st[k]
            self.done += 1
            return fill_masked(f, spot_mask_for_background(f, k_sobel, k_bright, grow), sigma=max(grow, 1))

    filled = _Filled()
    out = np.zeros((n,) + st.shape, np.float32)
    for k, _, med in rolling_median_iter(filled, win, circ):
        if is_cancelled(cancel):
            yield record(Kind.STOPPED, message="stopped", step=k, total=n)
            return None
        mx = float(med.max())
        if mx <= 0:
            raise InputError(f"frame {k}: the extracted background is not positive anywhere.")
        out[k] = med / mx
        yield record(Kind.STEP, step=k + 1, total=n, elapsed_s=time.perf_counter() - t0, message=f"background {k + 1}/{n}")
    yield record(Kind.DONE, message="done", elapsed_s=time.perf_counter() - t0)
    return out


def extract_background(stack, window: int = 60, grow: int = 4, k_sobel: float = 6.0, k_bright: float = 6.0,
                       circular=None, progress=None, cancel=None) -> np.ndarray:
    """Normalised background images ``I_BG`` (N, H, W) float32 in [0, 1] of a real stack (module docstring)."""
    return drive(extract_background_iter(stack, window, grow, k_sobel, k_bright, circular, cancel), progress)


def spot_scale(spots: np.ndarray, brightness: float, i0: float) -> float:
    """Factor that puts the 98th percentile of the spots' peaks at ``brightness × I0`` counts."""
    s = np.asarray(spots, np.float32)
    top = s.max()
    if top <= 0:
        return 0.0
    peaks = s[(s == ndi.maximum_filter(s, 3)) & (s > top * 1e-4)]
    return float(brightness * i0 / max(np.quantile(peaks, 0.98), 1e-12))


def synthesize(spots: np.ndarray, background: np.ndarray, i0: float = 110.0, tau: float = 1.0, rng=None,
               r_bg: float | None = None) -> np.ndarray:
    """Eqs. 1–2: one synthetic input frame from a noise-free spot frame (counts) and an ``I_BG`` frame."""
    rng = np.random.default_rng(rng)
    if spots.shape != background.shape:
        raise InputError(f"spot frame {spots.shape} and background {background.shape} differ in shape.")
    if r_bg is None:
        r_bg = rng.uniform(i0 - np.sqrt(i0), i0 + np.sqrt(i0))
    x0 = np.clip(spots + r_bg * background, 0.0, None)
    return (x0 + tau * rng.poisson(x0 / 2.0)).astype(np.float32)


def ground_truth(spots: np.ndarray, gt_level: float = 1.0) -> np.ndarray:
    """Boolean spot mask of a noise-free frame (counts): LoG segmentation with :data:`GT_SETTINGS`."""
    return log_segment(spots, background=gt_level, **GT_SETTINGS)
