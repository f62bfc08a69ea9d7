"""Training as a generator: progress records, losses, validation, previews; cancel -> checkpoint; resume.

``train(...)`` yields :mod:`matrestore.progress` records and returns the path of the best model. Every
``val_every`` steps (an "epoch") it validates on fixed patches (held-out scenes), writes ``last`` and (when
the validation spot F1 improves) ``best`` model files and ``checkpoint.pt`` (model, optimiser, schedule,
both random generators, history), so a run stopped at any point — cancel, or a killed process — resumes
with ``resume=True`` and then computes exactly what an uninterrupted run computes. At the end the output
is *calibrated*: the validation threshold t* that maximises spot F1 is mapped onto the default threshold
5/255 by a logit offset stored in the model file (``calibration``), so ``segment(clean(...))`` needs no
tuning.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from ..modelfile import load_checkpoint, save_checkpoint
from ..params import param
from .._validate import InputError
from ..device import describe, pick_device
from ..progress import Kind, is_cancelled, record
from .data import DataConfig, TrainingData, default_scenes, make_scene
from .losses import make_loss
from .metrics import spot_counts
from .model import SpotUNet, build_model, count_parameters
from .modelio import save_model

__all__ = ["TrainConfig", "train", "make_training_data", "load_checkpoint", "DEFAULT_THRESHOLD", "validate"]

DEFAULT_THRESHOLD = 5.0 / 255.0


@dataclass
class TrainConfig:
    """Everything a training run takes (the LabDCT train widget's controls are made from the described fields)."""

    preset: str = param("cpu", label="network", tip="Network size of a new model: cpu (the shipped model's size, for "
                        "CPU training and inference), paper (the paper's ResNet34 U-Net, for a GPU), tiny (tests only).",
                        choices={"cpu": "cpu", "paper": "paper", "tiny (tests)": "tiny"})
    steps: int = param(6000, label="training steps", min=1, max=1_000_000, step=100,
                       tip="Optimiser steps (batches of random patches of simulated frames on real backgrounds).")
    batch: int = param(8, label="batch size", min=1, max=512, tip="Patches per training step.")
    lr: float = param(2e-3, label="learning rate", min=1e-5, max=1e-1, step=1e-4, decimals=5,
                      tip="Peak learning rate (warm-up, then cosine decay to 2 % of it).")
    weight_decay: float = 1e-4
    warmup: int = 100
    val_every: int = param(500, label="validate every", min=1, max=100_000, step=50, suffix=" steps",
                           tip="Validate on held-out simulated scenes, save last/best models and the checkpoint every "
                               "this many steps (an 'epoch').")
    val_patches: int = 48
    seed: int = param(0, label="seed", min=0, max=2**31 - 1, tip="Random seed of the scenes, patches and weights.")
    scenes: int = param(12, label="simulated scenes", min=1, max=1000,
                        tip="Forward-simulated samples (grains, orientations, geometry varied: Fe/Al, grain sizes, "
                            "binning, focusing) the training frames come from.")
    scene_frames: int = param(10, label="frames per scene", min=1, max=720,
                              tip="Simulated projections (rotation steps) per scene.")
    val_scenes: int = param(2, label="validation scenes", min=1, max=100,
                            tip="Held-out simulated scenes for validation (never trained on).")
    scene_size: int | None = param(None, label="detector window", min=0, max=4096, step=32, suffix=" px",
                                   special="full detector",
                                   tip="Simulate only a size×size window of the detector (faster; for trials and "
                                       "tests). full detector: the geometry's whole detector.")
    patch: int | None = param(None, label="patch", min=0, max=2048, step=16, suffix=" px", special="preset",
                              tip="Side of the random training patches (a multiple of the network's stride). preset: "
                                  "the network preset's patch.")
    grain_min_um: float = param(60.0, label="smallest grains", min=5.0, max=5000.0, step=10.0, decimals=0, suffix=" µm",
                                tip="Mean grain sizes of the simulated samples are drawn log-uniformly between the "
                                    "smallest and the largest (Fe and Al alternate; Table 1 of the paper).")
    grain_max_um: float = param(200.0, label="largest grains", min=5.0, max=5000.0, step=10.0, decimals=0, suffix=" µm",
                                tip="The largest mean grain size of the simulated samples.")
    threads: int | None = None
    vgg16_weights: str | None = None
    encoder_weights: str | None = None
    data: dict = field(default_factory=dict)  # DataConfig overrides

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def make_training_data(backgrounds, tcfg: TrainConfig, neighbours: int, patch: int, val: bool = False, progress=None):
    """Scenes (simulated; deterministic in ``tcfg.seed``) + backgrounds -> :class:`TrainingData`."""
    n = tcfg.val_scenes if val else tcfg.scenes
    specs = default_scenes(n, frames=tcfg.scene_frames, seed=tcfg.seed * 2 + (1 if val else 0) + 7, size=tcfg.scene_size,
                           grain_mm=(tcfg.grain_min_um / 1000.0, tcfg.grain_max_um / 1000.0))
    scenes = []
    for i, s in enumerate(specs):
        scenes.append(make_scene(s))
        if progress is not None:
            progress(i + 1, len(specs))
    dcfg = DataConfig(**{**asdict(DataConfig()), **tcfg.data, "neighbours": neighbours, "patch": patch})
    return TrainingData(scenes, backgrounds, dcfg)


def _lr_at(step, tcfg: TrainConfig):
    if step < tcfg.warmup:
        return tcfg.lr * (step + 1) / tcfg.warmup
    t = (step - tcfg.warmup) / max(1, tcfg.steps - tcfg.warmup)
    return tcfg.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def validate(model: SpotUNet, vx: torch.Tensor, vy: torch.Tensor, loss_fn,
             thresholds=(0.003, 0.006, 0.01, DEFAULT_THRESHOLD, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7)) -> dict:
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(vx[i : i + 8]) for i in range(0, len(vx), 8)])
        loss, _ = loss_fn(logits, vy)
        prob = torch.sigmoid(logits).numpy()[:, 0]
    truth = vy.numpy()[:, 0] > 0.5
    out = {"loss": float(loss)}
    best = (None, -1.0)
    for t in thresholds:
        tp = fp = fn = 0
        for p, g in zip(prob, truth):
            c = spot_counts(p >= t, g)
            tp, fp, fn = tp + c[0], fp + c[1], fn + c[2]
        f1 = 2 * tp / max(1, 2 * tp + fp + fn)
        out[f"f1@{t:.3g}"] = f1
        if f1 > best[1]:
            best = (t, f1)
    out["f1"] = best[1]
    out["best_threshold"] = best[0]
    model.train()
    return out


def _logit(p):
    return math.log(p / (1 - p))


def train(backgrounds=None, out_dir="runs/labdct", *, config: TrainConfig | None = None, data: TrainingData | None = None,
          val_data: TrainingData | None = None, init=None, resume: bool = False, cancel=None, device=None,
          steps: int | None = None, model_overrides: dict | None = None):
    """Generator: train a spot-cleaning network; returns the path of the best model file.

    ``backgrounds``: normalised ``I_BG`` frames (N, H, W) from :func:`extract_background` (of *training*
    frames only). ``data``/``val_data``: ready :class:`TrainingData` (else simulated from ``config``).
    ``init``: a model (or file) to start from. ``resume``: continue ``out_dir/checkpoint.pt`` (with the
    run's own configuration; ``steps`` may lengthen or shorten its schedule).
    """
    tcfg = config or TrainConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if tcfg.threads:
        torch.set_num_threads(int(tcfg.threads))
    dev = pick_device(device)
    t0 = time.perf_counter()
    ck = None
    if resume:
        ck = load_checkpoint(out / "checkpoint.pt")
        tcfg = TrainConfig.from_dict(json.loads(ck["train_config"]))
        if steps is not None:
            tcfg.steps = int(steps)
    torch.manual_seed(tcfg.seed)  # the initial weights depend on the seed only
    if init is not None:
        from .modelio import resolve_model

        base = resolve_model(init)
        model = build_model(base.cfg)
        model.load_state_dict(base.state_dict())
    elif ck is not None:
        from .model import LabdctConfig

        model = SpotUNet(LabdctConfig.from_dict(json.loads(ck["model_config"])))
    else:
        model = build_model(tcfg.preset, encoder_weights=tcfg.encoder_weights, **(model_overrides or {}))
    cfg = model.cfg
    patch = int(tcfg.patch or cfg.patch)
    if patch % model.stride:
        raise InputError(f"patch {patch} must be a multiple of the network's stride {model.stride}.")
    if data is None:
        if backgrounds is None:
            raise InputError("train needs background frames (extract_background of real training frames) or data=.")
        yield record(Kind.PHASE, phase="data", message=f"simulating {tcfg.scenes} training scenes")
        data = make_training_data(backgrounds, tcfg, cfg.neighbours, patch)
    if val_data is None:
        val_data = make_training_data(data.bg, tcfg, cfg.neighbours, patch, val=True)
    vrng = np.random.default_rng(10_000 + tcfg.seed)
    vx, vy = val_data.batch(vrng, tcfg.val_patches, patch)
    vx, vy = torch.from_numpy(vx), torch.from_numpy(vy)
    loss_fn = make_loss(cfg.loss, tcfg.vgg16_weights)
    model.to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    rng = np.random.default_rng(tcfg.seed)
    torch.manual_seed(tcfg.seed)
    step, history, best_f1, best_thr = 0, [], -1.0, DEFAULT_THRESHOLD
    if ck is not None:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        rng.bit_generator.state = json.loads(ck["numpy_rng"])
        torch.set_rng_state(ck["torch_rng"])
        step = int(ck["step"])
        history = json.loads(ck["history"])
        best_f1 = float(ck["best_f1"])
        best_thr = float(ck["best_threshold"])
    meta_base = {"training": {"train_config": tcfg.to_dict(), "data": data.summary(), "loss": getattr(loss_fn, "description", cfg.loss),
                              "device": describe(dev)}}

    def state():
        return {"model": model.state_dict(), "optimizer": opt.state_dict(), "numpy_rng": json.dumps(rng.bit_generator.state),
                "torch_rng": torch.get_rng_state(), "step": step, "history": json.dumps(history), "best_f1": best_f1,
                "best_threshold": best_thr, "train_config": json.dumps(tcfg.to_dict()), "model_config": json.dumps(cfg.to_dict())}

    def save(name, thr):
        calib = _logit(DEFAULT_THRESHOLD) - _logit(min(max(thr, 1e-4), 1 - 1e-4))
        return save_model(model, out / f"{name}.safetensors", calibration=calib,
                          **{**meta_base, "training": {**meta_base["training"], "steps": step, "history": history[-50:]},
                             "metrics": {"validation": history[-1] if history else {}}})

    yield record(Kind.SETUP, message=f"{cfg.preset}: {count_parameters(model)} parameters, loss {getattr(loss_fn, 'description', cfg.loss)}, "
                 f"{describe(dev)}; starting at step {step}", total=tcfg.steps, step=step)
    while step < tcfg.steps:
        if is_cancelled(cancel):
            save_checkpoint(out / "checkpoint.pt", state())
            save("last", best_thr)
            yield record(Kind.STOPPED, message=f"stopped at step {step}; checkpoint saved", step=step, total=tcfg.steps,
                         checkpoint=str(out / "checkpoint.pt"))
            return None
        lr = _lr_at(step, tcfg)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = data.batch(rng, tcfg.batch, patch)
        x, y = torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)
        logits = model(x)
        loss, parts = loss_fn(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        yield record(Kind.STEP, step=step, total=tcfg.steps, epoch=step // tcfg.val_every, losses={"loss": float(loss.detach()), **parts},
                     lr=lr, elapsed_s=time.perf_counter() - t0)
        if step % tcfg.val_every == 0 or step == tcfg.steps:
            val = validate(model, vx.to(dev), vy.to(dev), loss_fn)
            val["step"] = step
            val["elapsed_s"] = time.perf_counter() - t0
            history.append(val)
            is_best = val["f1"] > best_f1
            if is_best:
                best_f1, best_thr = val["f1"], val["best_threshold"]
            save("last", val["best_threshold"])
            if is_best:
                save("best", best_thr)
            save_checkpoint(out / "checkpoint.pt", state())
            yield record(Kind.EPOCH, epoch=step // tcfg.val_every, epochs=math.ceil(tcfg.steps / tcfg.val_every), val=val,
                         best=is_best, checkpoint=str(out / "checkpoint.pt"), step=step, total=tcfg.steps)
            model.eval()
            with torch.no_grad():
                pr = torch.sigmoid(model(vx[:1].to(dev)))[0, 0].cpu().numpy()
            model.train()
            yield record(Kind.PREVIEW, images={"input": vx[0, cfg.neighbours].numpy(), "target": vy[0, 0].numpy(), "output": pr})
    yield record(Kind.DONE, message=f"done: best validation spot F1 {best_f1:.3f}", step=step, total=tcfg.steps,
                 elapsed_s=time.perf_counter() - t0)
    return out / "best.safetensors"
