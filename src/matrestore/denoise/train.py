"""Training of the denoiser as a generator of progress records.

::

    for rec in train(reals=["steel.tif"], out_dir="runs/denoise", preset="cpu", epochs=10):
        print(rec["kind"], rec.get("step"), rec.get("losses"), rec.get("val"))

Data (paper, section II A): a pool of phase-field structures (``structures`` of them, grain counts and
coarsening steps drawn per structure) is made once (and cached in ``out_dir``); every training sample is a
``patch``² crop of a random structure (random flip/transpose) made into a pair by
:func:`~matrestore.denoise.synth.synthesize` with a crop of a random real micrograph, on the fly, seeded
by ``(seed, step, index)`` — so the sequence of batches is a function of the step alone and a resumed
run is the uninterrupted run. Structures are split into training and validation structures (recorded);
validation pairs are fixed. Loss (eq. 11): ``MSE + λ Σ‖w‖²`` over the convolution/dense weights, plus,
when ``boundary_weight`` > 0, that much extra weight on pixels within 1 px of a true boundary, and when
``grad_weight`` > 0 that much of an L1 loss on the image gradient (:func:`gradient_l1`), and when
``edge_weight`` > 0 that much of an L1 loss on the gradient *magnitude* (:func:`edge_magnitude_l1`), and when
``step_weight`` / ``interior_weight`` > 0 that much of the one-sided boundary-step loss and of the loss on
edges inside the grains (:func:`boundary_losses`). Adam
(``lr``, default 1e-4 as in the paper; ``schedule="cosine"`` decays it to ``lr_min``).

A checkpoint (``checkpoint.pt``: model, optimiser, schedule, position, RNG state, history; read back with
``weights_only=True``) is written every ``checkpoint_every`` steps, at the end of every epoch and when
cancelled; ``resume=True`` continues from it (``epochs`` may be changed then: a cosine schedule is
re-spanned to end at the new total). ``best.safetensors`` (best validation boundary F1) and
``last.safetensors`` are model files.

Records: ``setup``, ``step`` (``losses``, ``lr``), ``epoch`` (``val``: loss, boundary F1, PSNR/SSIM
after an affine fit; ``best``; optional ``preview``), ``stopped`` or ``done``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from ..modelfile import load_checkpoint, prepare_run, save_checkpoint  # noqa: F401 (load_checkpoint: public)
from ..params import param
from .._validate import InputError
from ..device import describe
from ..progress import Kind, is_cancelled, record
from .scoring import affine_fit, boundary_f1, segment
from .model import PRESETS, DenoiseConfig, DenoiseNet, build_model, count_parameters
from .modelio import NORM, normalise, resolve_model, save_model
from .phasefield import phase_field
from .synth import boundary_map, procedural_texture, synthesize, texture_source

__all__ = ["TrainConfig", "train", "load_checkpoint", "make_structures", "make_pair", "validate"]


PRESET_CHOICES = {"cpu (145 k parameters)": "cpu", "cpu-deep (12 blocks, 260 k)": "cpu-deep", "tiny (tests, demos)": "tiny",
                  "paper (GPU)": "paper"}
SCHEDULE_CHOICES = {"constant (paper)": "constant", "cosine decay": "cosine"}


@dataclass
class TrainConfig:
    """Everything a training run takes (the Denoise train widget's controls are made from the described
    fields; the tuple ranges are set from Python or the CLI only)."""

    preset: str = param("cpu", label="preset", choices=PRESET_CHOICES,
                        tip="Network size of a new model: cpu (6 blocks, for CPU training and inference), "
                            "cpu-deep (12 blocks: about twice the time per step and per image), tiny (a few thousand parameters: tests and demos), paper (the paper's "
                            "width, for a GPU).\nFine-tuning keeps the base model's architecture.")
    epochs: int = param(10, label="epochs", min=1, max=10000,
                        tip="Epochs; after every one the network is validated on fixed pairs of held-out "
                            "structures and the best one (boundary F1) is kept.")
    steps_per_epoch: int = param(100, label="steps per epoch", min=1, max=100000,
                                 tip="Training steps (batches of synthetic pairs made on the fly) per epoch.")
    batch_size: int = param(16, label="batch size", min=1, max=1024, tip="Synthetic pairs per training step.")
    patch: int = param(128, label="patch", min=16, max=2048, step=16, suffix=" px",  # training crop side, px
                       tip="Side of the training crops (px); at most the structure size, and every real "
                           "micrograph must be at least this large.")
    structures: int = param(48, label="structures", min=2, max=100000,  # phase-field structures in the pool
                            tip="Phase-field grain structures made once for the run (cached in the run folder); "
                                "every pair is a crop of one of them.")
    val_structures: int = param(6, label="validation structures", min=1, max=10000,
                                tip="Of the structures, this many are kept for validation only (never trained on).")
    structure_size: int = param(256, label="structure size", min=16, max=4096, step=32, suffix=" px",
                                tip="Side of the phase-field structures (px).")
    grains: tuple = (30, 140)  # Voronoi grains per structure (range)
    pf_steps: tuple = (100, 800)  # coarsening steps per structure (range)
    boundary_widths: tuple = (0, 0, 2)  # etched-boundary widths drawn from
    mix: tuple = (0.7, 1.0)  # magnitude blend range (1 = the paper's pure real magnitude)
    real_gamma: tuple = (1.0, 1.0)  # log-uniform range of the gamma applied to the real crop (augmentation)
    procedural: float = param(0.0, label="procedural textures", min=0.0, max=1.0, step=0.05, decimals=2,
                              tip="Share of the pairs whose spectrum and histogram come from a made-up "
                                  "micrograph-like texture instead of a real one (domain randomisation).")
    val_pairs: int = 12
    lr: float = param(1e-4, label="learning rate", min=1e-6, max=1e-1, step=1e-4, decimals=6,
                      tip="Adam learning rate (the paper: 1e-4). Lower it if training diverges.")
    lr_min: float = 1e-5
    schedule: str = param("constant", label="learning-rate schedule", choices=SCHEDULE_CHOICES,
                          tip="constant: the paper's; cosine: decays to 1e-5 over the run.")
    weight_decay: float = 1e-6  # λ of eq. 11 (explicit L2 penalty on conv/dense weights)
    boundary_weight: float = param(0.0, label="boundary weight", min=0.0, max=100.0, step=0.5, decimals=2,
                                   tip="Extra loss weight on pixels within 1 px of a true grain boundary (0: plain "
                                       "MSE, as in the paper).")
    grad_weight: float = param(0.0, label="gradient weight", min=0.0, max=100.0, step=0.5, decimals=2,
                               tip="Weight of an L1 loss on the image gradient (finite differences of the prediction "
                                   "against the ground truth): keeps faint steps between similar grains, which MSE "
                                   "barely sees (0: off, as in the paper).")
    edge_weight: float = param(0.0, label="edge weight", min=0.0, max=100.0, step=0.5, decimals=2,
                               tip="Weight of an L1 loss on the gradient magnitude (Sobel) of the prediction against "
                                   "the ground truth's. It does not care which side of a boundary is brighter, so a "
                                   "step between grains whose grey levels the input no longer shows still pays, where "
                                   "MSE prefers to merge them (0: off, as in the paper).")
    step_weight: float = param(0.0, label="step-floor weight", min=0.0, max=100.0, step=0.01, decimals=3,
                               tip="Weight of a one-sided loss at the true grain boundaries (step_floor): where the "
                                   "prediction's edge is weaker than half the ground truth's it pays, whichever grain "
                                   "is brighter; stronger edges and edges elsewhere cost nothing (0: off, as in the "
                                   "paper).")
    interior_weight: float = param(0.0, label="interior-edge weight", min=0.0, max=100.0, step=0.01, decimals=3,
                                   tip="Weight of a loss on the prediction's edges inside the grains, more than 2 px from "
                                       "a true boundary (interior_edges), where the ground truth is flat: they become "
                                       "invented grains (0: off, as in the paper).")
    uniform: float = param(0.0, label="uniform-grain pairs", min=0.0, max=1.0, step=0.05, decimals=2,
                           tip="Share of the pairs whose ground truth has grains of nearly one bright grey with dark "
                               "etched boundaries, as bright-field etched steels look: teaches the network to keep "
                               "such grains uniform instead of giving each a grey level of its own (0: off, as in "
                               "the paper).")
    min_contrast: tuple = (0.12, 0.12)  # range of the least grey difference between neighbouring grains
    deepen: int = param(0, label="deepen base to", min=0, max=64, suffix=" blocks",
                        tip="Fine-tuning only: give the base model this many residual attention blocks, its own kept "
                            "and near-identity new ones between them (model.deepen), so a larger network starts "
                            "from what the base has learnt (0: keep the base's architecture). 12 from the "
                            "shipped 6-block model is the cpu-deep preset.")
    seed: int = param(0, label="seed", min=0, max=2**31 - 1,
                      tip="Random seed (structures, pairs, initial weights): the same seed and data give the same "
                          "run.")
    checkpoint_every: int = param(50, label="checkpoint every", min=1, max=100000, suffix=" steps",
                                  tip="Steps between checkpoints (also at the end of every epoch and on cancel).")
    grad_clip: float = 1.0

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names})


def _structure_params(cfg: TrainConfig, i: int) -> dict:
    rng = np.random.default_rng([cfg.seed, 11, i])
    g0, g1 = cfg.grains
    s0, s1 = cfg.pf_steps
    return dict(shape=(cfg.structure_size, cfg.structure_size), n_grains=int(rng.integers(g0, g1 + 1)),
                steps=int(rng.integers(s0, s1 + 1)), seed=int(cfg.seed * 100003 + i))


def make_structures(cfg: TrainConfig, cache_dir: Path | None = None, cancel=None):
    """Generator: the pool of label images (``list``; returned), cached in ``cache_dir``."""
    n = int(cfg.structures)
    key = hashlib.sha1(json.dumps([_structure_params(cfg, i) for i in range(n)], default=str).encode()).hexdigest()[:12]
    cache = Path(cache_dir) / f"structures_{key}.npz" if cache_dir is not None else None
    if cache is not None and cache.is_file():
        with np.load(cache) as z:
            labels = [z[f"s{i}"] for i in range(n)]
        yield record(Kind.PHASE, phase="structures", message=f"{n} structures from the cache {cache.name}", step=n, total=n)
        return labels
    labels = []
    t0 = time.perf_counter()
    for i in range(n):
        if is_cancelled(cancel):
            return None
        pf = phase_field(**_structure_params(cfg, i))
        labels.append(pf.labels.astype(np.int32))
        yield record(Kind.PHASE, phase="structures", message=f"phase-field structure {i + 1}/{n}", step=i + 1, total=n,
                     elapsed_s=time.perf_counter() - t0)
    if cache is not None:
        tmp = cache.with_name(cache.stem + f".tmp{os.getpid()}.npz")
        np.savez_compressed(tmp, **{f"s{i}": l for i, l in enumerate(labels)})
        os.replace(tmp, cache)
    return labels


def make_pair(labels: np.ndarray, real: np.ndarray, cfg: TrainConfig, rng: np.random.Generator, real_name: str = "real"):
    """One training pair: a random ``patch`` crop of a structure (flipped/transposed at random) made
    noisy with a random crop of ``real``. Returns ``(noisy normalised, clean, near-boundary mask, labels)``."""
    P = cfg.patch
    H, W = labels.shape
    y0, x0 = int(rng.integers(0, H - P + 1)), int(rng.integers(0, W - P + 1))
    lab = labels[y0 : y0 + P, x0 : x0 + P]
    if rng.random() < 0.5:
        lab = lab[::-1]
    if rng.random() < 0.5:
        lab = lab[:, ::-1]
    if rng.random() < 0.5:
        lab = lab.T
    bw = int(cfg.boundary_widths[int(rng.integers(len(cfg.boundary_widths)))]) if cfg.boundary_widths else 0
    mix = float(cfg.mix[0] + (cfg.mix[1] - cfg.mix[0]) * rng.random())
    g0, g1 = cfg.real_gamma
    gamma = float(np.exp(np.log(g0) + (np.log(g1) - np.log(g0)) * rng.random())) if g1 != g0 else float(g0)
    if cfg.procedural > 0 and rng.random() < cfg.procedural:
        real, real_name, gamma = procedural_texture((P, P), rng), "procedural texture", 1.0
    c0, c1 = cfg.min_contrast
    contrast = float(c0 + (c1 - c0) * rng.random()) if c1 != c0 else float(c0)  # no draw: old recipes replay
    uniform = {}
    if cfg.uniform > 0 and rng.random() < cfg.uniform:  # no draw when off: old recipes replay
        top = float(0.8 + 0.15 * rng.random())
        uniform = {"grey_range": (top - float(0.02 + 0.08 * rng.random()), top)}
        contrast, bw = 0.0, int(rng.integers(1, 4))
    pair = synthesize(np.ascontiguousarray(lab), real, seed=int(rng.integers(2**31)), boundary_width=bw, mix=mix,
                      real_name=real_name, real_gamma=gamma, min_contrast=contrast, **uniform)
    x = normalise(pair.noisy)
    near = boundary_map(pair.labels)
    near[1:, :] |= near[:-1, :]
    near[:, 1:] |= near[:, :-1]
    return x, pair.clean, near, pair.labels


def _batch(structs, reals, ids, cfg, step, rng_tag=0):
    xs, ys, bs = [], [], []
    for b in range(cfg.batch_size):
        rng = np.random.default_rng([cfg.seed, rng_tag, step, b])
        s = structs[ids[int(rng.integers(len(ids)))]]
        j = int(rng.integers(len(reals)))
        x, y, near, _ = make_pair(s, reals[j][0], cfg, rng, reals[j][1])
        xs.append(x)
        ys.append(y)
        bs.append(near)
    t = lambda a: torch.from_numpy(np.stack(a).astype(np.float32))[:, None]  # noqa: E731
    return t(xs), t(ys), t(bs)


def gradient_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of the finite differences (rows and columns) of ``pred`` and ``target``."""
    dy = (pred[..., 1:, :] - pred[..., :-1, :]) - (target[..., 1:, :] - target[..., :-1, :])
    dx = (pred[..., :, 1:] - pred[..., :, :-1]) - (target[..., :, 1:] - target[..., :, :-1])
    return 0.5 * (dy.abs().mean() + dx.abs().mean())


_SOBEL = torch.tensor([[[[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]],
                       [[[-1.0, -2.0, -1.0], [0.0, 0.0, 0.0], [1.0, 2.0, 1.0]]]]) / 8.0


def edge_magnitude(image: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Sobel gradient magnitude (``N×1×H×W`` → ``N×1×(H-2)×(W-2)``; ``eps`` keeps its derivative finite at 0)."""
    g = torch.nn.functional.conv2d(image, _SOBEL.to(image.device, image.dtype))
    return torch.sqrt((g * g).sum(1, keepdim=True) + eps)


def edge_magnitude_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of the Sobel gradient magnitudes of ``pred`` and ``target``: blind to the sign
    of a step, so unlike MSE (and :func:`gradient_l1`) it does not favour merging two grains whose order of
    brightness the input does not tell."""
    return (edge_magnitude(pred) - edge_magnitude(target)).abs().mean()


def _gauss(image: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Gaussian smoothing (``N×1×H×W``, same size, reflected borders), as :func:`~.scoring.segment` smooths."""
    r = max(1, int(math.ceil(3 * sigma)))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=image.dtype, device=image.device) / sigma) ** 2)
    k = k / k.sum()
    x = torch.nn.functional.pad(image, (r, r, r, r), mode="reflect")
    x = torch.nn.functional.conv2d(x, k.view(1, 1, 1, -1))
    return torch.nn.functional.conv2d(x, k.view(1, 1, -1, 1))


def boundary_losses(pred: torch.Tensor, target: torch.Tensor, near: torch.Tensor, frac: float = 0.5,
                    margin: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """``(step_floor, interior_edges)`` from one pass over the smoothed (σ = 1 px, as the evaluation's segmentation
    smooths) Sobel magnitudes of ``pred`` and ``target``, both divided by the ground truth's magnitude at the pixels
    ``near`` a true boundary (unit-free):

    * the floor: where ``pred``'s magnitude near a boundary falls below ``frac`` of the ground truth's, the
      shortfall (0 … ``frac``). Unlike :func:`edge_magnitude_l1` it asks only for *a* step of either sign where
      grains meet and charges nothing for a stronger one or for edges elsewhere;
    * the interior: ``pred``'s magnitude more than ``margin`` px beyond the near-boundary band, inside the grains
      where the ground truth is flat — the edges the segmentation turns into invented grains.
    """
    gp, gt = edge_magnitude(_gauss(pred), 1e-12), edge_magnitude(_gauss(target), 1e-12)
    at = near.to(gp.dtype)
    m = at[..., 1:-1, 1:-1]
    scale = (gt * m).sum().clamp_min(1e-6)
    band = torch.nn.functional.max_pool2d(at, 2 * margin + 1, stride=1, padding=margin)[..., 1:-1, 1:-1]
    return (torch.relu(frac * gt - gp) * m).sum() / scale, (gp * (1.0 - band)).sum() / scale


def step_floor(pred: torch.Tensor, target: torch.Tensor, near: torch.Tensor, frac: float = 0.5) -> torch.Tensor:
    """The one-sided, sign-blind boundary-step loss (the first of :func:`boundary_losses`)."""
    return boundary_losses(pred, target, near, frac)[0]


def interior_edges(pred: torch.Tensor, target: torch.Tensor, near: torch.Tensor, margin: int = 2) -> torch.Tensor:
    """The loss on edges inside the grains (the second of :func:`boundary_losses`)."""
    return boundary_losses(pred, target, near, margin=margin)[1]


def _penalty(model) -> torch.Tensor:
    return sum((p * p).sum() for n, p in model.named_parameters() if p.dim() > 1)


@torch.no_grad()
def validate(model: DenoiseNet, val, device) -> dict:
    """Mean loss (MSE), boundary F1 and PSNR after an affine fit on the validation pairs."""
    from ..metrics import psnr

    was = model.training
    model.eval()
    f1, ps, mse = [], [], []
    for x, y, labels in val:
        out = model(torch.from_numpy(x)[None, None].to(device)).float().cpu().numpy()[0, 0]
        mse.append(float(np.mean((out - y) ** 2)))
        f1.append(boundary_f1(boundary_map(segment(out)), boundary_map(labels))["f1"])
        ps.append(psnr(y.astype(np.float64), affine_fit(out, y), data_range=1.0))
    model.train(was)
    return {"mse": float(np.mean(mse)), "f1": float(np.mean(f1)), "psnr": float(np.mean(ps)), "n": len(val)}


def _deepened(model, n_blocks: int, seed: int):
    """``model`` deepened to ``n_blocks`` (:func:`matrestore.denoise.model.deepen`, float32), its preset named
    after the preset whose architecture it now has (the shipped 6-block ``cpu`` model deepened to 12 is
    ``cpu-deep``), else kept."""
    from .model import deepen

    deep = deepen(model.float(), int(n_blocks), seed=int(seed))
    mine = {k: v for k, v in deep.cfg.to_dict().items() if k != "preset"}
    for name, cfg in PRESETS.items():
        if {k: v for k, v in cfg.to_dict().items() if k != "preset"} == mine:
            deep.cfg.preset = name
    return deep


def train(reals, out_dir="runs/denoise", *, resume=False, init=None, cancel=None, device=None, threads: int | None = None,
          model_options: dict | None = None, log: bool = True, preview: bool = False, keep_epochs: bool = False,
          **options):
    """Train (or fine-tune, ``init=``) a denoiser; a generator of progress records (module docstring).

    ``reals``: real optical micrographs (arrays, files or ``(array, name)`` tuples; texture sources),
    each at least ``patch`` px a side. ``options``: :class:`TrainConfig` fields; ``model_options``: :class:`DenoiseConfig` fields
    overriding the preset. ``cancel`` (event, callable or bool) is checked between steps; a cancelled run
    saves ``checkpoint.pt`` and ``last.safetensors`` and ends with a ``"stopped"`` record. ``keep_epochs``:
    also write every epoch's model as ``epochs/epoch_NNN.safetensors`` (to choose one on a separate
    validation set afterwards).
    """
    out, ckpt_path, dev, ckpt = prepare_run(out_dir, TrainConfig, options, threads=threads, device=device,
                                            resume=resume)
    if ckpt is not None:
        keep = {k: v for k, v in options.items() if k in ("epochs", "checkpoint_every")}
        cfg = TrainConfig.from_dict({**json.loads(ckpt["train_config"]), **keep})
    else:
        cfg = TrainConfig(**options)
    if cfg.schedule not in ("constant", "cosine"):
        raise InputError(f"schedule must be 'constant' or 'cosine', got {cfg.schedule!r}.")
    if cfg.val_structures >= cfg.structures:
        raise InputError(f"val_structures ({cfg.val_structures}) must be fewer than structures ({cfg.structures}).")
    if cfg.patch > cfg.structure_size or cfg.patch < 16:
        raise InputError(f"patch must be between 16 and structure_size ({cfg.structure_size}), got {cfg.patch}.")
    if cfg.deepen and init is None and ckpt is None:
        raise InputError("deepen needs a base model to deepen (init=...); a new model takes its depth from the "
                         "preset (or n_blocks).")
    if reals is None or (isinstance(reals, (list, tuple)) and not reals):
        raise InputError("training needs at least one real micrograph (texture source).")
    if isinstance(reals, (str, Path, np.ndarray)):
        reals = [reals]
    srcs = []
    for j, r in enumerate(reals):
        r, given = r if isinstance(r, tuple) else (r, None)  # (array, name): a named micrograph (widget layers)
        img, name = texture_source(r, given or f"real micrograph {j}")
        if min(img.shape) < cfg.patch:
            raise InputError(f"{name} of shape {img.shape} is smaller than the training patch ({cfg.patch} px).")
        srcs.append((img, name))

    # --- model --------------------------------------------------------------------------------
    init_note = "random initialisation"
    if ckpt is not None:
        model = DenoiseNet(DenoiseConfig.from_dict(json.loads(ckpt["model_config"])))
        model.load_state_dict(ckpt["model"])
        init_note = ckpt.get("init_note", init_note) if isinstance(ckpt.get("init_note"), str) else init_note
    elif init is not None:
        model = resolve_model(init)
        init_note = f"fine-tuned from {init if isinstance(init, (str, Path)) else 'a given model'}"
        if cfg.deepen and cfg.deepen != model.cfg.n_blocks:
            init_note += f", deepened from {model.cfg.n_blocks} to {cfg.deepen} blocks"
            model = _deepened(model, cfg.deepen, cfg.seed)
        cfg.preset = model.cfg.preset
    else:
        model = build_model(cfg.preset, seed=cfg.seed, **(model_options or {}))
    model.to(dev).train()
    torch.manual_seed(cfg.seed)
    if ckpt is not None and "torch_rng" in ckpt:
        torch.set_rng_state(ckpt["torch_rng"])

    yield record(Kind.SETUP, message=f"making {cfg.structures} phase-field structures on {describe(dev)}", total=cfg.structures)
    structs = yield from make_structures(cfg, out, cancel)
    if structs is None:
        yield record(Kind.STOPPED, message="stopped while making structures", step=0, total=cfg.epochs * cfg.steps_per_epoch)
        return {"status": "stopped", "out_dir": str(out)}
    val_ids = list(range(cfg.structures - cfg.val_structures, cfg.structures))
    train_ids = list(range(cfg.structures - cfg.val_structures))
    val = []
    for k in range(cfg.val_pairs):
        rng = np.random.default_rng([cfg.seed, 99, k])
        s = structs[val_ids[k % len(val_ids)]]
        j = k % len(srcs)
        x, y, _, lab = make_pair(s, srcs[j][0], cfg, rng, srcs[j][1])
        val.append((x, y, lab))

    spe, total = int(cfg.steps_per_epoch), int(cfg.epochs * cfg.steps_per_epoch)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    if cfg.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total), eta_min=cfg.lr_min)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    gstep, best, history, elapsed0 = 0, -float("inf"), [], 0.0
    if ckpt is not None:
        opt.load_state_dict(ckpt["opt"])
        sched.load_state_dict(ckpt["sched"])
        if cfg.schedule == "cosine":  # epochs changed on resume: the cosine now ends at the new total
            sched.T_max = max(1, total)
        gstep, best = int(ckpt["step"]), float(ckpt["best"])
        history, elapsed0 = list(json.loads(ckpt["history"])), float(ckpt["elapsed_s"])
    data_summary = {
        "real_micrographs": [n for _, n in srcs],
        "structures": {"train": train_ids, "val": val_ids, "size": cfg.structure_size, "grains": list(cfg.grains),
                       "pf_steps": list(cfg.pf_steps)},
        "pairs": "synthesised on the fly (synthesize), seeded by (seed, step, index)",
        "procedural_share": cfg.procedural,
        "val_pairs": cfg.val_pairs,
    }
    meta_base = {"training": {**data_summary, "config": asdict(cfg), "device": describe(dev), "init": init_note},
                 "normalisation": NORM, "parameters": count_parameters(model)}
    logf = open(out / "log.jsonl", "a") if log else None
    t0 = time.perf_counter()

    def emit(rec):
        if logf is not None and (rec["kind"] != Kind.STEP or rec.get("step", 0) % 10 == 0):
            logf.write(json.dumps({k: (str(v) if k == "kind" else v) for k, v in rec.items() if k != "preview"}) + "\n")
            logf.flush()
        return rec

    def state():
        return {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "step": gstep,
                "best": best, "history": json.dumps(history), "train_config": json.dumps(asdict(cfg)),
                "model_config": json.dumps(model.cfg.to_dict()), "elapsed_s": elapsed0 + time.perf_counter() - t0,
                "torch_rng": torch.get_rng_state(), "init_note": init_note}

    def save(path, val_metrics=None, **extra):
        meta = dict(meta_base)
        meta["training"] = dict(meta_base["training"], steps_done=gstep, epochs_done=gstep // spe,
                                elapsed_s=elapsed0 + time.perf_counter() - t0)
        if val_metrics is not None:
            meta["metrics"] = {"validation": val_metrics}
        meta.update(extra)
        return save_model(model, path, **meta)

    result = {"out_dir": str(out), "best": str(out / "best.safetensors"), "last": str(out / "last.safetensors"),
              "checkpoint": str(ckpt_path)}
    yield emit(record(Kind.SETUP, message=(
        f"{len(train_ids)} training / {len(val_ids)} validation structures, {len(srcs)} real micrograph(s); "
        f"{cfg.epochs} epochs × {spe} steps of {cfg.batch_size} × {cfg.patch}²; {count_parameters(model)} parameters"),
        total=total, step=gstep, epoch=gstep // spe))
    while gstep < total:
        if is_cancelled(cancel):
            save_checkpoint(ckpt_path, state())
            save(out / "last.safetensors", history[-1]["val"] if history else None)
            yield emit(record(Kind.STOPPED, message="stopped; checkpoint saved", step=gstep, total=total,
                              epoch=gstep // spe, **result))
            if logf:
                logf.close()
            return dict(result, status="stopped")
        x, y, near = (t.to(dev) for t in _batch(structs, srcs, train_ids, cfg, gstep))
        pred = model(x)
        err = (pred - y) ** 2
        mse = err.mean()
        loss = mse
        if cfg.boundary_weight > 0:
            loss = loss + cfg.boundary_weight * (err * near).mean()
        if cfg.grad_weight > 0:
            loss = loss + cfg.grad_weight * gradient_l1(pred, y)
        if cfg.edge_weight > 0:
            loss = loss + cfg.edge_weight * edge_magnitude_l1(pred, y)
        if cfg.step_weight > 0 or cfg.interior_weight > 0:
            floor, inside = boundary_losses(pred, y, near)
            loss = loss + cfg.step_weight * floor + cfg.interior_weight * inside
        pen = _penalty(model)
        total_loss = loss + cfg.weight_decay * pen
        opt.zero_grad(set_to_none=True)
        total_loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        gstep += 1
        vals = {"mse": float(mse.detach()), "loss": float(total_loss.detach()), "l2": float(pen.detach())}
        if not all(math.isfinite(v) for v in vals.values()):
            raise RuntimeError(f"training diverged at step {gstep} (losses {vals}); lower lr.")
        yield emit(record(Kind.STEP, step=gstep, total=total, epoch=(gstep - 1) // spe, losses=vals,
                          lr=opt.param_groups[0]["lr"], elapsed_s=elapsed0 + time.perf_counter() - t0))
        if cfg.checkpoint_every and gstep % cfg.checkpoint_every == 0 and gstep % spe != 0:
            save_checkpoint(ckpt_path, state())
        if gstep % spe == 0:
            v = validate(model, val, dev)
            is_best = v["f1"] > best
            if is_best:
                best = v["f1"]
                save(out / "best.safetensors", v, epoch=gstep // spe)
            history.append({"epoch": gstep // spe, "val": v})
            if keep_epochs:
                (out / "epochs").mkdir(exist_ok=True)
                save(out / "epochs" / f"epoch_{gstep // spe:03d}.safetensors", v, epoch=gstep // spe)
            save_checkpoint(ckpt_path, state())
            rec = record(Kind.EPOCH, epoch=gstep // spe, epochs=cfg.epochs, step=gstep, total=total, val=v, best=is_best,
                         checkpoint=str(ckpt_path), elapsed_s=elapsed0 + time.perf_counter() - t0)
            if preview:
                x0, y0, _ = val[0]
                with torch.no_grad():
                    model.eval()
                    p0 = model(torch.from_numpy(x0)[None, None].to(dev)).float().cpu().numpy()[0, 0]
                    model.train()
                rec["preview"] = {"noisy": x0, "clean": y0, "prediction": p0}
            yield emit(rec)
    last_val = history[-1]["val"] if history else None
    save(out / "last.safetensors", last_val, epoch=gstep // spe)
    if not (out / "best.safetensors").exists():
        save(out / "best.safetensors", last_val, epoch=gstep // spe)
    save_checkpoint(ckpt_path, state())
    yield emit(record(Kind.DONE, message="done", step=gstep, total=total, epoch=gstep // spe, **result))
    if logf:
        logf.close()
    return dict(result, status="done")

