"""Super-resolve micrographs of any size with overlap tiling (the engine behind ``matrestore sr enhance``).

Two stitching modes (:mod:`matrestore.tiling`):

``"fast"`` (default)
    Large tiles with a halo of at least the network's measured receptive radius, so every kept pixel is
    computed from exactly the context a whole-image pass would give it: the result equals whole-image
    inference up to float rounding. References are selected once per image (top-k of eq. 4 with the
    image embedding) and every query position searches all of them.
``"paper"``
    The SEM paper's stitching: 32×32 LR tiles of which the central 62.5 % per axis is kept (the outer
    margin of border tiles too, so nothing is lost); each tile selects its own reference(s) (eqs. 1-5).

In both modes reference features are computed once per call (not per tile), the relevance search is
streamed over reference positions in slabs with a running max/argmax (bounded memory), tiles run in
batches, CUDA uses autocast, and an out-of-memory error halves the batch, then the tile, and retries.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .._validate import InputError, as_2d_image
from ..device import autocast, free_memory, is_oom, pick_device, trim_host_memory
from ..tiling import Stitcher, margin_for_keep, plan_grid_tiles, plan_tiles, same_shape_batch
from .model import TTSR, norm_stats, normalise, transfer, unfold_normalised
from .modelio import resolve_model
from ..nets.hooks import ForwardMonitor
from ..params import param
from ..progress import Cancelled, Kind, format_duration, is_cancelled, record, run_blocking
from .references import RefFeatures, features_iter, load_references

__all__ = ["enhance", "enhance_iter", "EnhanceOptions", "check_options", "measure_receptive_radius", "image_embedding",
           "embedding_crops", "default_tiling", "fast_plan", "output_geometry", "run_tiles", "denormalise_into"]

MODES = ("fast", "paper")
PAPER_TILE = 32
PAPER_KEEP = 0.625
MIN_TILE = 8  # LR px: the smallest tile side accepted


def output_geometry(pixel_size=None, translate=(0.0, 0.0), scale: int = 4) -> dict:
    """Geometry of an SR result: ``pixel_size`` (same unit as given, ``None`` stays ``None``) divided by
    ``scale``, and the layer ``scale``/``translate`` (in that unit, or px) with the half-pixel shift of
    :func:`matrestore.baselines.upsampled_geometry`, so that the result overlays its input."""
    from ..baselines import upsampled_geometry

    px = 1.0 if pixel_size is None else float(pixel_size)
    layer_scale, layer_translate = upsampled_geometry((px, px), translate, scale)
    return {
        "pixel_size": None if pixel_size is None else px / scale,
        "scale": layer_scale,
        "translate": layer_translate,
    }


@torch.no_grad()
def measure_receptive_radius(model: TTSR, start: int = 24, limit: int = 1024, trials: int = 4, seed: int = 0, width: int = 9) -> int:
    """Dependency radius of the network in LR pixels, measured by perturbation.

    One LR pixel in the middle of a random strip of ``(2n+2) × width`` LR px is changed; the radius is
    the largest distance along the strip (in LR px) of an output pixel that changes at all. Trials
    alternate vertical and horizontal strips and both parities of the changed pixel (a strip keeps the
    cost linear in the radius). The strip grows
    until the changed region stays clear of its ends. The maximum over ``trials`` random inputs is
    returned and cached in ``model.cfg.receptive_radius``.
    """
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    radius = 0
    n = start
    s = model.scale
    try:
        while True:
            size = 2 * n + 1
            touched = False
            for t in range(trials):
                # alternate vertical / horizontal strips and the parity of the perturbed pixel
                # (stride-2 layers make the two parities differ)
                c = n + (t % 2)
                shape = (1, 1, size + 1, width) if t % 2 == 0 else (1, 1, width, size + 1)
                lr = (torch.rand(shape, generator=g) * 2 - 1).to(dev)
                ref = (torch.rand((1, 1, model.cfg.ref_crop, model.cfg.ref_crop), generator=g) * 2 - 1).to(dev)
                lr2 = lr.clone()
                if t % 2 == 0:
                    lr2[..., c, width // 2] += 1.5
                else:
                    lr2[..., width // 2, c] += 1.5
                d = (model(lr2, ref) - model(lr, ref)).abs()[0, 0] > 0
                if t % 2:
                    d = d.T
                ys = torch.nonzero(d.any(dim=1), as_tuple=True)[0]
                if len(ys) == 0:
                    continue
                r = int((ys // s - c).abs().max())
                radius = max(radius, r)
                touched |= r >= n - 1
            if not touched or size >= limit:
                break
            n *= 2
    finally:
        model.train(was_training)
    model.cfg.receptive_radius = int(radius)
    return int(radius)


def receptive_radius(model: TTSR) -> int:
    r = model.cfg.receptive_radius
    return int(r) if r is not None else measure_receptive_radius(model)


def embedding_crops(shape, crop: int = 64, max_crops: int = 16) -> list[tuple[slice, slice]] | None:
    """The windows of an LR image of ``shape`` whose selector embeddings :func:`image_embedding`
    averages: ``None`` for a small image (embedded whole), else up to ``max_crops`` evenly spread crops of
    ``crop`` px. A function of the shape alone, so a block-wise run reads the very same crops."""
    H, W = int(shape[-2]), int(shape[-1])
    if H * W <= (2 * crop) ** 2:
        return None
    ny = max(1, min(int(math.sqrt(max_crops)), H // crop))
    nx = max(1, min(max_crops // ny, W // crop))
    ch, cw = min(crop, H), min(crop, W)
    ys = np.linspace(0, H - ch, ny).round().astype(int)
    xs = np.linspace(0, W - cw, nx).round().astype(int)
    return [(slice(int(y), int(y) + ch), slice(int(xx), int(xx) + cw)) for y in ys for xx in xs]


@torch.no_grad()
def embed_crops(model: TTSR, crops: torch.Tensor) -> torch.Tensor:
    """Mean selector embedding of normalised LR crops (N, 1, h, w), in batches of 8."""
    embs = [model.embed(model.query(model.upsample(crops[i : i + 8]))) for i in range(0, len(crops), 8)]
    return torch.cat(embs, 0).mean(0, keepdim=True)


@torch.no_grad()
def image_embedding(model: TTSR, x: torch.Tensor, crop: int = 64, max_crops: int = 16) -> torch.Tensor:
    """Selector embedding of a whole (normalised) LR image (1, 1, H, W): the LTE statistics of LR↑ over
    the whole image, or — for large images — the mean over the crops of :func:`embedding_crops`.
    Independent of any tiling."""
    windows = embedding_crops(x.shape, crop, max_crops)
    if windows is None:
        return model.embed(model.query(model.upsample(x)))
    return embed_crops(model, torch.cat([x[(..., *w)] for w in windows], 0))


def default_tiling(model: TTSR, mode: str, device: torch.device, tile=None, halo=None, batch=None, keep=PAPER_KEEP):
    """``(tile, margin, batch)`` for a mode and device (explicit values win)."""
    gpu = device.type in ("cuda", "mps")
    if mode == "paper":
        tile = int(tile or PAPER_TILE)
        margin = margin_for_keep(tile, keep)
        batch = int(batch or (64 if gpu else 16))
    else:
        margin = int(halo) if halo is not None else receptive_radius(model) + 2
        tile = int(tile or 512)
        tile = max(tile, 2 * margin + 16)
        batch = int(batch or (4 if gpu else 1))
    return tile, margin, batch


def _run_batch(model: TTSR, x: torch.Tensor, feats: RefFeatures, ids, top_k: int, amp: bool):
    """SR of a batch of equal-size LR tiles ``x`` (B, 1, h, w); ``ids`` (B, k) or ``None`` (select per tile)."""
    with autocast(x.device, enabled=amp):
        lr_up = model.upsample(x)
        q3 = model.query(lr_up)
        if ids is None:
            ids = feats.select(model.embed(q3), top_k)
        q = unfold_normalised(q3)
        S, rows0, ry, rx, tables = feats.search(q, ids)
        B, _, h, w = x.shape
        tables = [t.to(q3.dtype) for t in tables]
        T = transfer(rows0.view(B, h, w), ry.view(B, h, w), rx.view(B, h, w), feats.grid_w, tables, (4, 2, 1), model.cfg.lte_channels)
        sr = model.decode(x, lr_up, S.view(B, 1, h, w).to(q3.dtype), T)
    return sr.float()


HEARTBEAT_S = 0.5  # seconds between progress records while a batch of tiles runs
MODE_CHOICES = {"fast (whole-image quality)": "fast", "paper (32 px tiles, per-tile references)": "paper"}


@dataclass
class EnhanceOptions:
    """The options of an enhancement (the Enhance widget's controls are made from these fields)."""

    tile: int | None = param(
        None, label="tile size", min=0, max=8192, step=32, suffix=" px", special="auto",
        tip="Tile side in input (LR) pixels, including the overlap that is discarded.\n"
            "auto: fast mode 512 (tiles on a fixed grid, so any part of an image is computed exactly as in "
            "the whole); paper mode 32.\n"
            "Smaller tiles need less memory; an out-of-memory error halves it automatically.")
    batch: int | None = param(
        None, label="batch size", min=0, max=1024, special="auto",
        tip="Tiles computed together. auto: fast mode 1 on the CPU / 4 on a GPU; paper mode 16 / 64.")
    top_k: int | None = param(
        None, label="top-k references", min=0, max=64, special="model default",
        tip="How many reference crops each image (fast mode) or tile (paper mode) searches for textures: the "
            "top-k most similar by the selector (eq. 4).\nmodel default: the value the model was trained with.")
    mode: str = param(
        "fast", label="stitching", choices=MODE_CHOICES,
        tip="Stitching of the tiles.\nfast: large tiles with a halo of the network's receptive radius; equals "
            "whole-image inference.\npaper: the SEM paper's 32×32 tiles keeping the central 62.5 %, each tile "
            "choosing its own references.")
    uncertainty: int | None = param(
        None, label="uncertainty (TTA)", min=0, max=8, special="off",
        tip="Also compute an uncertainty map: the standard deviation of the result over this many flips/rotations "
            "of the input (2-8; each costs one more enhancement). Added as '<input>_sr_uncertainty'; the "
            "Scan-enhance-rescan widget proposes regions on it.")

    def check(self) -> "EnhanceOptions":
        """InputError for an option the engine cannot use (the one validation, also for the widget)."""
        check_options(mode=self.mode, tile=self.tile, batch=self.batch, top_k=self.top_k)
        if self.uncertainty is not None and not 2 <= int(self.uncertainty) <= 8:
            raise InputError(f"uncertainty needs 2 to 8 flips/rotations (or off), got {self.uncertainty}.")
        return self


def check_options(*, mode="fast", tile=None, batch=None, top_k=None, halo=None, keep=PAPER_KEEP) -> None:
    """The one check of the enhancement options (the widget calls it before starting): ``tile`` None or
    at least :data:`MIN_TILE` LR px, ``batch`` and ``top_k`` None or at least 1, ``halo`` None or >= 0,
    ``keep`` in (0, 1]. InputError naming the option otherwise."""
    if mode not in MODES:
        raise InputError(f"unknown stitching mode {mode!r}; choose from {', '.join(MODES)}.")
    for name, v, lo in (("tile", tile, MIN_TILE), ("batch", batch, 1), ("top_k", top_k, 1), ("halo", halo, 0)):
        if v is None:
            continue
        if isinstance(v, bool) or int(v) != v or v < lo:
            raise InputError(f"{name} must be a whole number >= {lo} (or None for the default), got {v!r}.")
    if not 0 < float(keep) <= 1:
        raise InputError(f"keep must be in (0, 1], got {keep!r}.")


def _warn(text: str) -> dict:
    """A warning for the user: a Python ``UserWarning`` (scripts, tests) and a WARNING record (widget, CLI)."""
    import warnings

    warnings.warn(text, UserWarning, stacklevel=3)
    return record(Kind.WARNING, message=f"warning: {text}")


def _tile_message(done: float, total: int, elapsed: float) -> str:
    """``"tile 2.6/4 · 31 s · about 17 s left"``."""
    text = f"tile {done:.1f}/{total}" if done != int(done) else f"tile {int(done)}/{total}"
    text += f" · {format_duration(elapsed)}"
    if 0 < done < total:
        text += f" · about {format_duration(elapsed / done * (total - done))} left"
    return text


def _run_batch_no_grad(model, x, feats, ids, top_k, amp):
    with torch.no_grad():  # thread-local: entered in the thread that runs the batch
        return _run_batch(model, x, feats, ids, top_k, amp)


def enhance_iter(lr, references, model="default", tile=None, batch=None, device=None, cancel=None, *,
                 mode: str = "fast", halo=None, keep: float = PAPER_KEEP, top_k=None, ref_features: RefFeatures | None = None,
                 amp: bool = True):
    """Generator form of :func:`enhance`: yields progress records
    ``{"step", "total", "message", "tile", "batch", ...}`` and returns the result (``None`` if cancelled)."""
    check_options(mode=mode, tile=tile, batch=batch, top_k=top_k, halo=halo, keep=keep)
    img = as_2d_image(lr, "low-resolution image")
    model = resolve_model(model)
    dev = pick_device(device)
    model = model.to(dev).eval()
    if dev.type != "mps":  # NHWC convolutions: 1.5-4x faster for these narrow layers on CPUs and GPUs
        model = model.to(memory_format=torch.channels_last)
    scale = model.scale
    k = int(top_k or model.cfg.top_k)
    if np.min(img) == np.max(img):
        yield _warn(f"the low-resolution image is constant (every pixel {np.min(img):g}): there is nothing to "
                    "enhance; the result is flat too.")
    if ref_features is not None and ref_features.model is model:
        feats = ref_features
    else:
        bank = load_references(references, crop=model.cfg.ref_crop, scale=scale)
        flat = sorted({n for n, c in zip(bank.names, bank.crops) if float(c.max() - c.min()) == 0.0}
                      - {n for n, c in zip(bank.names, bank.crops) if float(c.max() - c.min()) > 0.0})
        if flat:
            yield _warn(f"reference(s) {', '.join(flat)} are constant: they hold no texture to transfer.")
        yield record(Kind.PHASE, phase="reference features", step=0, total=len(bank),
                     message=f"computing features of {len(bank)} reference crop(s)…")
        feats = yield from features_iter(model, bank, dev, cancel)
        if feats is None:
            yield record(Kind.STOPPED, step=0, total=0, message="stopped", status="stopped")
            return None
    stats = norm_stats(img)
    x_all = torch.from_numpy(normalise(img, stats))[None, None]
    amp = amp and dev.type == "cuda"
    tile_sz, margin, bsz = default_tiling(model, mode, dev, tile, halo, batch, keep)
    ids_img = None
    if mode == "fast":
        with torch.no_grad(), autocast(dev, amp):
            emb = image_embedding(model, x_all.to(dev))
        ids_img = feats.select(emb, k)  # (1, k)
    t0 = time.perf_counter()
    while True:  # restarts with a smaller tile after an out-of-memory error at batch 1
        if mode == "fast":  # the grid plan: the same windows whatever part of the image is computed
            tiles, tshape = fast_plan(img.shape, tile_sz, margin), (tile_sz, tile_sz)
        else:
            tshape = (tile_sz, tile_sz)
            tiles = plan_tiles(img.shape, tshape, margin)
        stitch = Stitcher(img.shape, scale)
        total = len(tiles)
        done = 0
        restart = False
        queue = list(tiles)
        while queue:
            if is_cancelled(cancel):
                yield record(Kind.STOPPED, step=done, total=total, message="stopped", status="stopped")
                return None
            chunk = same_shape_batch(queue, bsz)
            xb = torch.cat([x_all[(..., *t.window)] for t in chunk], 0).to(dev)
            ids = None if ids_img is None else ids_img.expand(len(chunk), -1)

            def heartbeat(done=done, n=len(chunk)):
                frac = done + n * monitor.fraction()
                el = time.perf_counter() - t0
                return record(Kind.STEP, phase="tiles", step=done, total=total, fraction=frac / total,
                              elapsed_s=el, message=_tile_message(frac, total, el), tile=tshape, margin=margin,
                              batch=bsz)

            try:
                with ForwardMonitor(model, cancel) as monitor:
                    monitor.begin_pass()
                    out = yield from run_blocking(lambda: _run_batch_no_grad(model, xb, feats, ids, k, amp),
                                                  heartbeat, poll_s=HEARTBEAT_S)
                    monitor.end_pass()
                out = out.cpu().numpy()
            except Cancelled:
                yield record(Kind.STOPPED, step=done, total=total, message="stopped", status="stopped")
                return None
            except Exception as exc:  # noqa: BLE001
                if not is_oom(exc):
                    raise
                del exc
                free_memory(dev)
                if bsz > 1:
                    bsz = max(1, bsz // 2)
                    yield {"step": done, "total": total, "message": f"out of memory: batch halved to {bsz}"}
                    continue
                smallest = 2 * margin + 8 if mode == "fast" else 2 * margin + 1
                tile_sz = min(tile_sz, max(img.shape))  # the effective tile
                if tile_sz // 2 < smallest:
                    raise InputError(
                        f"out of memory even with one {tile_sz}×{tile_sz} tile per batch; use the CPU (device='cpu')."
                    ) from None
                tile_sz //= 2
                if mode == "paper":
                    margin = margin_for_keep(tile_sz, keep)
                yield {"step": done, "total": total, "message": f"out of memory: tile halved to {tile_sz}"}
                restart = True
                break
            for t, o in zip(chunk, out):
                stitch.add(t, o[0])
            queue = queue[len(chunk):]
            done += len(chunk)
            el = time.perf_counter() - t0
            yield record(Kind.STEP, phase="tiles", step=done, total=total, fraction=done / total, elapsed_s=el,
                         message=_tile_message(done, total, el), tile=tshape, margin=margin, batch=bsz)
        if not restart:
            break
    return denormalise_into(stitch.out, stats, img.dtype)


def denormalise_into(out: np.ndarray, stats, dtype) -> np.ndarray:
    """Network output (float32, [-1, 1] for the range ``stats``) back to the input's units in place (no
    extra full-size copy), clipped to an integer ``dtype``'s range. Element-wise: a block of an image
    comes out bit-identical to the same pixels of the whole image."""
    lo, hi = stats
    out += 1.0
    out *= (hi - lo) / 2.0
    out += lo
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        np.clip(out, info.min, info.max, out=out)
    return out


def fast_plan(shape, tile: int, margin: int, region=None):
    """The fast mode's tiles: kept parts of ``tile - 2·margin`` px on a grid anchored at the image
    origin (:func:`matrestore.tiling.plan_grid_tiles`), all of them or those covering ``region``."""
    return plan_grid_tiles(shape, max(1, int(tile) - 2 * int(margin)), int(margin), region)


def run_tiles(model: TTSR, x: torch.Tensor, tiles, feats: RefFeatures, ids, top_k: int, batch: int, amp: bool,
              out: np.ndarray, origin=(0, 0), cancel=None) -> bool:
    """SR of ``tiles`` (image coordinates) of the normalised LR window ``x`` (1, 1, h, w) whose pixel
    (0, 0) is image pixel ``origin``, into ``out`` (the scaled output of the tiles' kept region, whose
    (0, 0) is the first tile's kept corner). Batches of equal-shape tiles, as :func:`enhance_iter` runs
    them; no progress, no out-of-memory recovery (the block engine's inner loop). False if cancelled."""
    s = model.scale
    oy, ox = origin
    ky0, kx0 = tiles[0].ky0, tiles[0].kx0
    queue = list(tiles)
    dev = x.device
    while queue:
        if is_cancelled(cancel):
            return False
        chunk = same_shape_batch(queue, batch)
        xb = torch.cat([x[..., t.y0 - oy : t.y1 - oy, t.x0 - ox : t.x1 - ox] for t in chunk], 0).to(dev)
        res = _run_batch_no_grad(model, xb, feats, None if ids is None else ids.expand(len(chunk), -1), top_k, amp)
        res = res.cpu().numpy()
        for t, r in zip(chunk, res):
            out[(t.ky0 - ky0) * s : (t.ky1 - ky0) * s, (t.kx0 - kx0) * s : (t.kx1 - kx0) * s] = r[0][t.kept_in_tile(s)]
        queue = queue[len(chunk):]
        del res, xb
        trim_host_memory()  # tiles of several shapes fragment the heap: keep the peak at one tile's
    return True


def enhance(lr, references, model="default", tile=None, batch=None, device=None, progress: Callable | None = None,
            cancel=None, **kw):
    """Super-resolve an LR micrograph with a reference bank.

    Parameters
    ----------
    lr : 2-D array
        Low-resolution image, any size (from smaller than a tile to thousands of pixels).
    references : folder, file path(s), array(s), :class:`ReferenceBank`
        HR reference images (cut into the model's ``ref_crop`` crops).
    model : TTSR, path or ``"default"``
    tile, batch : int, optional
        Tile side in LR px (including the discarded margin) and tiles per batch; defaults by mode and
        device (fast: 512 on a grid anchored at the image origin, with a halo of the receptive radius + 2; paper: 32).
    device : str or torch.device, optional
        ``None``: CUDA, then MPS, then CPU.
    progress : callable, optional
        Called with each progress record (dict with ``step``, ``total``, ``message``).
    cancel : threading.Event or callable, optional
        Checked between batches; when set the function returns ``None``.
    mode : ``"fast"`` (default) or ``"paper"``; ``halo``, ``keep``, ``top_k``, ``ref_features`` (a
        :class:`RefFeatures` to reuse across images), ``amp`` (CUDA autocast, default on): see the module doc.

    Returns
    -------
    float32 array of shape ``(s·H, s·W)`` in the input's intensity units (clipped to the input dtype's
    range for integer inputs), or ``None`` if cancelled. Pixel size is the input's divided by ``s``;
    :func:`matrestore.baselines.upsampled_geometry` gives the layer scale/translate.
    """
    from ..progress import drive

    return drive(enhance_iter(lr, references, model, tile=tile, batch=batch, device=device, cancel=cancel, **kw), progress)
