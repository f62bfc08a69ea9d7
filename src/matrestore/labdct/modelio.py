"""Save and load spot-cleaning models as one self-describing safetensors file (task ``labdct``)."""

from __future__ import annotations

from pathlib import Path

from .. import modelfile
from .._validate import InputError
from .model import LabdctConfig, SpotUNet, count_parameters

__all__ = ["TASK", "DEFAULT_MODEL", "save_model", "load_model", "resolve_model"]

TASK = "labdct"
DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "default.safetensors"
NORMALISATION = {"kind": "asinh", "formula": "asinh(x / m)", "m": "median of the stack's non-zero pixels"}


def save_model(model: SpotUNet, path, half: bool = False, **meta) -> Path:
    """Write ``model`` (weights, architecture, normalisation, ``meta``) to ``path``; ``half``: float16."""
    if not isinstance(model, SpotUNet):
        raise InputError(f"save_model expects a LabDCT SpotUNet, got {type(model).__name__}.")
    tensors = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    doc = {"architecture": "U-Net on a ResNet34-layout encoder (PixelShuffle ICNR up-blocks, input before the last block)",
           "normalisation": NORMALISATION, "parameters": count_parameters(model), "output": "sigmoid(logit + calibration)"}
    doc.update(getattr(model, "meta", {}) or {})
    doc.update(meta)
    doc["config"] = model.cfg.to_dict()
    return modelfile.save(path, tensors, doc, task=TASK)


def load_model(path="default", device=None) -> SpotUNet:
    """A model from a file, or ``"default"`` (the shipped ``labdct/models/default.safetensors``); eval mode."""
    return modelfile.load_module(path, task=TASK, build=lambda meta: SpotUNet(LabdctConfig.from_dict(meta["config"])),
                                 default_path=DEFAULT_MODEL, what="LabDCT model", device=device)


def resolve_model(model) -> SpotUNet:
    return modelfile.resolve_module(model, SpotUNet, load_model, "LabDCT model")
