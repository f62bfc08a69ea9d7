"""SEM super-resolution engine: TTSR with reference selection, training and overlap-tiled inference.

Python API::

    from matrestore import sr
    model = sr.build_model("cpu")                 # "tiny", "cpu" (default) or "paper"
    for record in sr.train(hr_images=[...], out_dir="runs/sr"):   # a generator of progress records
        print(record)
    model = sr.load_model("runs/sr/best.safetensors")              # or "default"
    hr = sr.enhance(lr, references="refs/", model=model)          # (4H, 4W) float32
    sr.save_model(model, "my_model.safetensors", note="...")

No Qt or napari imports here; the CLI (``matrestore sr ...``) and the widget drive the same functions.
"""

from .enhance import enhance, enhance_iter, measure_receptive_radius
from .model import PRESETS, SRConfig, TTSR, build_model, count_parameters, deepen
from .modelio import load_model, save_model
from .references import ReferenceBank, RefFeatures, load_references
from .lazy import enhance_lazy, enhance_to_zarr, enhance_to_zarr_iter
from .train import train  # noqa: E402  (the function shadows the submodule name, like ``enhance``)

__all__ = [
    "build_model",
    "deepen",
    "load_model",
    "save_model",
    "enhance",
    "enhance_iter",
    "enhance_lazy",
    "enhance_to_zarr",
    "enhance_to_zarr_iter",
    "train",
    "PRESETS",
    "SRConfig",
    "TTSR",
    "ReferenceBank",
    "RefFeatures",
    "load_references",
    "measure_receptive_radius",
    "count_parameters",
]

