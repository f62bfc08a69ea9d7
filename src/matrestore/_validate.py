"""Input checks shared by every engine function: one clear message per kind of bad input."""

from __future__ import annotations

import numpy as np


class InputError(ValueError):
    """Raised for images that cannot be processed; the message says what is wrong and what to do."""


def as_2d_image(image, name: str = "image", min_size: int = 1) -> np.ndarray:
    """Return ``image`` as a 2-D numeric numpy array or raise :class:`InputError`.

    The array is not copied when it is already a numpy array, and never modified.
    """
    if image is None:
        raise InputError(f"{name}: no image given.")
    arr = np.asarray(image)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InputError(f"{name}: unsupported data type {arr.dtype}; expected integer or float pixels.")
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        raise InputError(
            f"{name}: RGB(A) image of shape {arr.shape}; convert it to greyscale first "
            "(matrestore.io.read_image does this for RGB files whose channels are equal)."
        )
    if arr.ndim != 2:
        raise InputError(f"{name}: expected a 2-D greyscale image, got shape {arr.shape}.")
    if arr.size == 0:
        raise InputError(f"{name}: the image is empty (shape {arr.shape}).")
    if min(arr.shape) < min_size:
        raise InputError(f"{name}: image of shape {arr.shape} is too small (at least {min_size} px a side).")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise InputError(f"{name}: the image contains NaN or infinite values.")
    return arr


def check_same_shape(a: np.ndarray, b: np.ndarray, names=("reference", "image")) -> None:
    if a.shape != b.shape:
        raise InputError(
            f"{names[0]} has shape {a.shape} but {names[1]} has shape {b.shape}; they must match "
            "(upsample the low-resolution image first, or crop both to the same field)."
        )
