"""Denoising of micrographs larger than memory: the denoising kernel of :mod:`matrestore.bigimage`.

:func:`prepare_iter` does once, for the whole image, what :func:`~matrestore.denoise.apply.denoise_iter`
does before its tiles — the normalisation percentiles (on the same regular subsample, read from the
lazy input), the padding to the model's pixel-shuffle grid, the tile grid — and, for histogram
matching, one monotone grey-level look-up table (below); it wraps them with the (batch-norm-fused)
model in a :class:`DenoiseKernel`. Every block then runs exactly the grid-plan tiles
(:func:`~matrestore.denoise.apply.tile_plan`) that cover it, a block touching the image's bottom/right
end reflect-padded as the whole image is, so with histogram matching off a block-wise result is
bit-identical to ``denoise(image, histogram=False)`` (on the CPU, batch 1, same torch thread count).

**Histogram matching out of core** cannot rank the whole output (the in-memory path sorts every pixel,
:func:`~matrestore.denoise.synth.match_histogram`). Instead, before the blocks:

* the input's quantiles come from the same regular subsample as the normalisation (every pixel up to
  4 Mpx, else ``[::step, ::step]``);
* the output's quantiles come from the network's output on sample windows (:func:`sample_windows`:
  windows of 512 px at the points of a low-discrepancy sequence spread over the image, about 0.5 % of
  it, 8 to 64 windows, each computed with its full halo so its pixels are those of the real run; the
  whole image when that costs less);
* one monotone look-up (``np.interp`` from the output quantile vector to the input quantile vector,
  :data:`QUANTILES` + 2 points) is applied to every block.

This approximates the in-memory rank matching (which it reproduces to ~0.01 grey level when the whole
image is sampled); with sample windows the output's quantiles are an estimate, off by the sample's
unrepresentativeness (measured figures in ``docs/denoise.md``). The look-up is monotone, so the
result's grey-level order is the network's, and values outside the sampled range clamp to the input's
extremes.

    lazy = denoise.denoise_lazy(dask_array, model)                # a lazy dask array, same shape
    denoise.denoise_to_zarr("big.tif", "out.zarr")                # OME-Zarr with pyramid, resumable
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import torch

from .._validate import InputError
from ..device import describe, pick_device
from ..progress import Kind, is_cancelled, record
from .apply import (MIN_SIDE, DenoiseOptions, _round_up, _run, default_halo, grid_kept, overlap_note, run_tiles,
                    tile_plan)
from .model import fuse_for_inference, receptive_radius
from .modelio import NORM, normalise, resolve_model

__all__ = ["DenoiseKernel", "prepare_iter", "denoise_lazy", "denoised_region", "denoise_to_zarr_iter", "denoise_to_zarr",
           "sample_windows", "r2_points", "lazy_grey", "histogram_agreement", "QUANTILES"]

QUANTILES = 4096  # points of the histogram-matching look-up
SAMPLE_CROP = 512  # px: side of one sample window of the output's histogram (large: the halo costs less)
SAMPLE_SHARE = 0.005  # sample windows cover about this share of the image...
SAMPLE_MIN, SAMPLE_MAX = 8, 64  # ...with this many windows at least and at most
SAMPLE_CROPS = None  # default number of windows: from SAMPLE_SHARE
MAX_SUB = 4_000_000  # px: the regular subsample of the input (as metrics.percentile_range)


def _subsample(x, max_pixels: int = MAX_SUB) -> np.ndarray:
    """The regular subsample ``x[::step, ::step]`` that :func:`matrestore.metrics.percentile_range` takes
    (every pixel up to ``max_pixels``), read from the lazy array, as float64."""
    size = int(x.shape[0]) * int(x.shape[1])
    step = int(math.ceil(math.sqrt(size / max_pixels))) if size > max_pixels else 1
    return np.asarray(x[::step, ::step]).astype(np.float64)


def quantile_vector(values: np.ndarray, n: int | None = None) -> np.ndarray:
    """``n + 2`` quantiles of ``values``: the minimum, the values at plotting positions
    ``(k + 0.5)/n`` (the positions rank matching gives, :func:`~matrestore.denoise.synth.match_histogram`)
    and the maximum (``n``: :data:`QUANTILES`)."""
    n = int(n or QUANTILES)
    v = np.sort(np.asarray(values, np.float64).ravel())
    p = (np.arange(n) + 0.5) / n
    inner = np.interp(p * v.size - 0.5, np.arange(v.size), v)
    return np.concatenate([[v[0]], inner, [v[-1]]])


def _strictly_increasing(q: np.ndarray) -> np.ndarray:
    """``q`` (sorted) nudged so that equal neighbours differ (np.interp needs increasing abscissae)."""
    q = np.maximum.accumulate(np.asarray(q, np.float64))
    span = float(q[-1] - q[0]) or 1.0
    return q + np.arange(q.size) * (span * 1e-12)


def r2_points(i):
    """Points ``i`` (int or array) of the R2 low-discrepancy sequence in the unit square, ``(u, v)`` (Roberts
    2018: evenly spread, on no regular grid); the sample windows here and the grain fields
    (:func:`matrestore.denoise.fields.field_grid`) are placed with it."""
    g = 1.324717957244746  # the plastic number
    return (0.5 + i / g) % 1.0, (0.5 + i / g**2) % 1.0


def sample_windows(shape, crop: int = SAMPLE_CROP, max_crops: int | None = None, halo: int = 0, align: int = 1):
    """The regions ``(y0, y1, x0, x1)`` whose output gives the histogram-matching look-up.

    ``max_crops`` windows (default: :data:`SAMPLE_SHARE` of the image, between :data:`SAMPLE_MIN` and
    :data:`SAMPLE_MAX`) of ``crop`` px at the points of the R2 low-discrepancy sequence (evenly spread,
    but on no regular grid that could alias with a periodic structure or a mosaic's seams), corners and
    sides multiples of ``align`` (the model's pixel-shuffle factor); a function of the shape alone.
    ``None`` when the windows with their halo would cost as much as the whole image (``H·W ≤ n·(crop +
    2·halo)²``): the whole image is then used, exactly."""
    H, W = int(shape[0]), int(shape[1])
    a = max(1, int(align))
    c = max(a, min(int(crop), H, W) // a * a)
    n = int(max_crops) if max_crops else int(np.clip(round(SAMPLE_SHARE * H * W / c**2), SAMPLE_MIN, SAMPLE_MAX))
    if H * W <= max(1, n) * (c + 2 * int(halo)) ** 2:
        return None
    u, v = r2_points(np.arange(1, n + 1))
    ys = (u * (H - c + 1)).astype(int) // a * a
    xs = (v * (W - c + 1)).astype(int) // a * a
    return [(int(y), int(y) + c, int(x), int(x) + c) for y, x in zip(ys, xs)]


def lazy_grey(x, colour: str = "luminance", name: str = "image"):
    """``(2-D array, note)``: a lazy RGB(A) image becomes grey (Rec. 601 luminance, alpha dropped) block by
    block; ``colour="error"`` refuses it. Grey images are returned as they are."""
    if x.ndim == 3 and x.shape[-1] in (3, 4) and min(x.shape[:2]) > 4:
        if colour == "error":
            raise InputError(f"{name}: RGB(A) image of shape {tuple(x.shape)}; convert it to greyscale first.")
        rgb = x[..., :3].astype(np.float64)
        grey = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
        note = "RGB image converted to grey (luminance, Rec. 601 weights)" + ("; alpha channel ignored"
                                                                            if x.shape[-1] == 4 else "")
        return grey, note
    if x.ndim != 2:
        raise InputError(f"{name} has shape {tuple(x.shape)}; a 2-D grey (or RGB) image is needed.")
    return x, None


class DenoiseKernel:
    """The (fused) model, the image-wide normalisation, the tile grid and the histogram look-up of one
    image; ``run`` denoises one block (see :class:`matrestore.bigimage.BlockKernel`)."""

    scale = 1

    def __init__(self, net, stats, image_shape, *, kept: int, margin: int, shuffle: int, batch: int, lut=None,
                 token: str, info: dict):
        self.net = net
        self.stats = (float(stats[0]), float(stats[1]))
        self.image_shape = (int(image_shape[0]), int(image_shape[1]))
        s = int(shuffle)
        self.padded = (_round_up(self.image_shape[0], s), _round_up(self.image_shape[1], s))
        self.kept, self.margin, self.shuffle, self.batch = int(kept), int(margin), s, int(batch)
        self.lut = None if lut is None else (np.asarray(lut[0], np.float64), np.asarray(lut[1], np.float64))
        self.halo = self.margin
        self.grid = self.kept
        self.dtype = np.dtype(np.float32)
        self.token = token
        self.info = info

    def describe(self) -> dict:
        return dict(self.info, task="denoise", scale=1, halo=self.halo, kept=self.kept,
                    normalisation=list(self.stats), histogram=("look-up" if self.lut is not None else "off"))

    def output(self, window: np.ndarray, origin, region) -> np.ndarray:
        """The network's output (normalised units, float32) of ``region``: the grid-plan tiles covering
        it, the window reflect-padded at the image's bottom/right end as the whole image is."""
        y0, y1, x0, x1 = region
        H, W = self.image_shape
        n0, n1 = self.padded
        x = normalise(np.asarray(window), self.stats)
        oy, ox = origin
        # the window ends where the image ends (no halo past it): pad it exactly as the whole image is
        # padded there (reflection only reads the last shuffle rows/columns, which the window holds)
        ph = n0 - H if oy + x.shape[0] == H else 0
        pw = n1 - W if ox + x.shape[1] == W else 0
        if ph or pw:
            x = np.pad(x, ((0, ph), (0, pw)), mode="reflect")
        ry1 = n0 if y1 == H else y1
        rx1 = n1 if x1 == W else x1
        tiles = tile_plan(self.padded, self.kept, self.margin, (y0, ry1, x0, rx1))
        out = np.zeros((ry1 - y0, rx1 - x0), np.float32)
        dev = next(self.net.parameters()).device
        run_tiles(self.net, x, tiles, self.batch, dev, out, origin)
        return out[: y1 - y0, : x1 - x0]

    def finish(self, out: np.ndarray) -> np.ndarray:
        """Normalised network output → the input's grey scale (→ the look-up), float32."""
        y = out.astype(np.float64) * (self.stats[1] - self.stats[0]) + self.stats[0]
        if self.lut is not None:
            y = np.interp(y, self.lut[0], self.lut[1])
        return y.astype(np.float32)

    def run(self, window: np.ndarray, origin, region) -> np.ndarray:
        with torch.inference_mode():
            return self.finish(self.output(window, origin, region))


def _token(net, stats, shape, kept, margin, lut) -> str:
    h = hashlib.sha1()
    for k, v in sorted(net.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    h.update(repr(([float(v) for v in stats], tuple(int(v) for v in shape), int(kept), int(margin))).encode())
    if lut is not None:
        h.update(np.ascontiguousarray(lut[0]).tobytes())
        h.update(np.ascontiguousarray(lut[1]).tobytes())
    return "denoise-" + h.hexdigest()[:16]


def _options(options, kw) -> DenoiseOptions:
    if options is None:
        options = DenoiseOptions(**kw)
    elif kw:
        from dataclasses import replace

        options = replace(options, **kw)
    return options.check()


def prepare_iter(x, model="default", options: DenoiseOptions | None = None, *, device=None, cancel=None,
                 sample_crop: int = SAMPLE_CROP, sample_crops: int | None = SAMPLE_CROPS, force_samples: bool = False,
                 **kw):
    """Generator: the image-wide work before the blocks (progress records), returning a
    :class:`DenoiseKernel` (``None`` if cancelled). ``x``: a 2-D (or RGB) lazy (dask) or in-memory array;
    ``options``: :class:`~matrestore.denoise.apply.DenoiseOptions` (or its fields as keywords).
    ``sample_crop``/``sample_crops``: the histogram's sample windows (:func:`sample_windows`);
    ``force_samples``: sample windows even where the whole image would cost less (for measurements)."""
    import dask.array as da

    opts = _options(options, kw)
    if not isinstance(x, da.Array):
        x = da.from_array(np.asarray(x), chunks=-1) if isinstance(x, np.ndarray) else da.from_array(x)
    if not np.issubdtype(np.dtype(x.dtype), np.number) or np.issubdtype(np.dtype(x.dtype), np.complexfloating) \
            or np.dtype(x.dtype) == np.bool_:
        raise InputError(f"the image has data type {x.dtype}; integer or float pixels are needed.")
    x, note = lazy_grey(x, opts.colour)
    if note:
        yield record(Kind.WARNING, message=note)
    H, W = (int(v) for v in x.shape)
    if min(H, W) < MIN_SIDE:
        raise InputError(f"the image of shape {(H, W)} is too small for the network (at least {MIN_SIDE} px a side).")
    net = fuse_for_inference(resolve_model(model))
    dev = pick_device(device)
    net = net.to(dev).eval()
    s = int(net.cfg.shuffle)
    margin = default_halo(net) if opts.halo is None else _round_up(max(0, int(opts.halo)), s)
    n0, n1 = _round_up(H, s), _round_up(W, s)
    kept = grid_kept((n0, n1), opts.tile, margin, s)
    if max(n0, n1) > kept and kept < 2 * margin:
        yield record(Kind.WARNING, message=overlap_note(kept, margin))
    r = receptive_radius(net.cfg)
    if max(n0, n1) > kept and not (r >= 0 and margin >= r):
        yield record(Kind.WARNING, message=(
            "this model's attention pools over the whole image (global squeeze): block and tile results differ "
            "slightly from a whole-image pass" if r < 0 else f"halo {margin} px is below the receptive radius {r} px: "
            "tiles will differ from a whole-image pass"))
    yield record(Kind.PHASE, phase="statistics", message="normalisation percentiles of the whole image…")
    from ..metrics import percentile_range

    sub = _subsample(x)
    if not np.isfinite(sub).all():
        raise InputError("the image contains NaN or infinite values; fix or crop them first.")
    if float(np.ptp(sub)) == 0.0:
        raise InputError(f"the image is constant (every sampled pixel {sub.flat[0]:g}); there is nothing to denoise.")
    stats = percentile_range(sub, NORM["low"], NORM["high"], max_pixels=max(MAX_SUB, sub.size))
    kernel = DenoiseKernel(net, stats, (H, W), kept=kept, margin=margin, shuffle=s, batch=opts.batch, token="",
                           info={})
    lut = None
    windows = None
    if opts.histogram:
        q_in = quantile_vector(sub)
        del sub
        windows = sample_windows((H, W), sample_crop, sample_crops, 0 if force_samples else margin, s)
        regions = [(0, H, 0, W)] if windows is None else windows
        outs = []
        for i, (y0, y1, x0, x1) in enumerate(regions):
            if is_cancelled(cancel):
                yield record(Kind.STOPPED, step=i, total=len(regions), message="stopped", status="stopped")
                return None
            yield record(Kind.PHASE, phase="histogram samples", step=i, total=len(regions),
                         message=f"output histogram: sample window {i + 1}/{len(regions)}…")
            outs.append(_sample_output(kernel, x, (y0, y1, x0, x1)))
        y = np.concatenate([o.ravel() for o in outs]).astype(np.float64) * (stats[1] - stats[0]) + stats[0]
        lut = (_strictly_increasing(quantile_vector(y)), q_in)
        kernel.lut = lut
    token = _token(net, stats, (H, W), kept, margin, lut)
    kernel.token = token
    kernel.info = {"device": str(dev), "device_name": describe(dev), "model_name": (getattr(net, "meta", {}) or {}).get("name"),
                   "options": opts.kwargs(), "colour": note,
                   "histogram_samples": (None if not opts.histogram else
                                         ("whole image" if windows is None else
                                          f"{len(windows)} windows of {windows[0][1] - windows[0][0]} px"))}
    return kernel


def _sample_output(kernel: DenoiseKernel, x, region) -> np.ndarray:
    """The network's output (normalised) on ``region`` of the lazy image, computed from a window with the
    halo around it (the grid-plan tiles for the whole image; one piece for a sample window)."""
    H, W = kernel.image_shape
    y0, y1, x0, x1 = region
    if region == (0, H, 0, W):
        return kernel.output(np.asarray(x), (0, 0), region)
    m = kernel.margin
    n0, n1 = kernel.padded  # the window in padded-image coordinates (its sides multiples of the shuffle)
    wy0, wy1, wx0, wx1 = max(0, y0 - m), min(n0, y1 + m), max(0, x0 - m), min(n1, x1 + m)
    w = normalise(np.asarray(x[wy0:min(wy1, H), wx0:min(wx1, W)]), kernel.stats)
    ph, pw = max(0, wy1 - H), max(0, wx1 - W)
    if ph or pw:
        w = np.pad(w, ((0, ph), (0, pw)), mode="reflect")
    dev = next(kernel.net.parameters()).device
    out = _run(kernel.net, w[None], dev)[0]
    return out[y0 - wy0 : y1 - wy0, x0 - wx0 : x1 - wx0]


def denoised_region(kernel: DenoiseKernel, x, region) -> np.ndarray:
    """The denoised ``region = (y0, y1, x0, x1)`` of the lazy image ``x`` in the input's grey scale
    (float32): read with the halo around it, image-wide normalisation and look-up (what a field of a
    field-by-field measurement needs, without computing the blocks around it)."""
    with torch.inference_mode():
        return kernel.finish(_sample_output(kernel, x, tuple(int(v) for v in region)))


def denoise_lazy(x, model="default", options: DenoiseOptions | None = None, *, chunk: int | None = None,
                 device=None, sample_crop: int = SAMPLE_CROP, sample_crops: int | None = SAMPLE_CROPS,
                 force_samples: bool = False, **kw):
    """A lazy dask array: the denoised 2-D (dask or numpy) image ``x`` (float32, same shape), computed
    block by block when asked for. The image-wide preparation (:func:`prepare_iter`) runs now."""
    import dask.array as da

    from ..bigimage import lazy_map
    from ..progress import drive

    if not isinstance(x, da.Array):
        x = da.from_array(np.asarray(x), chunks=-1)
    kernel = drive(prepare_iter(x, model, options, device=device, sample_crop=sample_crop, sample_crops=sample_crops,
                                force_samples=force_samples, **kw))
    grey, _ = lazy_grey(x, _options(options, kw).colour)
    out, _grid = lazy_map(grey, kernel, chunk)
    return out


def denoise_to_zarr_iter(source, path, model="default", options: DenoiseOptions | None = None, *,
                         chunk: int | None = None, scheduler=None, workers: int = 1, overwrite: bool = False,
                         cancel=None, device=None, sample_crop: int = SAMPLE_CROP, sample_crops: int | None = SAMPLE_CROPS,
                         **kw):
    """Generator: the denoised ``source`` (a path — TIFF, Zarr, OME-Zarr —, a dask or numpy array) into the
    OME-Zarr store ``path`` (float32, the input's pixel size and origin; see
    :func:`matrestore.bigimage.store_iter`); returns the store path (``None`` if cancelled: resumable)."""
    from .. import bigimage
    from ..io import open_lazy

    opts = _options(options, kw)
    img = open_lazy(source)
    if img.path is not None and img.path.resolve() == Path(path).expanduser().resolve():
        raise InputError("the output store is the input; choose another output path.")
    kernel = yield from prepare_iter(img.data, model, opts, device=device, cancel=cancel, sample_crop=sample_crop,
                                     sample_crops=sample_crops)
    if kernel is None:
        return None
    grey, _ = lazy_grey(img.data, opts.colour)
    result = yield from bigimage.store_iter(
        grey, kernel, path, chunk=chunk, scheduler=scheduler, workers=workers, overwrite=overwrite, cancel=cancel,
        pixel_size_nm=img.pixel_size_nm, translate=tuple(img.translate_nm or (0.0, 0.0)), name=f"{img.name}_denoised",
        meta={"source": str(img.path) if img.path else None, "written_by": "matrestore"})
    return result


def denoise_to_zarr(source, path, model="default", options: DenoiseOptions | None = None, progress=None, **kw):
    """:func:`denoise_to_zarr_iter` run to the end (``progress`` gets each record)."""
    from ..progress import drive

    return drive(denoise_to_zarr_iter(source, path, model, options, **kw), progress)


def histogram_agreement(image, model="default", *, tile: int = 1024, chunk: int | None = None,
                        sample_crop: int = SAMPLE_CROP, sample_crops: int | None = SAMPLE_CROPS,
                        force_samples: bool = False, boundary_f1: bool = True, f1_region=None) -> dict:
    """How close the out-of-core histogram matching comes to the in-memory rank matching on an image that
    fits in memory: ``max_abs``, ``mean_abs``, ``p99_abs`` of ``denoise_lazy(...) − denoise(...,
    histogram=True)`` (input grey levels), the samples used, and (``boundary_f1``) the F1 of the grain
    boundaries of :func:`~matrestore.denoise.scoring.segment` on the two results (on ``f1_region``, a
    pair of slices, if given) beside the same F1 of the unmatched network output, which has the matched
    output's grey-level order but not its ties. ``force_samples``: use sample windows even where the whole
    image would be cheaper (to measure the sampled regime on a small image)."""
    import time

    import dask.array as da

    from .apply import denoise

    img = np.asarray(image)
    net = resolve_model(model)
    t = time.perf_counter()
    mem = denoise(img, net, tile=tile, histogram=True).astype(np.float64)
    t_mem = time.perf_counter() - t
    x = da.from_array(img, chunks=chunk or 1024)
    halo = 0 if force_samples else default_halo(net)
    t = time.perf_counter()
    lazy = denoise_lazy(x, net, chunk=chunk, tile=tile, histogram=True, sample_crop=sample_crop,
                        sample_crops=sample_crops, force_samples=force_samples)
    out = lazy.compute(scheduler="sync").astype(np.float64)
    t_lazy = time.perf_counter() - t
    w = sample_windows(img.shape[:2], sample_crop, sample_crops, halo, int(net.cfg.shuffle))
    d = np.abs(out - mem)
    kept = img.shape[0] * img.shape[1] if w is None else sum((b - a) * (q - p) for a, b, p, q in w)
    doc = {"shape": list(img.shape[:2]), "samples": "whole image" if w is None else f"{len(w)} × {w[0][1] - w[0][0]} px",
           "sampled_fraction": round(kept / (img.shape[0] * img.shape[1]), 3), "max_abs": float(d.max()),
           "mean_abs": float(d.mean()), "p99_abs": float(np.percentile(d, 99)), "blocks": int(np.prod(lazy.numblocks)),
           "in_memory_s": round(t_mem, 2), "out_of_core_s": round(t_lazy, 2)}
    if boundary_f1:
        from .scoring import boundary_f1 as f1
        from .scoring import segment
        from .synth import boundary_map

        c = f1_region or (slice(None), slice(None))
        ref = boundary_map(segment(mem[c]))
        doc["boundary_f1"] = f1(boundary_map(segment(out[c])), ref)["f1"]
        doc["boundary_f1_unmatched"] = f1(boundary_map(segment(denoise(img, net, tile=tile, histogram=False)[c])), ref)["f1"]
    return doc
