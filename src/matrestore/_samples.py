"""Sample data for napari's File > Open Sample menu (bundled files: see data/ATTRIBUTION.md)."""

from __future__ import annotations

from ._layerdata import image_layer_tuple
from .io import read_image, sample_path

OPTICAL_PIXEL_SIZE_NM = 225.2  # 222 px = 50 µm (grain-size-analysis-tools readme)


def sem_sample() -> list[tuple]:
    """Zeiss SEM micrograph of nanoporous gold, 0.543 nm/px (MIT, aquami)."""
    data, meta = read_image(sample_path("sem"))
    meta["attribution"] = "aquami (J. Stuckner), MIT licence"
    return [image_layer_tuple(data, meta, "nanoporous_gold_SEM")]


def optical_sample() -> list[tuple]:
    """Bright-field optical micrograph of etched steel, 0.2252 µm/px (NIST)."""
    data, meta = read_image(sample_path("optical"))
    if meta.get("pixel_size") is None:
        meta["pixel_size"] = OPTICAL_PIXEL_SIZE_NM
        meta["pixel_size_source"] = "grain-size-analysis-tools readme: 222 px = 50 µm"
    meta["attribution"] = "NIST grain-size-analysis-tools"
    return [image_layer_tuple(data, meta, "etched_steel_optical")]
