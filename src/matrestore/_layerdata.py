"""Array + metadata (from :mod:`matrestore.io`) -> napari layer-data tuples. No Qt, no napari import."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .io import display_unit

# The layer-metadata keys every widget shares (one place):
OUTPUT_KEY = "matrestore"  # layer.metadata[OUTPUT_KEY]: what a matrestore widget made ({"made_by": ..., ...})
ROLE_KEY = "matrestore_role"  # layer.metadata[ROLE_KEY] == "reference": HR images for the reference bank


def made_by(metadata) -> str | None:
    """Which matrestore widget made a layer (``metadata[OUTPUT_KEY]["made_by"]``), None for the user's own."""
    md = (metadata or {}).get(OUTPUT_KEY)
    return md.get("made_by") if isinstance(md, dict) else None


def image_layer_tuple(data: np.ndarray, meta: dict, name: str, stack: bool = False) -> tuple:
    """``(data, add_kwargs, "image")`` with the physical scale in the unit named in the metadata.

    ``metadata["unit"]`` says the unit of ``scale`` ("nm" or "µm"; "px" when the file has no
    calibration) and ``metadata["pixel_size_nm"]`` the pixel size in nm; a calibrated image also gets
    napari's ``units`` (the frame axis of a stack stays in pixels), so the scale bar shows them.
    """
    px = meta.get("pixel_size")
    unit, factor = display_unit(px)
    if px is None:
        unit, size = "px", 1.0
    else:
        size = px * factor
    md = dict(meta)
    md.update(unit=unit, pixel_size_nm=px)
    rgb = bool(meta.get("rgb")) and data.shape[-1] in (3, 4)
    nspatial = 2
    scale = [size] * nspatial
    if stack:
        scale = [1.0] + scale
    kwargs = {"name": name, "scale": scale, "metadata": md}
    if px is not None:  # napari's own units: the scale bar shows nm / µm (not "kpixel")
        kwargs["units"] = (["pixel"] if stack else []) + [unit] * nspatial
    if rgb:
        kwargs["rgb"] = True
    return (data, kwargs, "image")


def name_for(path) -> str:
    return Path(path).stem
