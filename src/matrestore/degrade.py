"""Make a low-resolution image from a high-resolution one, the way a coarser SEM scan would.

A scan with an ``s`` times larger pixel collects the signal of an ``s×s`` block of the fine scan, so
the LR pixel is the *area average* of that block (HR sides are first cropped to a multiple of ``s``,
keeping the top-left corner). Optional noise stands for the shorter dwell time per area: Gaussian
noise with a standard deviation given as a fraction of the data range, drawn from an explicit seed.
"""

from __future__ import annotations

import numpy as np

from ._validate import InputError, as_2d_image
from .metrics import default_data_range, effective_data_range

__all__ = ["downsample", "crop_to_multiple"]


def crop_to_multiple(image: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right so that both sides are multiples of ``scale`` (a view, not a copy)."""
    h, w = image.shape[:2]
    return image[: h - h % scale, : w - w % scale]


def downsample(hr, scale: int = 4, noise: float | None = None, seed: int | None = 0) -> np.ndarray:
    """Area-average ``hr`` over ``scale×scale`` blocks, optionally adding Gaussian noise.

    Parameters
    ----------
    hr : 2-D array
        High-resolution image (not modified).
    scale : int
        Integer down-sampling factor.
    noise : float, optional
        Standard deviation of additive Gaussian noise as a fraction of the data range
        (1 for floats, the dtype's range for integers); ``None`` or 0 for none.
    seed : int, optional
        Seed of the noise generator (the result is reproducible for a given seed).

    Returns
    -------
    Array of shape ``(H // scale, W // scale)``: same dtype as ``hr`` (integers rounded and
    clipped to the dtype's range).
    """
    img = as_2d_image(hr, "high-resolution image")
    if int(scale) != scale or scale < 1:
        raise InputError(f"scale must be a positive integer, got {scale!r}.")
    scale = int(scale)
    if min(img.shape) < scale:
        raise InputError(f"image of shape {img.shape} is smaller than the scale {scale}.")
    c = crop_to_multiple(img, scale).astype(np.float64)
    h, w = c.shape
    lr = c.reshape(h // scale, scale, w // scale, scale).mean(axis=(1, 3))
    if noise:
        if noise < 0:
            raise InputError(f"noise must be non-negative, got {noise}.")
        rng = np.random.default_rng(seed)
        try:
            full = default_data_range(img)
        except InputError:  # float data outside [0, 1], wide integers: the range the values use
            full = effective_data_range(img)
        lr = lr + rng.normal(0.0, noise * full, size=lr.shape)
    if np.issubdtype(img.dtype, np.integer):
        info = np.iinfo(img.dtype)
        return np.clip(np.rint(lr), info.min, info.max).astype(img.dtype)
    return lr.astype(img.dtype)
