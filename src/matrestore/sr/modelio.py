"""Save and load TTSR models as one self-describing safetensors file (see :mod:`matrestore.modelfile`)."""

from __future__ import annotations

from pathlib import Path


from .. import modelfile
from .._validate import InputError
from .model import NORM, TTSR, SRConfig, count_parameters

__all__ = ["save_model", "load_model", "DEFAULT_MODEL", "resolve_model", "held_out_summary", "base_model_info"]

TASK = "sr"
DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "default.safetensors"


def save_model(model: TTSR, path, half: bool = False, **meta) -> Path:
    """Write ``model`` to ``path`` (``.safetensors``): weights, architecture, scale, normalisation and
    whatever ``meta`` adds (``training`` data summary, ``metrics``, ``lte_init``, ``perceptual`` ...).
    ``half=True`` stores the weights as float16 (half the size; loaded back as float32)."""
    if not isinstance(model, TTSR):
        raise InputError(f"save_model expects a TTSR model, got {type(model).__name__}.")
    tensors = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    doc = {
        "config": model.cfg.to_dict(),
        "scale": model.scale,
        "normalisation": dict(NORM, source="each image's own percentiles (LR input; references: their source image)"),
        "architecture": "TTSR (texture transformer) with bicubic residual output" if model.cfg.residual else "TTSR",
        "parameters": count_parameters(model),
    }
    doc.update(getattr(model, "meta", {}) or {})
    doc.update(meta)
    doc["config"] = model.cfg.to_dict()
    return modelfile.save(path, tensors, doc, task=TASK)


def load_model(path="default", device=None) -> TTSR:
    """A TTSR model from a model file, or ``"default"``: the model shipped with matrestore
    (``matrestore/sr/models/default.safetensors``). The model is in eval mode, on ``device`` (default CPU);
    its metadata is in ``model.meta``."""
    return modelfile.load_module(path, task=TASK, build=lambda meta: TTSR(SRConfig.from_dict(meta["config"])),
                                 default_path=DEFAULT_MODEL, what="super-resolution model", device=device)


def base_model_info(kind: str, preset: str | None = None, path=None) -> tuple:
    """What training starts from, from the file header only: ``(init, scale, ref_crop, description)``.

    ``kind`` "new" (a fresh network of ``preset``: ``init`` None), "default" (the bundled model) or "file"
    (the model file ``path``). InputError for a missing default, an empty/missing path or a file that is
    not a super-resolution model."""
    from .model import PRESETS

    if kind == "new":
        cfg = PRESETS[preset or "cpu"]
        return None, int(cfg.scale), int(cfg.ref_crop), f"new '{cfg.preset}' network"
    if kind == "default":
        if not DEFAULT_MODEL.is_file():
            raise InputError("no default super-resolution model is installed; choose a model file or "
                             "'train a new model'.")
        p, spec, desc = DEFAULT_MODEL, "default", "the bundled default model"
    else:
        text = str(path or "").strip()
        if not text:
            raise InputError("choose the model file to fine-tune (or another base model).")
        p = Path(text).expanduser()
        if not p.is_file():
            raise InputError(f"model file not found: {p}")
        spec, desc = str(p), f"model file {p.name}"
    meta = modelfile.read_metadata(p, task=TASK)  # InputError for a corrupt or foreign file
    cfg = meta.get("config", {})
    return spec, int(meta.get("scale", cfg.get("scale", 4))), int(cfg.get("ref_crop", 128)), desc


def held_out_summary(meta: dict, where: str = "on {n} held-out micrographs") -> str | None:
    """``"on 3 held-out micrographs: +0.24 dB PSNR, ESSIM ×1.16 vs bicubic"`` from a model file's
    ``metrics.held_out`` (``scripts/eval_default.py --record``); ``where`` may use ``{n}``, the number of
    images. ``None`` when the file has no such record."""
    held = ((meta or {}).get("metrics") or {}).get("held_out") or {}
    gain, ratio = held.get("psnr_gain_db"), held.get("essim_ratio")
    if not (isinstance(gain, (int, float)) and isinstance(ratio, (int, float))):
        return None
    place = where.format(n=held["n"]) if isinstance(held.get("n"), int) else "held-out"
    return f"{place}: {gain:+.2f} dB PSNR, ESSIM ×{ratio:.2f} vs bicubic"


def resolve_model(model) -> TTSR:
    """A TTSR instance from a model, a path or ``"default"``."""
    return modelfile.resolve_module(model, TTSR, load_model, "TTSR model")
