"""npe2 writer: an image layer as a calibrated TIFF (pixel size kept for matrestore and Fiji)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._validate import InputError
from .io import write_tiff as _write

_TO_NM = {"nm": 1.0, "µm": 1e3, "um": 1e3, "micron": 1e3, "mm": 1e6}


_PINT_NAMES = {"nanometer": "nm", "micrometer": "µm", "millimeter": "mm"}


def pixel_size_nm_from_layer(scale, metadata, units=None) -> float | None:
    """The layer's pixel size in nm from its ``scale`` and ``metadata["unit"]`` (None if uncalibrated).

    Without a unit in the metadata, napari's own layer ``units`` (pint units, napari ≥ 0.6) are used.
    """
    unit = (metadata or {}).get("unit")
    if unit is None and units:
        unit = _PINT_NAMES.get(str(list(units)[-1]))
    factor = _TO_NM.get(str(unit if unit is not None else "px"))
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
    px = pixel_size_nm_from_layer(attributes.get("scale"), meta, attributes.get("units"))
    keep = {k: v for k, v in meta.items() if k in ("vendor", "databar_rows", "source", "dwell_time_us", "unit",
                                                   "raw", "provenance", "shape_original", "frame_indices",
                                                   "files", "pixel_size_source", "attribution")}
    keep["layer_name"] = attributes.get("name")
    p = Path(path)
    if p.suffix.lower() not in (".tif", ".tiff"):
        p = p.with_suffix(".tif")
    _write(p, arr, pixel_size_nm=px, metadata=keep)
    return [str(p)]
