"""OME-Zarr (OME-NGFF) stores: the output of the block engine and an input like any other image.

Writing uses zarr's own API for the arrays and the maintained ``ome-zarr`` package for the NGFF
metadata (``ome_zarr.writer.write_multiscales_metadata``, format 0.5 on Zarr v3): axes ``y, x`` of type
space with their physical unit, per level a scale (the pixel size) and a translation. The pyramid is
built from the *stored* level 0 (2 × 2 means, level by level, read back from disk), never from the lazy
inference graph.

A store this package writes carries ``attrs["matrestore"]``: ``written_by``, the computation's
fingerprint (task token, input shape, block grid, dtype: a rerun with the same fingerprint resumes, a
different one is refused unless overwriting is asked for) and ``complete`` (set last, so a store that a
crash or a full disk interrupted never looks complete).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from ._validate import InputError
from .progress import is_cancelled

__all__ = ["is_store", "open_output", "chunk_side", "build_pyramid", "block_levels", "create_levels",
           "write_block_levels", "mean2", "write_metadata", "mark_complete",
           "read_store", "MIN_LEVEL_SIDE", "unit_for"]

MIN_LEVEL_SIDE = 1024  # the pyramid stops once a level fits in this many pixels a side
MAX_CHUNK = 2048  # largest Zarr chunk side of the outputs
_UNITS = {"nanometer": 1.0, "nm": 1.0, "micrometer": 1e3, "micron": 1e3, "µm": 1e3, "um": 1e3,
          "millimeter": 1e6, "mm": 1e6, "meter": 1e9, "m": 1e9, "angstrom": 0.1}


def is_store(path) -> bool:
    """Whether ``path`` is a Zarr store (v2 or v3) folder."""
    p = Path(path)
    return p.is_dir() and any((p / f).is_file() for f in ("zarr.json", ".zgroup", ".zarray"))


def unit_for(pixel_size_nm: float) -> tuple[str, float]:
    """``(NGFF unit, factor)``: micrometres from 1 µm/px up, else nanometres (pixel size = nm / factor)."""
    return ("micrometer", 1e3) if pixel_size_nm >= 1e3 else ("nanometer", 1.0)


def chunk_side(block_side: int) -> int:
    """Zarr chunk side for blocks of ``block_side`` output px: the largest divisor of it not above
    :data:`MAX_CHUNK` (so every block writes whole chunks: no two blocks share one), at least 256."""
    b = int(block_side)
    for k in range(1, b + 1):
        if b % k == 0 and b // k <= MAX_CHUNK:
            side = b // k
            return side if side >= 256 or b <= 256 else min(b, MAX_CHUNK)
    return b


def _written_by_us(root) -> dict | None:
    info = dict(root.attrs).get("matrestore")
    return info if isinstance(info, dict) and info.get("written_by") == "matrestore" else None


def open_output(path, shape, dtype, chunk: int, fingerprint: dict, *, overwrite: bool = False, describe=None):
    """The output store at ``path`` with level ``0`` of ``shape``: created, or reopened to resume when it
    was written by the same computation. Returns ``(group, resumed)``. InputError, before any write, for
    an unwritable place, a file in the way, a foreign store or one of another computation (unless
    ``overwrite``)."""
    import zarr

    path = Path(path).expanduser()
    parent = path.parent if path.parent != Path("") else Path(".")
    if not parent.is_dir():
        raise InputError(f"the folder for the output store does not exist: {parent}")
    if not os.access(parent, os.W_OK):
        raise InputError(f"cannot write the output store into {parent} (no write permission).")
    if path.exists():
        if not path.is_dir():
            if not overwrite:
                raise InputError(f"{path} exists and is a file, not a Zarr store; choose another output or "
                                 "ask to overwrite (--overwrite).")
            path.unlink()
        elif not os.access(path, os.W_OK):
            raise InputError(f"cannot write into the existing store {path} (no write permission).")
        elif is_store(path):
            root = zarr.open_group(str(path), mode="r+")
            ours = _written_by_us(root)
            if ours is not None and ours.get("fingerprint") == fingerprint and not overwrite:
                return root, True
            if not overwrite:
                if ours is None:
                    why = "it was not written by matrestore"
                else:
                    old = ours.get("fingerprint") or {}
                    why = ("it holds an image of another shape"
                           if old.get("input_shape") != fingerprint["input_shape"] or old.get("scale") != fingerprint["scale"]
                           else "it was made by another model, references or options")
                raise InputError(f"the output store {path} already exists and {why}; choose another output or ask "
                                 "to overwrite it (--overwrite).")
            shutil.rmtree(path)
        elif any(path.iterdir()):
            if not overwrite:
                raise InputError(f"{path} is a folder that is not a Zarr store; choose another output or ask to "
                                 "overwrite (--overwrite).")
            shutil.rmtree(path)
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    root.attrs["matrestore"] = {"written_by": "matrestore", "fingerprint": fingerprint, "complete": False,
                                "describe": describe or {}}
    chunks = (int(chunk),) * 2 if np.isscalar(chunk) else tuple(int(c) for c in chunk)
    root.create_array("0", shape=tuple(int(v) for v in shape), chunks=chunks, dtype=np.dtype(dtype), fill_value=0)
    return root, False


def _quiet():
    """Silence zarr's note about the block-record folder (``.matrestore_blocks``) inside our stores."""
    import warnings

    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.filterwarnings("ignore", message=".*not recognized as a component of a Zarr hierarchy")
    return ctx


def block_levels(shape, block_side: int, min_side: int | None = None) -> list[tuple]:
    """Shapes of the pyramid levels 0, 1, … that blocks of ``block_side`` output px fill themselves
    (:func:`write_block_levels`): a level is added while the one below is larger than ``min_side`` and
    ``block_side`` halves evenly (so a block's 2 × 2 means never need a neighbour's pixels)."""
    min_side = MIN_LEVEL_SIDE if min_side is None else min_side
    shapes = [tuple(int(v) for v in shape)]
    b = int(block_side)
    while max(shapes[-1]) > min_side and min(shapes[-1]) >= 2 and b % 2 == 0:
        b //= 2
        shapes.append((shapes[-1][0] // 2, shapes[-1][1] // 2))
    return shapes


def create_levels(root, shapes, dtype, block_side: int) -> None:
    """Arrays ``1 … n-1`` of the block-filled pyramid, chunked so that each block owns whole chunks at
    every level (no two blocks ever write one chunk, whatever runs them in parallel)."""
    for k, shp in enumerate(shapes[1:], start=1):
        name = str(k)
        ch = chunk_side(max(1, int(block_side) >> k))
        if name in root and tuple(root[name].shape) == tuple(shp):
            continue
        if name in root:
            del root[name]
        root.create_array(name, shape=shp, chunks=(ch, ch), dtype=np.dtype(dtype), fill_value=0)


def mean2(a: np.ndarray, dtype) -> np.ndarray:
    """2 × 2 means (an odd last row / column dropped, as the level shapes do), in ``dtype``."""
    h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
    m = a[:h, :w].astype(np.float32).reshape(h // 2, 2, w // 2, 2).mean((1, 3))
    return m.astype(dtype)


def write_block_levels(path, region0, n_levels: int) -> None:
    """Levels 1 … n-1 of one block, each from the level below as stored (read back from the store)."""
    import zarr

    y0, y1, x0, x1 = region0
    for k in range(1, n_levels):
        src = zarr.open_array(str(Path(path) / str(k - 1)), mode="r")
        dst = zarr.open_array(str(Path(path) / str(k)), mode="r+")
        block = src[y0:y1, x0:x1]
        y0, x0 = y0 // 2, x0 // 2
        y1, x1 = min(y1 // 2, dst.shape[0]), min(x1 // 2, dst.shape[1])
        if y1 > y0 and x1 > x0:
            dst[y0:y1, x0:x1] = mean2(block, dst.dtype)[: y1 - y0, : x1 - x0]


def build_pyramid(root, cancel=None, min_side: int | None = None, start: int = 0) -> int | None:
    """Levels ``start + 1``, … (2 × 2 means of the level below, read from the store) until a level fits
    in ``min_side`` px; returns the number of levels (``None`` if cancelled between levels)."""
    ctx = _quiet()
    try:
        return _build_pyramid(root, cancel, MIN_LEVEL_SIDE if min_side is None else min_side, start)
    finally:
        ctx.__exit__(None, None, None)


def _build_pyramid(root, cancel, min_side, start=0):
    import dask.array as da

    level = int(start)
    while True:
        src = root[str(level)]
        if max(src.shape) <= min_side or min(src.shape) < 2:
            break
        if is_cancelled(cancel):
            return None
        a = da.from_zarr(src)
        down = da.coarsen(np.mean, a, {0: 2, 1: 2}, trim_excess=True).astype(src.dtype)
        ch = min(src.chunks[0], MAX_CHUNK)
        name = str(level + 1)
        if name in root:
            del root[name]
        dst = root.create_array(name, shape=down.shape, chunks=(ch, ch), dtype=src.dtype, fill_value=0)
        da.store(down.rechunk((ch, ch)), dst, lock=False, scheduler="threads")
        level += 1
    for extra in sorted((k for k in root.array_keys() if k.isdigit() and int(k) > level), key=int):
        del root[extra]  # left from an earlier, larger run
    return level + 1


def write_metadata(root, levels: int, pixel_size_nm: float | None, translate=(0.0, 0.0), name: str = "image",
                   lead_axes=None) -> None:
    """OME-NGFF 0.5 multiscales metadata for ``levels`` levels of 2× steps (ome-zarr's writer).
    ``lead_axes``: axes before ``y, x`` (a stack's frames), each ``{"name", "type", "unit"?, "scale"?,
    "translation"?}`` (e.g. ``{"name": "angle", "type": "angle", "unit": "degree", "scale": 3.0}``; the
    NGFF allows one axis of a type other than space/time/channel); not downsampled between levels."""
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_multiscales_metadata

    if pixel_size_nm is None:
        unit, px, t = None, 1.0, [float(v) for v in translate]
    else:
        unit, f = unit_for(pixel_size_nm)
        px, t = float(pixel_size_nm) / f, [float(v) / f for v in translate]
    datasets = []
    for k in range(levels):
        s = px * 2**k
        shift = (2**k - 1) / 2 * px  # a level-k pixel's centre in level-0 coordinates
        lead = list(lead_axes or [])
        datasets.append({"path": str(k), "coordinateTransformations": [
            {"type": "scale", "scale": [float(a.get("scale", 1.0)) for a in lead] + [s, s]},
            {"type": "translation", "translation": [float(a.get("translation", 0.0)) for a in lead]
             + [t[0] + shift, t[1] + shift]}]})
    axes = [{k: v for k, v in a.items() if k not in ("scale", "translation")} for a in (lead_axes or [])]
    axes += [{"name": a, "type": "space", **({"unit": unit} if unit else {})} for a in ("y", "x")]
    write_multiscales_metadata(root, datasets, fmt=FormatV05(), axes=axes, name=name)


def mark_complete(root) -> None:
    info = dict(root.attrs["matrestore"])
    info["complete"] = True
    root.attrs["matrestore"] = info


def _multiscales(attrs: dict) -> list:
    if "ome" in attrs and isinstance(attrs["ome"], dict):
        return attrs["ome"].get("multiscales") or []
    return attrs.get("multiscales") or []


def read_store(path) -> dict:
    """An OME-Zarr (or plain Zarr) store as lazy arrays: ``{"levels": [dask arrays, level 0 first],
    "pixel_size_nm": float | None, "translate_nm": (y, x) | None, "name": str, "complete": bool | None,
    "matrestore": dict | None}``. Plain Zarr arrays and groups without NGFF metadata give one level and no
    pixel size. InputError for what is not a readable 2-D store."""
    import dask.array as da
    import zarr

    p = Path(path).expanduser()
    try:
        node = zarr.open(str(p), mode="r")
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"cannot open {p} as a Zarr store: {exc}") from exc
    if isinstance(node, zarr.Array):
        return {"levels": [da.from_zarr(node)], "pixel_size_nm": None, "translate_nm": None, "name": p.stem,
                "complete": None, "matrestore": None}
    attrs = dict(node.attrs)
    ms = _multiscales(attrs)
    ours = attrs.get("matrestore") if isinstance(attrs.get("matrestore"), dict) else None
    complete = None if ours is None else bool(ours.get("complete"))
    if not ms:
        ctx = _quiet()
        try:
            arrays = sorted(node.array_keys())
        finally:
            ctx.__exit__(None, None, None)
        if not arrays:
            raise InputError(f"{p} is a Zarr group without arrays or OME-NGFF multiscales metadata.")
        return {"levels": [da.from_zarr(node[arrays[0]])], "pixel_size_nm": None, "translate_nm": None,
                "name": p.stem, "complete": complete, "matrestore": ours}
    m = ms[0]
    axes = m.get("axes") or []
    levels, px, tr = [], None, None
    for k, ds in enumerate(m.get("datasets") or []):
        levels.append(da.from_zarr(node[ds["path"]]))
        if k == 0:
            for tf in ds.get("coordinateTransformations") or []:
                if tf.get("type") == "scale":
                    sc = tf["scale"]
                elif tf.get("type") == "translation":
                    tr = tf["translation"]
            unit = (axes[-1].get("unit") if axes and isinstance(axes[-1], dict) else None) or ""
            f = _UNITS.get(str(unit).lower())
            if f is not None:
                px = float(sc[-1]) * f
                tr = None if tr is None else (float(tr[-2]) * f, float(tr[-1]) * f)
            else:
                tr = None
    if not levels:
        raise InputError(f"{p}: the OME-NGFF multiscales metadata lists no datasets.")
    spatial = [a for a in axes if isinstance(a, dict) and a.get("type") == "space"]
    if levels[0].ndim > 2 and len(spatial) == 2 and all(s == 1 for s in levels[0].shape[:-2]):
        levels = [lv.reshape(lv.shape[-2:]) for lv in levels]  # (t, c, z,) y, x with singleton leading axes
    return {"levels": levels, "pixel_size_nm": px, "translate_nm": tr, "name": m.get("name") or p.stem,
            "complete": complete, "matrestore": ours}
