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
    if isinstance(path, str) and path == "default":
        if not DEFAULT_MODEL.is_file():
            raise InputError(f"no default LabDCT model is installed (expected {DEFAULT_MODEL}); train one with "
                             "`matrestore labdct train` and pass it with --model FILE.")
        path = DEFAULT_MODEL
    tensors, meta = modelfile.load(path, task=TASK)
    if "config" not in meta:
        raise InputError(f"{Path(path).name}: the model file has no architecture config.")
    try:
        model = SpotUNet(LabdctConfig.from_dict(meta["config"]))
        model.load_state_dict({k: (v.float() if v.is_floating_point() else v) for k, v in tensors.items()}, strict=True)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{Path(path).name}: weights do not match the stored architecture ({exc}).") from exc
    model.meta = meta
    model.eval()
    if device is not None:
        from ..device import pick_device

        model.to(pick_device(device))
    return model


def resolve_model(model) -> SpotUNet:
    if isinstance(model, SpotUNet):
        return model
    if model is None:
        model = "default"
    if isinstance(model, (str, Path)):
        return load_model(model)
    raise InputError(f"expected a LabDCT model, a model file or 'default', got {type(model).__name__}.")
