"""npe2 writer: an image layer as a calibrated TIFF (pixel size kept for matrestore and Fiji)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._validate import InputError
from .io import write_tiff as _write

_TO_NM = {"nm": 1.0, "µm": 1e3, "um": 1e3, "micron": 1e3, "mm": 1e6}


def pixel_size_nm_from_layer(scale, metadata) -> float | None:
    """The layer's pixel size in nm from its ``scale`` and ``metadata["unit"]`` (None if uncalibrated)."""
    unit = str((metadata or {}).get("unit", "px"))
    factor = _TO_NM.get(unit)
    if factor is None or scale is None:
        return None
    s = [float(v) for v in scale][-2:]
    if s[0] != s[1]:
        raise InputError(f"non-square pixels (scale {s}) cannot be written as one pixel size.")
    return s[-1] * factor


def write_tiff(path: str, data, attributes: dict) -> list[str]:
    """npe2 single-layer writer: ``(path, data, attributes) -> [path]``."""
    arr = np.asarray(data)
    meta = attributes.get("metadata") or {}
    px = pixel_size_nm_from_layer(attributes.get("scale"), meta)
    keep = {k: v for k, v in meta.items() if k in ("vendor", "databar_rows", "source", "dwell_time_us", "unit")}
    keep["layer_name"] = attributes.get("name")
    p = Path(path)
    if p.suffix.lower() not in (".tif", ".tiff"):
        p = p.with_suffix(".tif")
    _write(p, arr, pixel_size_nm=px, metadata=keep)
    return [str(p)]
