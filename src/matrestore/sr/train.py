"""Training of the TTSR engine as a generator of progress records.

::

    for rec in train(hr_images="data/sem", out_dir="runs/sr", preset="cpu", epochs=20):
        print(rec["kind"], rec.get("epoch"), rec.get("losses"), rec.get("val"))

Schedule (SEM paper, section 2.3.3): the first half of the epochs optimise the reconstruction loss only,
the second half adds the perceptual, transferal perceptual and adversarial (WGAN-GP) losses with the
weights of eq. 9 (defaults 1, 1e-2, 1e-2, 1e-3). Adam with a cyclic learning rate (triangular, the
amplitude halving every cycle). After every epoch the model is validated on the validation cells
against bicubic interpolation (PSNR, SSIM, ESSIM in the images' own intensity units); the best model is
kept as ``best.safetensors``. A checkpoint (``checkpoint.pt``: model, critic, optimisers, schedule,
position; read back with ``weights_only=True``) is written every ``checkpoint_every`` steps, at the end
of every epoch and when cancelled; ``resume=True`` continues from it. ``init=`` fine-tunes an existing
model on new data.

Records: ``{"kind": "setup" | "step" | "epoch" | "stopped" | "done", "epoch", "step", "total", ...}``;
``"step"`` records carry ``losses`` and ``lr``; ``"epoch"`` records carry ``val`` (the validation
metrics, with the bicubic baseline) and ``best``. The generator's return value (also in the final
record) says where the model files are.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..params import param
from ..progress import is_cancelled
from ..modelfile import load_checkpoint, prepare_run, save_checkpoint  # noqa: F401 (load_checkpoint: public)
from ..baselines import upsample
from ..device import describe, pick_device
from ..metrics import essim, psnr, ssim
from ..nets.vgg import find_vgg19_weights, load_vgg19_imagenet
from .data import alignment_summary, assign_references, build_training_data, sample_batch, to_original
from .losses import LOSS_WEIGHTS, PerceptualLoss, gradient_penalty, reconstruction_loss, transferal_perceptual_loss
from .model import Discriminator, SRConfig, TTSR, build_model, count_parameters
from .modelio import resolve_model, save_model

__all__ = ["train", "TrainConfig", "validate", "load_checkpoint", "preview_cell"]


@dataclass
class TrainConfig:
    """Everything a training run takes (the Train widget's controls are made from the described fields)."""

    preset: str = "cpu"
    epochs: int = param(20, label="epochs", min=1, max=10000,
                        tip="Passes of the schedule. After every epoch the network is validated on held-out cells "
                            "and the best one is kept.")
    steps_per_epoch: int | None = param(  # default: about two passes over the training cells
        None, label="steps per epoch", min=0, max=100000, special="auto",
        tip="Training steps (batches) per epoch. auto: about two passes over the training cells.")
    batch_size: int = param(8, label="batch size", min=1, max=1024, tip="Patches per training step.")
    patch: int = param(32, label="patch", min=4, max=512, suffix=" LR px",  # LR px (HR: 4x)
                       tip="Side of the random training patches in LR px (HR: 4×). At most the cell size.")
    cell: int = param(64, label="cell", min=4, max=2048, suffix=" LR px",  # LR px of the split cells
                      tip="Images are cut into cells of this side (LR px; HR: 4×), split 80/10/10 into training / "
                          "validation / test. An HR image needs at least one cell (4× this) a side.")
    lr_min: float = 1e-4
    lr_max: float = param(5e-4, label="learning rate (max)", min=1e-5, max=1e-2, step=1e-4, decimals=5,
                          tip="Peak learning rate of the cyclic schedule (the lowest is 1e-4 or this, whichever is "
                              "smaller). Lower it if training diverges.")
    cycle_steps: int | None = None  # full cycle of the cyclic LR; default: a quarter of the run (>= 2 epochs)
    cycle_mode: str = "triangular2"  # torch CyclicLR mode ("triangular2": amplitude halves every cycle)
    weights: dict = field(default_factory=lambda: dict(LOSS_WEIGHTS))
    gp_lambda: float = 10.0
    adv_from: float = 0.5  # fraction of the epochs trained on the reconstruction loss only
    top_k_train: int = 1  # references per training patch
    seed: int = param(0, label="seed", min=0, max=2**31 - 1,
                      tip="Random seed (initial weights, data split, patches): the same seed and data give the "
                          "same run.")
    noise: float | None = param(  # Gaussian noise (fraction of range) added to made LR images
        None, label="LR noise", min=0.0, max=0.5, step=0.005, decimals=3, special="none",
        tip="HR images only: Gaussian noise (fraction of the intensity range) added to the made LR images, so "
            "the network learns to expect noisy coarse scans.")
    select_by: str = "score"  # "score" (PSNR gain in dB + 10 x relative ESSIM gain), "psnr", "essim"
    checkpoint_every: int = 100
    max_val_cells: int = 64
    grad_clip: float = 1.0


FINE_TUNE = {"epochs": 4, "steps_per_epoch": 80, "adv_from": 1.0}
"""A fine-tune of an existing model that ends in about 10 minutes on 2 CPU cores with the ``cpu`` preset
(reconstruction loss only, as the shipped model was trained): what the Train widget starts with."""

# seconds per training step, measured on this project's 2-core CPU machine with one torch thread, batch 8,
# LR patch 32, reconstruction loss (training/sr_default/log.jsonl: 1.66 s for the cpu preset); tiny and
# paper scaled by their multiply-adds. The adversarial phase (perceptual + WGAN-GP critic) costs about 2x.
SECONDS_PER_STEP_1T = {"tiny": 0.06, "cpu": 1.66, "paper": 26.0}
THREAD_SPEEDUP = {1: 1.0, 2: 1.6, 4: 2.5}
ADVERSARIAL_COST = 2.0


def estimate_seconds(preset: str, steps: int, *, batch: int = 8, patch: int = 32, threads: int | None = None,
                     device="cpu", adv_from: float = 1.0) -> float | None:
    """A rough duration of ``steps`` training steps on the CPU (``None`` on a GPU or for an unknown
    preset: not measured). Scales the measured seconds per step by ``batch × patch²`` and the threads;
    ``adv_from`` is the fraction of the run on the reconstruction loss only (the rest costs 2x)."""
    dev = pick_device(device)
    if dev.type != "cpu" or preset not in SECONDS_PER_STEP_1T:
        return None
    t = int(threads or torch.get_num_threads())
    speed = THREAD_SPEEDUP.get(t, THREAD_SPEEDUP[4] if t > 4 else 1.0 + 0.6 * (t - 1))
    per = SECONDS_PER_STEP_1T[preset] * (batch * patch * patch) / (8 * 32 * 32) / speed
    per *= 1.0 + (ADVERSARIAL_COST - 1.0) * (1.0 - min(max(adv_from, 0.0), 1.0))
    return per * int(steps)


@torch.no_grad()
def validate(model: TTSR, data, ids, k: int, device, batch: int = 8) -> dict:
    """Mean PSNR/SSIM/ESSIM of the model and of bicubic on the cells ``ids`` (original intensity units)."""
    was = model.training
    model.eval()
    res = {"ttsr": {"psnr": [], "ssim": [], "essim": []}, "bicubic": {"psnr": [], "ssim": [], "essim": []}}
    for i in range(0, len(ids), batch):
        chunk = [data.cells[j] for j in ids[i : i + batch]]
        lr = torch.from_numpy(np.stack([c.lr for c in chunk]))[:, None].to(device)
        refs = []
        for c in chunk:
            r = (c.refs or [0])[:k]
            r = (r * k)[:k]
            refs.append(data.bank.crops[r])
        ref = torch.from_numpy(np.stack(refs))[:, :, None].to(device)
        sr = model(lr, ref).float().cpu().numpy()[:, 0]
        for c, s in zip(chunk, sr):
            L = data.sources[c.source]["data_range"]
            hr = to_original(c.hr, data, c).astype(np.float64)
            cand = {"ttsr": to_original(s, data, c), "bicubic": upsample(to_original(c.lr, data, c).astype(np.float64), data.scale)}
            for name, img in cand.items():
                res[name]["psnr"].append(psnr(hr, img, data_range=L))
                res[name]["ssim"].append(ssim(hr, img, data_range=L))
                res[name]["essim"].append(essim(hr, img, data_range=L))
    model.train(was)
    out = {m: {k2: float(np.mean(v)) for k2, v in d.items()} for m, d in res.items()}
    out["n"] = len(ids)
    out["psnr_gain_db"] = out["ttsr"]["psnr"] - out["bicubic"]["psnr"]
    out["essim_ratio"] = out["ttsr"]["essim"] / max(out["bicubic"]["essim"], 1e-12)
    out["score"] = out["psnr_gain_db"] + 10.0 * (out["essim_ratio"] - 1.0)
    return out


@torch.no_grad()
def preview_cell(model: TTSR, data, idx: int, k: int, device) -> dict:
    """LR, current SR and HR of cell ``idx`` (float32, original intensity units), for a live preview."""
    was = model.training
    model.eval()
    c = data.cells[idx]
    r = (c.refs or [0])[:k]
    r = (r * k)[:k]
    lr = torch.from_numpy(np.ascontiguousarray(c.lr))[None, None].to(device)
    ref = torch.from_numpy(np.stack([data.bank.crops[r]]))[:, :, None].to(device)
    sr = model(lr, ref).float().cpu().numpy()[0, 0]
    model.train(was)
    f = lambda a: np.asarray(to_original(a, data, c), dtype=np.float32)  # noqa: E731
    return {"lr": f(c.lr), "sr": f(sr), "hr": f(c.hr), "cell": int(idx), "split": c.split,
            "source": data.sources[c.source]["name"], "source_index": int(c.source), "origin": list(c.origin),
            "scale": int(data.scale)}


def _criterion(val: dict, select_by: str) -> float:
    if select_by == "psnr":
        return val["ttsr"]["psnr"]
    if select_by == "essim":
        return val["ttsr"]["essim"]
    return val["score"]


def train(hr_images=None, pairs=None, out_dir="runs/sr", *, references=None, init=None, resume=False, cancel=None,
          device=None, threads: int | None = None, vgg_weights=None, model_options: dict | None = None,
          log: bool = True, preview: bool = False, **options):
    """Train (or fine-tune, ``init=``) a TTSR model; a generator of progress records (see module doc).

    ``hr_images``: HR files/folders/arrays (LR made by area averaging); ``pairs``: real (LR, HR) pairs.
    ``options``: :class:`TrainConfig` fields; ``model_options``: :class:`~matrestore.sr.model.SRConfig`
    fields overriding the preset. ``cancel`` (threading.Event or callable) is checked between steps; a
    cancelled run saves a checkpoint and ``last.safetensors`` and ends with a ``"stopped"`` record.
    ``preview=True`` adds ``"preview"`` to every ``"epoch"`` record: LR, current SR and HR of the first
    validation cell (:func:`preview_cell`; not written to the log). With LR/HR pairs the second
    ``"setup"`` record carries ``"alignment"`` (:func:`~matrestore.sr.data.alignment_summary`).
    """
    out, ckpt_path, dev, ckpt = prepare_run(out_dir, TrainConfig, options, threads=threads, device=device,
                                            resume=resume)
    if ckpt is not None:
        cfg = TrainConfig(**{**ckpt["train_config"], **{k: v for k, v in options.items() if k in ("epochs", "checkpoint_every")}})
    else:
        cfg = TrainConfig(**options)
    torch.manual_seed(cfg.seed)

    # --- model -------------------------------------------------------------------------------
    lte_init = "random initialisation"
    if ckpt is not None:
        model = TTSR(SRConfig.from_dict(ckpt["model_config"]))
        model.load_state_dict(ckpt["model"])
        lte_init = ckpt.get("lte_init", lte_init)
    elif init is not None:
        model = resolve_model(init)
        base = str(init) if isinstance(init, (str, Path)) else f"a {model.cfg.preset}-preset model"
        lte_init = f"fine-tuned from {(getattr(model, 'meta', None) or {}).get('name', base)}"
        cfg.preset = model.cfg.preset
    else:
        model = build_model(cfg.preset, seed=cfg.seed, **(model_options or {}))
        if model.lte.imagenet_compatible and find_vgg19_weights(vgg_weights) is not None:
            lte_init = load_vgg19_imagenet(model.lte, find_vgg19_weights(vgg_weights))
    if model.cfg.receptive_radius is None:  # stored in the model file: enhance's default halo
        from .enhance import measure_receptive_radius

        measure_receptive_radius(model)
    model.to(dev).train()
    disc = Discriminator(model.cfg.disc_feats).to(dev)
    if ckpt is not None and "disc" in ckpt:
        disc.load_state_dict(ckpt["disc"])
    perc = PerceptualLoss(model, vgg_weights).to(dev)

    # --- data --------------------------------------------------------------------------------
    yield {"kind": "setup", "message": f"preparing data on {describe(dev)}; LTE: {lte_init}; perceptual: {perc.description}"}
    data = build_training_data(hr_images, pairs, scale=model.scale, patch=cfg.patch, cell=cfg.cell,
                               ref_crop=model.cfg.ref_crop, seed=cfg.seed, noise=cfg.noise, references=references)
    k_assign = max(cfg.top_k_train, model.cfg.top_k)
    saved_refs = json.loads(ckpt["cell_refs"]) if ckpt is not None and "cell_refs" in ckpt else None
    if saved_refs is not None and len(saved_refs) == len(data.cells):
        for c, r in zip(data.cells, saved_refs):  # the selection in force when the checkpoint was written
            c.refs = list(r)
    else:
        assign_references(model, data, k=k_assign, device=dev)
    train_ids = data.split("train")
    val_ids = data.split("val")[: cfg.max_val_cells]
    spe = int(cfg.steps_per_epoch or max(10, math.ceil(2 * len(train_ids) * 4 / cfg.batch_size)))
    total = cfg.epochs * spe
    adv_epoch = int(math.floor(cfg.epochs * cfg.adv_from))
    cycle = int(cfg.cycle_steps or max(2 * spe, total // 4))

    opt_g = torch.optim.Adam(model.parameters(), lr=cfg.lr_min, betas=(0.9, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr_min, betas=(0.5, 0.9))
    sched = torch.optim.lr_scheduler.CyclicLR(opt_g, base_lr=cfg.lr_min, max_lr=cfg.lr_max, step_size_up=max(1, cycle // 2),
                                              mode=cfg.cycle_mode, cycle_momentum=False)
    start_epoch, start_step, best, history, elapsed0 = 0, 0, -float("inf"), [], 0.0
    if ckpt is not None:
        opt_g.load_state_dict(ckpt["opt_g"])
        opt_d.load_state_dict(ckpt["opt_d"])
        sched.load_state_dict(ckpt["sched"])
        start_epoch, start_step = int(ckpt["epoch"]), int(ckpt["step"])
        best, history, elapsed0 = float(ckpt["best"]), list(json.loads(ckpt["history"])), float(ckpt.get("elapsed_s", 0.0))
    summary = data.summary()
    meta_base = {
        "training": {**summary, "config": asdict(cfg), "device": describe(dev)},
        "lte_init": lte_init,
        "perceptual": perc.description,
        "parameters": count_parameters(model),
    }
    logf = open(out / "log.jsonl", "a") if log else None

    def emit(rec):
        if logf is not None and (rec["kind"] != "step" or rec.get("step", 0) % 10 == 0):
            logf.write(json.dumps({k: v for k, v in rec.items() if k != "preview"}) + "\n")
            logf.flush()
        return rec

    t0 = time.perf_counter()

    def state(epoch, step):
        return {
            "model": model.state_dict(), "disc": disc.state_dict(), "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
            "sched": sched.state_dict(), "epoch": epoch, "step": step, "best": best, "history": json.dumps(history),
            "train_config": asdict(cfg), "model_config": model.cfg.to_dict(), "lte_init": lte_init,
            "elapsed_s": elapsed0 + time.perf_counter() - t0,
            "cell_refs": json.dumps([c.refs for c in data.cells]),
        }

    def save(path, val=None, **extra):
        meta = dict(meta_base)
        meta["training"] = dict(meta_base["training"], epochs_done=len(history), elapsed_s=elapsed0 + time.perf_counter() - t0)
        if val is not None:
            meta["metrics"] = {"validation": val}
        meta.update(extra)
        return save_model(model, path, **meta)

    setup = {"kind": "setup", "message": (
        f"{summary['cells']['train']} training / {summary['cells']['val']} validation / {summary['cells']['test']} test cells, "
        f"{len(data.bank)} reference crops; {cfg.epochs} epochs × {spe} steps of {cfg.batch_size}; "
        f"adversarial + perceptual losses from epoch {adv_epoch + 1}"), "total": total, "epoch": start_epoch, "step": start_epoch * spe + start_step,
        "steps_per_epoch": spe, "epochs": cfg.epochs,
        # derived facts for progress displays: where the second phase (all losses) begins, None without one
        "phase2_step": adv_epoch * spe if 0 < adv_epoch < cfg.epochs and any(w > 0 for k, w in cfg.weights.items()
                                                                              if k != "rec") else None}
    alignment = alignment_summary(data)
    if alignment:
        setup["alignment"] = alignment
    yield emit(setup)

    w = {**LOSS_WEIGHTS, **(cfg.weights or {})}
    result = {"out_dir": str(out), "best": str(out / "best.safetensors"), "last": str(out / "last.safetensors"), "checkpoint": str(ckpt_path)}
    for epoch in range(start_epoch, cfg.epochs):
        full = epoch >= adv_epoch and any(w[k] > 0 for k in ("per", "tper", "adv"))
        if epoch == adv_epoch and start_step == 0 and epoch > 0:
            assign_references(model, data, k=k_assign, device=dev)
        for step in range(start_step, spe):
            gstep = epoch * spe + step
            if is_cancelled(cancel):
                save_checkpoint(ckpt_path, state(epoch, step))
                save(out / "last.safetensors", history[-1]["val"] if history else None)
                rec = emit({"kind": "stopped", "status": "stopped", "epoch": epoch, "step": gstep, "total": total, **result})
                yield rec
                if logf:
                    logf.close()
                return dict(result, status="stopped")
            rng = np.random.default_rng([cfg.seed, gstep])
            ids = rng.choice(train_ids, size=cfg.batch_size, replace=len(train_ids) < cfg.batch_size)
            lr, hr, ref = (t.to(dev) for t in sample_batch(data, ids, rng, k=cfg.top_k_train))
            sr, S, T = model(lr, ref, return_aux=True)
            losses = {"rec": reconstruction_loss(sr, hr)}
            if full:
                perc.refresh(model)
                sr_lte = perc.lte_features(sr)
                if w["per"] > 0:
                    losses["per"] = perc(sr, hr, sr_lte)
                if w["tper"] > 0:
                    losses["tper"] = transferal_perceptual_loss(sr_lte, T, S)
                if w["adv"] > 0:
                    fake = sr.detach()
                    d_loss = disc(fake).mean() - disc(hr).mean() + gradient_penalty(disc, hr, fake, cfg.gp_lambda)
                    opt_d.zero_grad(set_to_none=True)
                    d_loss.backward()
                    opt_d.step()
                    losses["adv"] = -disc(sr).mean()
                    losses["critic"] = d_loss.detach()
            total_loss = sum(w[k] * v for k, v in losses.items() if k in w)
            opt_g.zero_grad(set_to_none=True)
            total_loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt_g.step()
            sched.step()
            vals = {k: float(v.detach()) for k, v in losses.items()}
            vals["total"] = float(total_loss.detach())
            if not all(math.isfinite(v) for v in vals.values()):
                raise RuntimeError(f"training diverged at step {gstep} (losses {vals}); lower lr_max.")
            yield emit({"kind": "step", "epoch": epoch, "step": gstep + 1, "total": total, "losses": vals,
                        "lr": opt_g.param_groups[0]["lr"], "phase": "full" if full else "reconstruction"})
            if cfg.checkpoint_every and (gstep + 1) % cfg.checkpoint_every == 0:
                save_checkpoint(ckpt_path, state(epoch, step + 1))
        start_step = 0
        val = validate(model, data, val_ids, model.cfg.top_k, dev) if val_ids else None
        is_best = False
        if val is not None:
            crit = _criterion(val, cfg.select_by)
            if crit > best:
                best, is_best = crit, True
                save(out / "best.safetensors", val, epoch=epoch + 1)
        history.append({"epoch": epoch + 1, "val": val})
        save_checkpoint(ckpt_path, state(epoch + 1, 0))
        rec = {"kind": "epoch", "epoch": epoch + 1, "step": (epoch + 1) * spe, "total": total, "val": val, "best": is_best,
               "elapsed_s": elapsed0 + time.perf_counter() - t0}
        if preview and (val_ids or train_ids):
            rec["preview"] = preview_cell(model, data, (val_ids or train_ids)[0], model.cfg.top_k, dev)
        yield emit(rec)
    last_val = history[-1]["val"] if history else None
    save(out / "last.safetensors", last_val, epoch=cfg.epochs)
    if not (out / "best.safetensors").exists():
        save(out / "best.safetensors", last_val, epoch=cfg.epochs)
    rec = emit({"kind": "done", "status": "done", "epoch": cfg.epochs, "step": total, "total": total, **result})
    yield rec
    if logf:
        logf.close()
    return dict(result, status="done")
