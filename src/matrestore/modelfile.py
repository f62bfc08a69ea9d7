"""One safe, self-describing model file for every task.

A model file is a `safetensors <https://huggingface.co/docs/safetensors>`_ file: the tensors (weights)
plus a string metadata header. Loading it executes no code (unlike pickle-based ``.pt`` files). The
metadata holds one JSON document under the key ``"matrestore"``::

    {"format": "matrestore-model", "format_version": 1, "task": "sr",
     "config": {...architecture...}, "scale": 4, "normalisation": {...},
     "training": {...data summary...}, "metrics": {...}, "versions": {...}, ...}

``save`` writes atomically (temporary file, then rename). ``load`` turns every failure (missing,
truncated, foreign or wrong-task file) into one :class:`~matrestore._validate.InputError` that says so.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import numpy as np
import torch

from ._validate import InputError

FORMAT = "matrestore-model"
FORMAT_VERSION = 1
META_KEY = "matrestore"

__all__ = ["save", "load", "read_metadata", "versions", "load_module", "resolve_module", "load_checkpoint", "save_checkpoint", "prepare_run", "FORMAT", "FORMAT_VERSION"]


def versions() -> dict:
    """Versions of the software that wrote a file."""
    from . import __version__

    out = {"matrestore": __version__, "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()}
    try:
        import safetensors

        out["safetensors"] = safetensors.__version__
    except Exception:  # noqa: BLE001
        pass
    return out


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        v = float(obj)
        return v if np.isfinite(v) else None
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, (Path, torch.device, torch.dtype)):
        return str(obj)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    return obj


def save(path, tensors: dict, meta: dict, task: str) -> Path:
    """Write ``tensors`` (name -> tensor) and ``meta`` (JSON-able dict) to ``path`` atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix == "":
        path = path.with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "task": task}
    doc.update(_jsonable(dict(meta)))
    doc.setdefault("versions", versions())
    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        save_file(clean, str(tmp), metadata={META_KEY: json.dumps(doc, allow_nan=False)})
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # an ordinary file, not the temporary file's private mode
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _check_file(path) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"model file not found: {p}")
    if not p.is_file():
        raise InputError(f"model path is not a file: {p}")
    return p


def read_metadata(path, task: str | None = None) -> dict:
    """The JSON metadata of a model file, without reading the weights."""
    from safetensors import safe_open

    p = _check_file(path)
    try:
        with safe_open(str(p), framework="pt") as f:
            raw = f.metadata() or {}
    except Exception as exc:  # noqa: BLE001  (SafetensorError, OSError, ...)
        raise InputError(
            f"{p.name} is not a readable matrestore model file (truncated, or not a safetensors file): {exc}"
        ) from exc
    return _parse_meta(raw, p, task)


def _parse_meta(raw: dict, p: Path, task: str | None) -> dict:
    if META_KEY not in raw:
        raise InputError(f"{p.name} is a safetensors file but not a matrestore model (no '{META_KEY}' metadata).")
    try:
        doc = json.loads(raw[META_KEY])
    except json.JSONDecodeError as exc:
        raise InputError(f"{p.name}: corrupt model metadata ({exc}).") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InputError(f"{p.name} is not a matrestore model file (format {doc.get('format') if isinstance(doc, dict) else None!r}).")
    if int(doc.get("format_version", 0)) > FORMAT_VERSION:
        raise InputError(
            f"{p.name} was written by a newer matrestore (model format {doc.get('format_version')}); please upgrade."
        )
    if task is not None and doc.get("task") != task:
        raise InputError(f"{p.name} is a model for task {doc.get('task')!r}, not {task!r}.")
    return doc


def load(path, task: str | None = None, device="cpu") -> tuple[dict, dict]:
    """``(tensors, meta)`` from a model file written by :func:`save`; no code is executed."""
    from safetensors import safe_open

    p = _check_file(path)
    try:
        with safe_open(str(p), framework="pt", device=str(device)) as f:
            raw = f.metadata() or {}
            meta = _parse_meta(raw, p, task)
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InputError(
            f"{p.name} is not a readable matrestore model file (truncated, or not a safetensors file): {exc}"
        ) from exc
    return tensors, meta


def load_module(path, *, task: str, build, default_path: Path, what: str, device=None):
    """A torch module from a model file of ``task`` — or ``"default"``: the file shipped at
    ``default_path`` — for every workflow's ``load_model``. ``build(meta)`` makes the (untrained)
    architecture from the stored metadata; the weights are loaded strictly (float16 files come back as
    float32). The module is in eval mode, on ``device`` (default CPU), with the metadata in ``.meta``.
    ``what`` names the model in messages ("denoising model"). Every failure is an InputError."""
    if isinstance(path, str) and path == "default":
        if not Path(default_path).is_file():
            raise InputError(f"no default {what} is installed (expected {default_path}); train one with "
                             f"`matrestore {task} train` and pass it with --model FILE.")
        path = default_path
    tensors, meta = load(path, task=task)
    if "config" not in meta:
        raise InputError(f"{Path(path).name}: the model file has no architecture config.")
    try:
        model = build(meta)
        model.load_state_dict({k: (v.float() if v.is_floating_point() else v) for k, v in tensors.items()},
                              strict=True)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{Path(path).name}: weights do not match the stored architecture ({exc}).") from exc
    model.meta = meta
    model.eval()
    if device is not None:
        from .device import pick_device

        model.to(pick_device(device))
    return model


def resolve_module(model, cls, load_model, what: str):
    """``model`` itself when it is a ``cls``, else ``load_model(model)`` for a path or ``"default"`` (None)."""
    if isinstance(model, cls):
        return model
    if model is None:
        model = "default"
    if isinstance(model, (str, Path)):
        return load_model(model)
    raise InputError(f"expected a {what}, a model file or 'default', got {type(model).__name__}.")


# --------------------------------------------------------------------------- training checkpoints
def load_checkpoint(path) -> dict:
    """A training checkpoint (``checkpoint.pt``: weights, optimiser and schedule state as tensors and plain
    values), read with ``torch.load(weights_only=True)`` so that no code runs. InputError when it is missing
    or unreadable."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"no training checkpoint at {p}")
    try:
        return torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"cannot read training checkpoint {p}: {exc}") from exc


def save_checkpoint(path, state: dict) -> Path:
    """Write a training checkpoint atomically (temporary file, then rename): a run killed while saving
    keeps its previous checkpoint."""
    p = Path(path)
    tmp = p.with_name(p.name + f".tmp{os.getpid()}")
    try:
        torch.save(state, str(tmp))
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
    return p


def prepare_run(out_dir, config_cls, options: dict, *, threads=None, device=None, resume=False):
    """The start every training generator shares: ``options`` checked against the fields of
    ``config_cls``, the run folder made, torch threads set, the device picked and — with ``resume`` (True:
    ``out_dir/checkpoint.pt`` if there is one; a path: that file, which must exist) — the checkpoint read.
    Returns ``(out_dir, checkpoint path, device, checkpoint or None)``."""
    import dataclasses

    from .device import pick_device

    bad = set(options) - {f.name for f in dataclasses.fields(config_cls)}
    if bad:
        raise InputError(f"unknown training option(s): {sorted(bad)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    if threads:
        torch.set_num_threads(int(threads))
    dev = pick_device(device)
    ckpt = None
    if resume:
        explicit = isinstance(resume, (str, Path)) and not isinstance(resume, bool)
        rp = Path(resume) if explicit else ckpt_path
        if rp.is_file():
            ckpt = load_checkpoint(rp)
        elif explicit:
            raise InputError(f"checkpoint not found: {rp}")
    return out, ckpt_path, dev, ckpt
