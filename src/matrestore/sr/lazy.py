"""Super-resolution of images larger than memory: the SR kernel of :mod:`matrestore.bigimage`.

:func:`prepare_iter` does once, for the whole image, what :func:`~matrestore.sr.enhance.enhance_iter`
does before its tiles — the normalisation percentiles (on the same regular subsample, read from the
lazy input), the image embedding (the same crops) and the top-k reference selection, the reference
features (and the keys/values of the selected crops) — and wraps them with the model in an
:class:`SRKernel`. Every block then runs the fast mode's grid tiles that cover it
(:func:`~matrestore.sr.enhance.fast_plan`), so a block-wise result is bit-identical to
``sr.enhance(image)`` on the CPU at batch 1 (and equal to float rounding otherwise).

    lazy = sr.enhance_lazy(dask_array, references, model)        # a lazy dask array, 4× the input
    sr.enhance_to_zarr("big.tif", "out.zarr", references)        # OME-Zarr with pyramid, resumable
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import torch

from .._validate import InputError
from ..device import autocast, pick_device
from ..progress import Kind, record
from .enhance import (PAPER_KEEP, _run_batch_no_grad, check_options, default_tiling, denormalise_into, embed_crops,
                      embedding_crops, fast_plan, run_tiles)
from .model import NORM, normalise
from .modelio import resolve_model
from .references import features_iter, fingerprint, load_references

__all__ = ["SRKernel", "prepare_iter", "enhance_lazy", "enhance_to_zarr_iter", "enhance_to_zarr", "norm_stats_lazy"]


def norm_stats_lazy(x, norm: dict = NORM, max_pixels: int = 4_000_000) -> tuple[float, float]:
    """:func:`matrestore.metrics.percentile_range` of a lazy image: the same regular subsample
    (``[::step, ::step]`` above ``max_pixels``), read block by block, so the figures are identical."""
    from ..metrics import percentile_range

    size = int(x.shape[0]) * int(x.shape[1])
    step = int(math.ceil(math.sqrt(size / max_pixels))) if size > max_pixels else 1
    sub = np.asarray(x[::step, ::step])
    return percentile_range(sub, norm["low"], norm["high"], max_pixels=max(max_pixels, sub.size))


class SRKernel:
    """The model, the selected references' features and the image-wide normalisation of one image;
    ``run`` super-resolves one block (see :class:`matrestore.bigimage.BlockKernel`)."""

    def __init__(self, model, feats, ids, stats, image_shape, in_dtype, *, top_k: int, tile: int, margin: int,
                 batch: int, amp: bool, token: str, info: dict, out_dtype=np.float32):
        self.model, self.feats, self.ids = model, feats, ids
        self.stats = (float(stats[0]), float(stats[1]))
        self.image_shape = (int(image_shape[0]), int(image_shape[1]))
        self.in_dtype = np.dtype(in_dtype)
        self.top_k, self.tile, self.margin, self.batch, self.amp = int(top_k), int(tile), int(margin), int(batch), bool(amp)
        self.scale = int(model.scale)
        self.halo = int(margin)
        self.grid = max(1, self.tile - 2 * self.margin)
        self.dtype = np.dtype(out_dtype)
        self.token = f"{token}-{self.dtype}"
        self.info = info

    def describe(self) -> dict:
        return dict(self.info, task="sr", scale=self.scale, tile=self.tile, halo=self.halo, top_k=self.top_k,
                    normalisation=list(self.stats))

    def run(self, window: np.ndarray, origin, region) -> np.ndarray:
        y0, y1, x0, x1 = region
        s = self.scale
        x = torch.from_numpy(normalise(window, self.stats))[None, None]
        dev = next(self.model.parameters()).device
        x = x.to(dev)
        out = np.zeros(((y1 - y0) * s, (x1 - x0) * s), np.float32)
        tiles = fast_plan(self.image_shape, self.tile, self.margin, region)
        with torch.inference_mode():
            run_tiles(self.model, x, tiles, self.feats, self.ids, self.top_k, self.batch, self.amp, out, origin)
        out = denormalise_into(out, self.stats, self.in_dtype)
        if np.issubdtype(self.dtype, np.integer):  # as the CLI writes integer inputs: rounded, clipped
            info = np.iinfo(self.dtype)
            return np.clip(np.rint(out), info.min, info.max).astype(self.dtype)
        return out


def _token(model, bank, ids, stats, shape, tile, margin, k) -> str:
    h = hashlib.sha1()
    h.update(fingerprint(model, bank).encode())
    h.update(repr((ids.cpu().tolist(), [float(v) for v in stats], tuple(int(v) for v in shape), tile, margin, k)).encode())
    return h.hexdigest()[:16]


def prepare_iter(x, references, model="default", *, tile=None, halo=None, batch=None, top_k=None, device=None,
                 cancel=None, amp: bool = True, out_dtype=np.float32):
    """Generator: the image-wide work before the blocks (progress records), returning an
    :class:`SRKernel` (``None`` if cancelled). ``x``: a 2-D lazy (dask) or in-memory array. ``out_dtype``:
    float32 (as :func:`~matrestore.sr.enhance.enhance` returns) or ``"input"`` (integer inputs rounded and
    clipped to their type, as ``matrestore sr enhance`` writes them)."""
    check_options(mode="fast", tile=tile, batch=batch, top_k=top_k, halo=halo, keep=PAPER_KEEP)
    if x.ndim != 2:
        raise InputError(f"super-resolution needs a 2-D grey image, got shape {tuple(x.shape)}.")
    if not np.issubdtype(np.dtype(x.dtype), np.number) or np.issubdtype(np.dtype(x.dtype), np.complexfloating):
        raise InputError(f"the image has data type {x.dtype}; a real-valued grey image is needed.")
    mdl = resolve_model(model)
    dev = pick_device(device)
    mdl = mdl.to(dev).eval()
    if dev.type != "mps":
        mdl = mdl.to(memory_format=torch.channels_last)
    k = int(top_k or mdl.cfg.top_k)
    tile_sz, margin, bsz = default_tiling(mdl, "fast", dev, tile, halo, batch)
    yield record(Kind.PHASE, phase="statistics", message="normalisation percentiles of the whole image…")
    stats = norm_stats_lazy(x)
    if not np.isfinite(stats).all():
        raise InputError("the image contains NaN or infinite values; fix or crop them first.")
    bank = load_references(references, crop=mdl.cfg.ref_crop, scale=mdl.scale)
    yield record(Kind.PHASE, phase="reference features", step=0, total=len(bank),
                 message=f"computing features of {len(bank)} reference crop(s)…")
    feats = yield from features_iter(mdl, bank, dev, cancel)
    if feats is None:
        yield record(Kind.STOPPED, step=0, total=0, message="stopped", status="stopped")
        return None
    amp = amp and dev.type == "cuda"
    windows = embedding_crops(x.shape)
    with torch.no_grad(), autocast(dev, amp):
        if windows is None:
            xs = torch.from_numpy(normalise(np.asarray(x), stats))[None, None].to(dev)
            emb = mdl.embed(mdl.query(mdl.upsample(xs)))
        else:
            crops = torch.cat([torch.from_numpy(normalise(np.asarray(x[w]), stats))[None, None] for w in windows], 0)
            emb = embed_crops(mdl, crops.to(dev))
    ids = feats.select(emb, k)
    # keys/values of the selected crops, computed once here (a tiny pass) and shipped with the kernel
    warm = torch.zeros((1, 1, 8, 8), device=dev)
    _run_batch_no_grad(mdl, warm, feats, ids, k, amp)
    token = _token(mdl, bank, ids, stats, x.shape, tile_sz, margin, k)
    info = {"references": len(bank), "selected": ids.cpu().tolist()[0], "device": str(dev)}
    if isinstance(out_dtype, str) and out_dtype == "input":
        out_dtype = x.dtype if np.issubdtype(np.dtype(x.dtype), np.integer) else np.float32
    return SRKernel(mdl, feats, ids, stats, x.shape, x.dtype, top_k=k, tile=tile_sz, margin=margin, batch=bsz,
                    amp=amp, token=token, info=info, out_dtype=out_dtype)


def enhance_lazy(x, references, model="default", *, chunk: int | None = None, **kw):
    """A lazy dask array: the SR of the 2-D (dask or numpy) array ``x``, computed block by block when
    asked for. The image-wide preparation (:func:`prepare_iter`) runs now."""
    import dask.array as da

    from ..bigimage import lazy_map
    from ..progress import drive

    if not isinstance(x, da.Array):
        x = da.from_array(np.asarray(x), chunks=-1)
    kernel = drive(prepare_iter(x, references, model, **kw))
    out, _grid = lazy_map(x, kernel, chunk)
    return out


def enhance_to_zarr_iter(source, path, references, model="default", *, chunk: int | None = None, scheduler=None,
                         workers: int = 1, overwrite: bool = False, cancel=None, tile=None, halo=None, batch=None,
                         top_k=None, device=None, amp: bool = True, out_dtype="input"):
    """Generator: SR of ``source`` (a path — TIFF, Zarr, OME-Zarr —, a dask or numpy array) into the
    OME-Zarr store ``path`` (see :func:`matrestore.bigimage.store_iter`); returns the store path.
    ``out_dtype``: ``"input"`` (default: integer inputs give integer outputs, rounded) or float32."""
    from .. import bigimage
    from ..io import open_lazy
    from .enhance import output_geometry

    img = open_lazy(source)
    if img.path is not None and img.path.resolve() == Path(path).expanduser().resolve():
        raise InputError("the output store is the input; choose another output path.")
    kernel = yield from prepare_iter(img.data, references, model, tile=tile, halo=halo, batch=batch, top_k=top_k,
                                     device=device, cancel=cancel, amp=amp, out_dtype=out_dtype)
    if kernel is None:
        return None
    geo = output_geometry(img.pixel_size_nm, img.translate_nm or (0.0, 0.0), kernel.scale)
    translate = tuple(geo["translate"])
    result = yield from bigimage.store_iter(
        img.data, kernel, path, chunk=chunk, scheduler=scheduler, workers=workers, overwrite=overwrite, cancel=cancel,
        pixel_size_nm=img.pixel_size_nm, translate=translate, name=f"{img.name}_sr",
        meta={"source": str(img.path) if img.path else None, "written_by": "matrestore"})
    return result


def enhance_to_zarr(source, path, references, model="default", progress=None, **kw):
    """:func:`enhance_to_zarr_iter` run to the end."""
    from ..progress import drive

    return drive(enhance_to_zarr_iter(source, path, references, model, **kw), progress)
