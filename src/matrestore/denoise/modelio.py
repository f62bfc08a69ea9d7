"""Save and load denoisers as one self-describing safetensors file (see :mod:`matrestore.modelfile`).

Loading executes no code: the weights are tensors, the architecture a JSON config.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import modelfile
from .._validate import InputError
from .model import DenoiseConfig, DenoiseNet, count_parameters, receptive_radius

__all__ = ["save_model", "load_model", "resolve_model", "DEFAULT_MODEL", "ETCHED_MODEL", "BUNDLED", "TASK", "NORM", "normalise", "norm_stats"]

TASK = "denoise"
DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "default.safetensors"
# run 9 epoch 5 (docs/model_denoise_default.md, "Real micrograph against a human reference"): not the default (its
# held-out synthetic F1 fell short of its rule), but it measures the grains of a real bright-field etched steel
# better than the default and than the raw image
ETCHED_MODEL = DEFAULT_MODEL.with_name("etched.safetensors")
BUNDLED = {"default": DEFAULT_MODEL, "etched": ETCHED_MODEL}
# the network sees each image mapped to [0, 1] by its own 0.5 and 99.5 percentiles (whole image, never per tile)
NORM = {"kind": "percentile", "low": 0.5, "high": 99.5, "range": [0.0, 1.0]}


def norm_stats(image, norm: dict = NORM) -> tuple[float, float]:
    """``(lo, hi)``: the ``low``/``high`` percentiles of ``image`` (``hi > lo`` guaranteed)."""
    from ..metrics import percentile_range

    return percentile_range(image, norm["low"], norm["high"])


def normalise(image, stats=None) -> np.ndarray:
    """``image`` mapped so that ``stats`` (default: its own :func:`norm_stats`) go to 0 and 1 (float32)."""
    lo, hi = norm_stats(image) if stats is None else stats
    return ((np.asarray(image, dtype=np.float32) - lo) / (hi - lo)).astype(np.float32)


def save_model(model: DenoiseNet, path, half: bool = False, **meta) -> Path:
    """Write ``model`` to ``path`` (``.safetensors``): weights (``half=True``: float16), config,
    normalisation, receptive radius and whatever ``meta`` adds (``training``, ``metrics`` ...)."""
    if not isinstance(model, DenoiseNet):
        raise InputError(f"save_model expects a DenoiseNet, got {type(model).__name__}.")
    tensors = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    doc = {
        "architecture": "attention residual denoiser (Ahmad et al., eqs. 1-10)",
        "normalisation": NORM,
        "parameters": count_parameters(model),
        "receptive_radius": receptive_radius(model.cfg),
    }
    doc.update({k: v for k, v in (getattr(model, "meta", {}) or {}).items() if k not in ("format", "format_version", "task")})
    doc.update(meta)
    doc["config"] = model.cfg.to_dict()
    return modelfile.save(path, tensors, doc, task=TASK)


def load_model(path="default", device=None) -> DenoiseNet:
    """A denoiser from a model file, or ``"default"`` (the model shipped in
    ``matrestore/denoise/models/default.safetensors``), or ``"etched"`` (the bundled model for bright-field
    etched steels, :data:`ETCHED_MODEL`). Eval mode; metadata in ``model.meta``."""
    if isinstance(path, str) and path == "etched":
        path = ETCHED_MODEL
    return modelfile.load_module(path, task=TASK, build=lambda meta: DenoiseNet(DenoiseConfig.from_dict(meta["config"])),
                                 default_path=DEFAULT_MODEL, what="denoising model", device=device)


def resolve_model(model) -> DenoiseNet:
    """A :class:`DenoiseNet` from a model, a path or ``"default"``."""
    return modelfile.resolve_module(model, DenoiseNet, load_model, "denoising model")
