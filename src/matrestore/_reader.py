"""npe2 reader: micrographs and projection stacks, with pixel sizes and instrument metadata."""

from __future__ import annotations

from pathlib import Path

from ._layerdata import image_layer_tuple, name_for
from .io import IMAGE_SUFFIXES, TIFF_SUFFIXES, VENDORS, read_image, read_stack


def _is_frame_folder(p: Path) -> bool:
    return p.is_dir() and any(f.suffix.lower() in TIFF_SUFFIXES for f in p.iterdir())


def _is_store(p: Path) -> bool:
    from .ngff import is_store

    return is_store(p)


def _supported(p: Path) -> bool:
    return (p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES) or _is_store(p) or _is_frame_folder(p)


def store_layer(p: Path) -> tuple:
    """A Zarr / OME-Zarr store as one (multiscale) image layer: lazy levels, pixel size and origin from
    the NGFF metadata, contrast limits from the smallest level (never a full read of level 0)."""
    import numpy as np

    from .ngff import read_store

    doc = read_store(p)
    levels = doc["levels"]
    if levels[0].ndim not in (2, 3):
        from ._validate import InputError

        raise InputError(f"{p.name}: level 0 has shape {tuple(levels[0].shape)}; matrestore opens 2-D stores and "
                         "stacks of frames.")
    stack = levels[0].ndim == 3  # a stack of frames (e.g. a LabDCT clean): first frame, middle, last
    small = levels[-1]
    step = max(1, int(np.ceil(max(small.shape[-2:]) / 1024)))
    if stack:
        n = int(small.shape[0])
        small = small[sorted({0, n // 2, n - 1})]
    sample = np.asarray(small[..., ::step, ::step], dtype=np.float64)
    lo, hi = (float(np.nanmin(sample)), float(np.nanmax(sample))) if sample.size else (0.0, 1.0)
    meta = {"pixel_size": doc["pixel_size_nm"], "source": str(p), "store": str(p), "store_complete": doc["complete"],
            "levels": len(levels)}
    data, kwargs, kind = image_layer_tuple(levels if len(levels) > 1 else levels[0], meta, doc["name"] or name_for(p),
                                           stack=stack)
    kwargs["multiscale"] = len(levels) > 1
    kwargs["contrast_limits"] = (lo, hi if hi > lo else lo + 1.0)
    if doc["translate_nm"] is not None and doc["pixel_size_nm"] is not None:
        factor = kwargs["scale"][-1] / doc["pixel_size_nm"]
        kwargs["translate"] = [0.0] * stack + [v * factor for v in doc["translate_nm"]]
    return (data, kwargs, kind)


def get_reader(path):
    """Return a reader for supported paths (image files, Zarr / OME-Zarr stores, folders of numbered TIFFs), else None."""
    paths = [Path(p) for p in (path if isinstance(path, (list, tuple)) else [path])]
    if not paths or not all(_supported(p) for p in paths):
        return None
    return read_layers


def _omegas(p: Path) -> dict:
    """ω per frame of a projection stack (``labdct.stack.layer_metadata``: file names or input_main.m)."""
    from .labdct.stack import layer_metadata

    return layer_metadata(p)


def _read_stack(p: Path):
    """A projection stack: read whole when small, else lazily frame by frame (``io.LAZY_STACK_BYTES``)."""
    from . import io

    if io.stack_bytes(p) > io.LAZY_STACK_BYTES:
        return io.open_stack_lazy(p)
    return read_stack(p)


def read_layers(path) -> list[tuple]:
    """One image layer per path; multi-page TIFFs and folders become 3-D stack layers."""
    paths = [Path(p) for p in (path if isinstance(path, (list, tuple)) else [path])]
    layers = []
    for p in paths:
        if _is_store(p):
            layers.append(store_layer(p))
            continue
        if p.is_dir():
            data, meta = _read_stack(p)
            layers.append(image_layer_tuple(data, {**meta, **_omegas(p)}, p.name, stack=True))
            continue
        data, meta = read_image(p)
        instrument = meta.get("vendor") in VENDORS and meta.get("written_by") != "matrestore"
        if meta.get("n_pages", 1) > 1 and not instrument:
            data, meta = _read_stack(p)  # a plain (or our own) multi-page TIFF: a projection stack
            layers.append(image_layer_tuple(data, {**meta, **_omegas(p)}, name_for(p), stack=True))
        else:
            layers.append(image_layer_tuple(data, meta, name_for(p)))
    return layers


PLUGIN = "napari-matrestore"
PATTERNS = ("*.tif", "*.tiff", "*.TIF", "*.TIFF", "*.png", "*.PNG", "*.jpg", "*.jpeg", "*.JPG", "*.JPEG", "*.zarr")  # napari.yaml


def prefer_matrestore_reader(undo: bool = False, settings=None) -> dict:
    """Make matrestore napari's reader for micrograph files (what ticking "Remember this choice" in
    napari's reader dialog does, for all of matrestore's file patterns at once); ``undo`` removes
    those preferences again. Returns napari's ``extension2reader`` mapping as it is afterwards.

    napari (0.5+) asks which reader to use when several can open a file (drag-and-drop, File > Open)
    and ``viewer.open(path)`` in Python uses napari's own reader unless ``plugin="napari-matrestore"``
    is given: with this preference both use matrestore (pixel size, data bar cut, metadata kept).
    """
    if settings is None:
        from napari.settings import get_settings

        settings = get_settings()
    prefs = dict(settings.plugins.extension2reader)
    for pat in PATTERNS:
        if undo:
            if prefs.get(pat) == PLUGIN:
                del prefs[pat]
        else:
            prefs[pat] = PLUGIN
    settings.plugins.extension2reader = prefs
    return prefs
