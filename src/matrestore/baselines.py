"""Interpolation baselines for integer-scale upsampling: nearest, bicubic, Lanczos.

Pixel grid: a low-resolution (LR) pixel ``i`` covers the high-resolution (HR) pixels
``i*s .. i*s + s - 1``; its centre sits at HR coordinate ``i*s + (s - 1)/2``. HR pixel ``j`` therefore
samples the LR image at ``x = (j + 0.5)/s - 0.5`` (the "half-pixel" or ``align_corners=False``
convention of PIL, OpenCV and torch). With this grid, the upsampling of a linear ramp reproduces the
ramp away from the borders, and an upsampled image overlays the input when its layer scale is divided
by ``s`` and its origin shifted by ``-(s - 1)/(2 s)`` LR pixels (see :func:`upsampled_geometry`).

Borders are handled by replicating the edge pixels. Integer inputs give outputs of the same dtype,
rounded and clipped to the dtype's range (as imaging tools do); float inputs give float outputs,
not clipped.
"""

from __future__ import annotations

import numpy as np

from ._validate import InputError, as_2d_image

METHODS = ("nearest", "bicubic", "lanczos")
LANCZOS_A = 3
BICUBIC_A = -0.5  # Keys' cubic convolution, as in PIL/OpenCV/Matlab

__all__ = ["METHODS", "upsample", "upsample_all", "upsampled_geometry"]


def cubic_kernel(x: np.ndarray, a: float = BICUBIC_A) -> np.ndarray:
    """Keys' cubic convolution kernel (a = -0.5, as PIL/OpenCV/Matlab); support [-2, 2]."""
    x = np.abs(x)
    out = np.zeros_like(x)
    m1 = x <= 1
    m2 = (x > 1) & (x < 2)
    out[m1] = (a + 2) * x[m1] ** 3 - (a + 3) * x[m1] ** 2 + 1
    out[m2] = a * x[m2] ** 3 - 5 * a * x[m2] ** 2 + 8 * a * x[m2] - 4 * a
    return out


def _lanczos(x: np.ndarray, a: int = LANCZOS_A) -> np.ndarray:
    out = np.sinc(x) * np.sinc(x / a)
    out[np.abs(x) >= a] = 0.0
    return out


_KERNELS = {"bicubic": (cubic_kernel, 2), "lanczos": (_lanczos, LANCZOS_A)}


def _resample_axis(arr: np.ndarray, scale: int, kernel, support: int, axis: int) -> np.ndarray:
    """Upsample ``arr`` by ``scale`` along ``axis`` with a separable interpolation kernel.

    Output ``j = i*s + r`` uses LR samples ``floor(x) + k`` for ``k = -support+1 .. support`` with
    ``x = i + (r + 0.5)/s - 0.5``; the weights depend only on the phase ``r`` and are normalised to
    sum to one.
    """
    arr = np.moveaxis(arr, axis, 0)
    n = arr.shape[0]
    pad = support + 1
    padded = np.concatenate([np.repeat(arr[:1], pad, 0), arr, np.repeat(arr[-1:], pad, 0)], axis=0)
    out = np.zeros((n * scale,) + arr.shape[1:], dtype=np.float64)
    ks = np.arange(-support + 1, support + 1)
    for r in range(scale):
        frac_pos = (r + 0.5) / scale - 0.5  # offset of the sample from LR pixel i, in LR pixels
        base = int(np.floor(frac_pos))
        t = frac_pos - base
        w = kernel(t - ks)
        w = w / w.sum()
        acc = np.zeros((n,) + arr.shape[1:], dtype=np.float64)
        for k, wk in zip(ks, w):
            start = pad + base + k
            acc += wk * padded[start : start + n]
        out[r::scale] = acc
    return np.moveaxis(out, 0, axis)


def upsample(lr, scale: int = 4, method: str = "bicubic") -> np.ndarray:
    """Upsample a 2-D image by an integer ``scale`` with ``"nearest"``, ``"bicubic"`` or ``"lanczos"``.

    Returns an array of shape ``(s*H, s*W)``; see the module docstring for grid and dtype rules.
    """
    img = as_2d_image(lr, "low-resolution image")
    if int(scale) != scale or scale < 1:
        raise InputError(f"scale must be a positive integer, got {scale!r}.")
    scale = int(scale)
    method = str(method).lower()
    if method not in METHODS:
        raise InputError(f"unknown upsampling method {method!r}; choose from {', '.join(METHODS)}.")
    if method == "nearest":
        return np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)
    kernel, support = _KERNELS[method]
    out = img.astype(np.float64)
    for axis in (0, 1):
        out = _resample_axis(out, scale, kernel, support, axis)
    if np.issubdtype(img.dtype, np.integer):
        info = np.iinfo(img.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(img.dtype)
    return out.astype(img.dtype)


def upsample_all(lr, scale: int = 4, methods=METHODS) -> dict[str, np.ndarray]:
    """``{method: upsample(lr, scale, method)}`` for each method."""
    return {m: upsample(lr, scale, m) for m in methods}


def upsampled_geometry(scale_lr, translate_lr, factor: int):
    """Layer ``scale`` and ``translate`` of an image upsampled by ``factor`` so that it overlays its input.

    napari places pixel centres at ``translate + index * scale``. The HR pixel ``j`` is centred at LR
    coordinate ``(j + 0.5)/s - 0.5``, so ``scale_hr = scale_lr / s`` and
    ``translate_hr = translate_lr - scale_lr * (s - 1) / (2 s)``.
    """
    scale_lr = np.asarray(scale_lr, dtype=float)
    translate_lr = np.asarray(translate_lr, dtype=float)
    scale_hr = scale_lr / factor
    translate_hr = translate_lr - scale_lr * (factor - 1) / (2 * factor)
    return tuple(scale_hr.tolist()), tuple(translate_hr.tolist())
