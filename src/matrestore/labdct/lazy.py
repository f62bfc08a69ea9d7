"""LabDCT projection stacks larger than memory: the spot-cleaning kernel of :mod:`matrestore.bigimage`.

:func:`prepare_clean` does once, for the whole stack, what :func:`~matrestore.labdct.infer.clean_iter`
does before its frames — the stack scale ``m`` (median of the non-zero pixels of the same 8 evenly
spread frames, the same random sample), whether ω covers a full turn (neighbours wrap around) — and wraps
them with the model in a :class:`CleanKernel`. The engine then runs blocks of whole frames with a halo of
``neighbours`` frames on the frame axis (``(1, 0, 0)`` for the default model; periodic for a full turn,
mirrored at the ends otherwise, exactly as ``clean`` picks each frame's neighbours), so a block's frames
are bit-identical to ``labdct.clean(stack)`` at the same torch thread count.

The store (one OME-Zarr group, see :func:`clean_to_zarr_iter`):

- ``0``: the cleaned float32 stack (frames × rows × cols), one frame per Zarr chunk; NGFF axes
  ``angle`` (type ``angle``, unit degree, scale = the ω step when ω is known and evenly spaced, else a
  plain frame index), ``y``, ``x``; ``attrs["matrestore"]["describe"]["omegas"]`` holds every frame's ω;
- ``labels/spots/0``: the binary spot masks (uint8 0/1, ``cleaned >= threshold``, as :func:`segment`
  gives them, nothing inside the beam stop when one is given), an NGFF label image of the cleaned stack,
  written from the *stored* cleaned frames after the last block (a quick threshold pass;
  ``attrs["matrestore"]["masks"]`` records its threshold, beam stop (as given, and a digest of the mask)
  and completion, and a rerun that finds the masks missing, or of another threshold or beam stop, rewrites
  them without touching the cleaned frames).

Python::

    kernel = drive(prepare_clean(stack))                            # stack-wide work, once
    lazy = labdct.lazy.clean_lazy("frames/")                        # a lazy dask array (N, H, W)
    labdct.lazy.clean_to_zarr("frames/", "cleaned.zarr", chunk=8)   # 8 frames per block, resumable
    rows = labdct.lazy.store_spot_table("cleaned.zarr", "frames/")  # the spot table, frame by frame
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import numpy as np
import torch

from .._validate import InputError
from ..device import pick_device
from ..progress import Kind, drive, is_cancelled, record
from .infer import DEFAULT_THRESHOLD, _forward, neighbour_indices
from .model import normalise_frames, stack_scale
from .modelio import resolve_model
from .stack import FrameStack, as_stack

__all__ = ["CleanKernel", "prepare_clean", "frames_dask", "open_frames", "clean_lazy", "clean_to_zarr_iter",
           "clean_to_zarr", "write_masks", "write_masks_iter", "resolve_beamstop", "store_masks", "store_spot_table", "RoutineKernel", "prepare_routine", "routine_lazy",
           "routine_to_zarr_iter", "routine_to_zarr", "DEFAULT_FRAMES", "MASKS_PATH"]

DEFAULT_FRAMES = 8  # frames per block
MASKS_PATH = "labels/spots"


# ---------------------------------------------------------------------------------------------- input
class _FrameArray:
    """A :class:`FrameStack` as an array-like that dask reads frame by frame (checked float32 frames)."""

    def __init__(self, st: FrameStack):
        self.st = st
        self.shape = (len(st),) + tuple(st.shape)
        self.dtype = np.dtype(np.float32)
        self.ndim = 3
        self._lock = threading.Lock()  # TIFF pages and the frame cache are not thread-safe

    def __getstate__(self):  # for dask.distributed workers: the stack travels, each process gets its own lock
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        fk = key[0]
        rest = key[1:]
        with self._lock:
            if isinstance(fk, slice):
                frames = [self.st[k][rest] for k in range(*fk.indices(len(self.st)))]
                return np.stack(frames) if frames else np.zeros((0,) + self.shape[1:], np.float32)[(slice(None),) + rest]
            return self.st[int(fk)][rest]


def frames_dask(st: FrameStack):
    """A lazy dask array (N, H, W, float32) of ``st``: one chunk per frame, each read when computed."""
    import dask.array as da

    return da.from_array(_FrameArray(st), chunks=(1,) + tuple(st.shape), name=False, asarray=False)


def open_frames(stack, name: str = "stack", omegas=None) -> FrameStack:
    """A :class:`FrameStack` of anything stack-like without reading it whole: a folder of TIFFs, a
    multi-page TIFF, a FrameStack, a numpy array, or a lazy (dask / Zarr) array read frame by frame."""
    if isinstance(stack, FrameStack) or isinstance(stack, (str, Path, np.ndarray)) or isinstance(stack, (list, tuple)):
        return as_stack(stack, name=name, omegas=omegas)
    if hasattr(stack, "shape") and hasattr(stack, "dtype"):
        if len(stack.shape) != 3:
            raise InputError(f"{name}: shape {tuple(stack.shape)}; a stack of frames (N, H, W) is needed.")
        return as_stack([stack[k] for k in range(int(stack.shape[0]))], name=name, omegas=omegas)
    return as_stack(stack, name=name, omegas=omegas)


# --------------------------------------------------------------------------------------------- kernel
def _frame_pos(j: int, f0: int, n: int, circular: bool, length: int) -> int:
    """Where frame ``j`` of a stack of ``n`` lies in a block's window whose first frame is ``f0`` (negative
    or past the end on a circular stack: frame ``f0 mod n``) of ``length`` frames."""
    w = (j - f0) % n if circular else j - f0
    if not 0 <= w < length:  # pragma: no cover - the halo covers every frame a block needs
        raise RuntimeError(f"frame {j} is not in the block's window")
    return w


class CleanKernel:
    """The model and the stack-wide normalisation of one stack; ``run`` cleans a block of frames
    (see :class:`matrestore.bigimage.BlockKernel`: ``halo = (neighbours, 0, 0)``, whole frames)."""

    scale = 1
    grid = 1
    dtype = np.dtype(np.float32)

    def __init__(self, net, m: float, n: int, frame_shape, circular: bool, *, tile: int, margin: int, batch: int,
                 calib: float, token: str, info: dict):
        self.net, self.m, self.n = net, float(m), int(n)
        self.frame_shape = tuple(int(v) for v in frame_shape)
        self.nb = int(net.cfg.neighbours)
        self.circular = bool(circular)
        self.tile, self.margin, self.batch, self.calib = int(tile), int(margin), int(batch), float(calib)
        self.halo = (self.nb, 0, 0)
        self.boundary = ("periodic" if self.circular else "none", "none", "none")
        self.token = token
        self.info = info

    def describe(self) -> dict:
        return dict(self.info, task="labdct clean", neighbours=self.nb, circular=self.circular, scale_m=self.m,
                    tile=self.tile, margin=self.margin)

    def frame_inputs(self, window: np.ndarray, f0: int, k: int) -> np.ndarray:
        """The raw (C, H, W) neighbourhood of frame ``k`` from a window whose first frame is ``f0``."""
        return np.stack([window[_frame_pos(j, f0, self.n, self.circular, len(window))]
                         for j in neighbour_indices(k, self.n, self.nb, self.circular)])

    def run(self, window, origin, region):
        f0, f1 = int(region[0]), int(region[1])
        dev = next(self.net.parameters()).device
        out = np.zeros((f1 - f0,) + self.frame_shape, np.float32)
        for k in range(f0, f1):
            x = normalise_frames(self.frame_inputs(window, int(origin[0]), k), self.m)
            out[k - f0] = _forward(self.net, x, dev, self.tile, self.margin, self.batch, self.calib)
        return out


def _model_digest(net) -> str:
    h = hashlib.sha1()
    for k, v in net.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def prepare_clean(stack, model="default", *, tile: int = 1024, margin: int = 128, batch: int = 1, device=None,
                  scale: float | None = None, circular=None, omegas=None):
    """Generator: the stack-wide work of :func:`~matrestore.labdct.infer.clean_iter` (progress records),
    returning ``(kernel, frame_stack)``."""
    net = resolve_model(model)
    nb = int(net.cfg.neighbours)
    st = open_frames(stack, omegas=omegas)
    st = as_stack(st, name=st.name, min_frames=1 + 2 * nb if nb else 1)
    if nb and len(st) < 3:
        raise InputError(f"this model needs each frame's neighbours: at least 3 frames, got {len(st)}.")
    dev = pick_device(device)
    net.to(dev).eval()
    net.to(memory_format=torch.channels_last)
    calib = float((getattr(net, "meta", {}) or {}).get("calibration", 0.0) or 0.0)
    yield record(Kind.PHASE, phase="statistics", message="stack scale from 8 evenly spread frames…")
    sample = st.sample_pixels()
    m = float(scale) if scale else stack_scale(sample)
    circ = st.full_turn if circular is None else bool(circular)
    h = hashlib.sha1()
    h.update(_model_digest(net).encode())
    h.update(np.ascontiguousarray(sample, np.float32).tobytes())  # the stack's content: another stack is refused
    h.update(repr((m, circ, len(st), tuple(st.shape), int(tile), int(margin), int(batch), calib)).encode())
    info = {"model": str(model) if isinstance(model, (str, Path)) else "model object", "device": str(dev),
            "omegas": st.omegas, "frames": len(st)}
    kernel = CleanKernel(net, m, len(st), st.shape, circ, tile=tile, margin=margin, batch=batch, calib=calib,
                         token=h.hexdigest()[:16], info=info)
    yield record(Kind.SETUP, message=f"{len(st)} frames of {st.shape[0]}x{st.shape[1]}; normalised by the stack "
                 f"median {m:.4g}" + ("; ω wraps around (full turn)" if circ else ""))
    return kernel, st


def clean_lazy(stack, model="default", *, chunk: int | None = None, **kw):
    """A lazy dask array (N, H, W, float32): ``labdct.clean(stack)`` computed block by block when asked
    for (``chunk`` frames per block). The stack-wide preparation runs now."""
    from ..bigimage import lazy_map

    kernel, st = drive(prepare_clean(stack, model, **kw))
    out, _grid = lazy_map(frames_dask(st), kernel, chunk or DEFAULT_FRAMES)
    return out


# ------------------------------------------------------------------------------ the standard routine
class RoutineKernel:
    """The rolling-median step of the standard routine for a block of whole frames: frame k minus the median
    of its window (:func:`~matrestore.labdct.routine.window_indices`), float32, exactly as
    :func:`~matrestore.labdct.routine.standard_routine_iter` computes it. ``halo = (window // 2, 0, 0)``,
    periodic for a circular window; with ``"none"`` at the ends a window shifted at the first or last frames
    still lies inside the block's frames because every block is wider than the halo (the engine merges a
    thinner last block)."""

    scale = 1
    grid = 1
    dtype = np.dtype(np.float32)

    def __init__(self, n: int, frame_shape, window: int, circular: bool, *, token: str, info: dict):
        self.n, self.window, self.circular = int(n), int(window), bool(circular)
        self.frame_shape = tuple(int(v) for v in frame_shape)
        self.halo = (self.window // 2, 0, 0)
        self.boundary = ("periodic" if self.circular else "none", "none", "none")
        self.token = token
        self.info = info

    def describe(self) -> dict:
        return dict(self.info, task="labdct routine", window=self.window, circular=self.circular)

    def run(self, window, origin, region):
        from .routine import window_indices

        f0, f1, o = int(region[0]), int(region[1]), int(origin[0])
        out = np.zeros((f1 - f0,) + self.frame_shape, np.float32)
        for k in range(f0, f1):
            idx = window_indices(k, self.n, self.window, self.circular)
            pos = [_frame_pos(j, o, self.n, self.circular, len(window)) for j in idx]
            med = np.median(np.stack([window[p] for p in pos]), axis=0).astype(np.float32)
            out[k - f0] = window[_frame_pos(k, o, self.n, self.circular, len(window))] - med
        return out


def prepare_routine(stack, *, window: int = 11, circular=None, omegas=None):
    """Generator: the stack-wide part of the standard routine out of core (checks, whether the window wraps,
    the fingerprint), returning ``(kernel, frame_stack)``."""
    from .routine import _prepare

    st = open_frames(stack, omegas=omegas)
    st, circ, _ = _prepare(st, window, circular, None, name=st.name)
    yield record(Kind.PHASE, phase="statistics", message="fingerprint of the stack from 8 evenly spread frames…")
    h = hashlib.sha1()
    h.update(np.ascontiguousarray(st.sample_pixels(), np.float32).tobytes())
    h.update(repr(("routine", int(window), circ, len(st), tuple(st.shape))).encode())
    info = {"method": "standard routine", "omegas": st.omegas, "frames": len(st)}
    kernel = RoutineKernel(len(st), st.shape, window, circ, token=h.hexdigest()[:16], info=info)
    yield record(Kind.SETUP, message=f"{len(st)} frames of {st.shape[0]}x{st.shape[1]}; rolling median of "
                 f"{int(window)} ({'circular' if circ else 'shifted at the ends'})")
    return kernel, st


def routine_lazy(stack, *, window: int = 11, circular=None, chunk: int | None = None):
    """A lazy dask array (N, H, W, float32) of the median-subtracted frames of the standard routine."""
    from ..bigimage import lazy_map

    kernel, st = drive(prepare_routine(stack, window=window, circular=circular))
    out, _grid = lazy_map(frames_dask(st), kernel, chunk or DEFAULT_FRAMES)
    return out


def routine_to_zarr_iter(stack, path, *, window: int = 11, background: float = 0.0, sigma: float = 1.0,
                         percent: float = 50.0, min_size: int = 3, beamstop="auto", circular=None,
                         background_in_sigma: bool = False, chunk: int | None = None, scheduler=None, workers: int = 1,
                         overwrite: bool = False, cancel=None, omegas=None, pixel_size_nm: float | None = None,
                         name: str | None = None):
    """Generator: the standard routine (:func:`~matrestore.labdct.routine.standard_routine_iter`, same
    options) out of core into the OME-Zarr store ``path``: level ``0`` holds the median-subtracted frames
    (float32, blocks of ``chunk`` frames with a halo of ``window // 2``), ``labels/spots`` the LoG masks
    made from the stored frames — bit-identical to the in-memory masks. Resumable; a rerun with other LoG
    options or another beam stop redoes only the masks. Returns the store path (``None`` when cancelled)."""
    from .routine import RoutineOptions, log_segment, noise_sigma

    opts = RoutineOptions(window=window, beamstop=beamstop, background=background,
                          background_in_sigma=background_in_sigma, sigma=sigma, percent=percent,
                          min_size=min_size).check()
    src = _source_path(stack, path)
    kernel, st = yield from prepare_routine(stack, window=opts.window, circular=circular, omegas=omegas)
    bs, bs_rec = yield from resolve_beamstop(st, opts.beamstop)
    result = yield from _store_stack_iter(st, kernel, path, src, name or f"{st.name}_median_subtracted", chunk=chunk,
                                          scheduler=scheduler, workers=workers, overwrite=overwrite, cancel=cancel,
                                          pixel_size_nm=pixel_size_nm)
    if result is None:
        return None
    key = {"method": "routine", "background": float(opts.background), "background_in_sigma": bool(opts.background_in_sigma),
           "sigma": float(opts.sigma), "percent": float(opts.percent), "min_size": int(opts.min_size), **bs_rec}

    def seg(block):
        out = np.zeros(block.shape, bool)
        for i, corr in enumerate(block):
            bg = opts.background * noise_sigma(corr, bs) if opts.background_in_sigma else opts.background
            out[i] = log_segment(corr, bg, opts.sigma, opts.percent, opts.min_size, exclude=bs)
        return out

    done = yield from _write_labels_iter(result, key, seg, cancel)
    return result if done else None


def routine_to_zarr(stack, path, progress=None, **kw):
    """:func:`routine_to_zarr_iter` run to the end."""
    return drive(routine_to_zarr_iter(stack, path, **kw), progress)


def _source_path(stack, path) -> Path | None:
    """The input's path (``None`` for an array); InputError when the output store would be the input."""
    src = Path(stack).expanduser() if isinstance(stack, (str, Path)) else None
    if src is not None and src.resolve() == Path(path).expanduser().resolve():
        raise InputError("the output store is the input; choose another output path.")
    return src


def _store_stack_iter(st: FrameStack, kernel, path, src, name: str, *, chunk, **kw):
    """Generator: ``kernel`` over the frames of ``st`` into the store ``path`` (blocks of ``chunk`` frames,
    NGFF angle axis from ω; ``kw``: scheduler, workers, overwrite, cancel, pixel_size_nm). Returns the path
    (``None`` when cancelled)."""
    from .. import bigimage

    return (yield from bigimage.store_iter(frames_dask(st), kernel, path, chunk=chunk or DEFAULT_FRAMES, name=name,
                                           lead_axes=[_lead_axis(st.omegas)],
                                           meta={"source": str(src) if src else None}, **kw))


def _lead_axis(omegas) -> dict:
    ax = {"name": "angle", "type": "angle"}
    if omegas is not None and len(omegas) >= 2:
        d = np.diff(np.asarray(omegas, float))
        if np.allclose(d, d[0], rtol=1e-6, atol=1e-9) and d[0] != 0:
            return {**ax, "unit": "degree", "scale": float(d[0]), "translation": float(omegas[0])}
    return ax


# ---------------------------------------------------------------------------------------------- store
def clean_to_zarr_iter(stack, path, model="default", *, chunk: int | None = None, threshold: float = DEFAULT_THRESHOLD,
                       scheduler=None, workers: int = 1, overwrite: bool = False, cancel=None, tile: int = 1024,
                       margin: int = 128, batch: int = 1, device=None, scale: float | None = None, circular=None,
                       omegas=None, pixel_size_nm: float | None = None, name: str | None = None, beamstop=None):
    """Generator: the network clean of ``stack`` (a folder of TIFFs, a multi-page TIFF, a FrameStack, a
    dask / Zarr / numpy stack) into the OME-Zarr store ``path``, ``chunk`` frames per block (default 8),
    then the spot masks at ``threshold`` with nothing inside ``beamstop`` (``None``, a box ``(row0, row1,
    col0, col1)``, a boolean mask, or ``"auto"``: the shadow in the median of 11 evenly spread raw frames,
    as the standard routine finds it; see the module doc). Resumable (a rerun skips the blocks
    written), cancel between blocks; a store of another stack, model or options is refused unless
    ``overwrite``. Returns the store path (``None`` when cancelled)."""
    src = _source_path(stack, path)
    if not 0 < float(threshold) < 1:
        raise InputError(f"threshold must be between 0 and 1 (of the cleaned output), got {threshold}.")
    kernel, st = yield from prepare_clean(stack, model, tile=tile, margin=margin, batch=batch, device=device,
                                          scale=scale, circular=circular, omegas=omegas)
    bs, bs_rec = yield from resolve_beamstop(st, beamstop)
    result = yield from _store_stack_iter(st, kernel, path, src, name or f"{st.name}_cleaned", chunk=chunk,
                                          scheduler=scheduler, workers=workers, overwrite=overwrite, cancel=cancel,
                                          pixel_size_nm=pixel_size_nm)
    if result is None:
        return None
    done = yield from write_masks_iter(result, threshold, cancel=cancel, beamstop=bs, beamstop_record=bs_rec)
    return result if done else None


def clean_to_zarr(stack, path, model="default", progress=None, **kw):
    """:func:`clean_to_zarr_iter` run to the end."""
    return drive(clean_to_zarr_iter(stack, path, model, **kw), progress)


def _masks_info(root) -> dict:
    return dict((dict(root.attrs).get("matrestore") or {}).get("masks") or {})


def beamstop_key(mask) -> str | None:
    """A digest of a resolved beam-stop mask (``None`` for none): what the store records, so that masks made
    with another beam stop are rewritten."""
    if mask is None:
        return None
    m = np.ascontiguousarray(np.asarray(mask, bool))
    return hashlib.sha1(repr(m.shape).encode() + np.packbits(m).tobytes()).hexdigest()[:16]


def _beamstop_spec(beamstop):
    """The beam stop as given, JSON-able (recorded in the store next to its digest)."""
    if beamstop is None or beamstop is False:
        return None
    if isinstance(beamstop, str):
        return beamstop
    a = np.asarray(beamstop)
    return "mask" if a.dtype == bool else [int(v) for v in a.ravel()]


def resolve_beamstop(st, beamstop):
    """Generator: the beam-stop mask of ``st`` (:func:`~matrestore.labdct.routine.stack_beamstop`; a warning
    record when ``"auto"`` finds no shadow), returned with its JSON record ``{"beamstop", "beamstop_sha1"}``."""
    from .routine import stack_beamstop

    bs = stack_beamstop(st, beamstop)
    if isinstance(beamstop, str) and bs is None:
        yield record(Kind.WARNING, message="no beam-stop shadow found in the stack (no dark region near the centre): "
                     "nothing is excluded; give the box (row0, row1, col0, col1) if there is a beam stop")
    return bs, {"beamstop": _beamstop_spec(beamstop), "beamstop_sha1": beamstop_key(bs)}


def _write_labels_iter(path, key: dict, segment_block, cancel=None, frames_per_step: int = 8):
    """Generator: ``labels/spots/0`` (uint8 0/1 = ``segment_block(stored frames f0:f1)``) from the stored
    level 0, frame block by frame block, with NGFF label metadata; ``attrs["matrestore"]["masks"]`` records
    ``key`` (the options the masks depend on) and completion, and the pass is skipped when complete with the
    same ``key``. Returns True (False when cancelled: the masks are redone on the next run)."""
    import zarr
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_label_metadata, write_multiscales_metadata

    from ..ngff import _quiet

    root = zarr.open_group(str(path), mode="r+")
    info = _masks_info(root)
    if info.get("complete") and all(info.get(k) == v for k, v in key.items()):
        return True
    ctx = _quiet()
    try:
        src = root["0"]
        n = int(src.shape[0])
        labels = root.require_group("labels")
        grp = labels.require_group("spots")
        if "0" in grp:
            del grp["0"]
        dst = grp.create_array("0", shape=src.shape, chunks=src.chunks, dtype=np.uint8, fill_value=0)
        mi = dict(root.attrs["matrestore"])
        mi["masks"] = {**key, "complete": False, "path": MASKS_PATH}
        root.attrs["matrestore"] = mi
        for f0 in range(0, n, frames_per_step):
            if is_cancelled(cancel):
                yield record(Kind.STOPPED, message="stopped while writing the spot masks (rerun to finish)",
                             status="stopped")
                return False
            f1 = min(n, f0 + frames_per_step)
            dst[f0:f1] = np.asarray(segment_block(np.asarray(src[f0:f1]))).astype(np.uint8)
            yield record(Kind.STEP, phase="masks", step=f1, total=n, message=f"spot masks {f1}/{n} frames")
        ome = dict(root.attrs).get("ome") or {}
        ms = (ome.get("multiscales") or [{}])[0]
        ds = [dict(d) for d in ms.get("datasets", [])][:1]
        write_multiscales_metadata(grp, ds, fmt=FormatV05(), axes=ms.get("axes"), name="spots")
        labels.attrs["ome"] = {"version": "0.5", "labels": []}  # write_label_metadata appends "spots"
        write_label_metadata(labels, "spots", colors=[{"label-value": 1, "rgba": [255, 64, 64, 255]}], fmt=FormatV05(),
                             source={"image": "../../"})
        mi = dict(root.attrs["matrestore"])
        mi["masks"] = {**key, "complete": True, "path": MASKS_PATH}
        root.attrs["matrestore"] = mi
    finally:
        ctx.__exit__(None, None, None)
    return True


def write_masks_iter(path, threshold: float = DEFAULT_THRESHOLD, cancel=None, frames_per_step: int = 8,
                     beamstop=None, beamstop_record: dict | None = None):
    """Generator: ``labels/spots/0`` (uint8 0/1 = stored cleaned ``>= threshold``, nothing inside
    ``beamstop`` — a box ``(row0, row1, col0, col1)`` or a boolean mask, as :func:`segment` takes it) from
    the stored cleaned stack, frame block by frame block, with NGFF label metadata; skipped when already
    complete at this threshold and beam stop. ``beamstop_record``: how the beam stop was given (from
    :func:`resolve_beamstop`; default: the box or ``"mask"``). Returns True (False when cancelled: the
    masks are redone on the next run)."""
    import zarr

    from .routine import beamstop_mask

    shape = tuple(zarr.open_array(str(Path(path) / "0"), mode="r").shape[-2:])
    bs = beamstop_mask(beamstop, shape)
    key = {"threshold": float(threshold), **(beamstop_record or {"beamstop": _beamstop_spec(beamstop)}),
           "beamstop_sha1": beamstop_key(bs)}
    thr = np.float32(threshold)

    def seg(block):
        m = block >= thr
        if bs is not None:
            m &= ~bs
        return m

    return (yield from _write_labels_iter(path, key, seg, cancel, frames_per_step))


def write_masks(path, threshold: float = DEFAULT_THRESHOLD, progress=None, beamstop=None) -> bool:
    return drive(write_masks_iter(path, threshold, beamstop=beamstop), progress)


def store_masks(path):
    """The stored spot masks as a lazy boolean dask array (N, H, W)."""
    import dask.array as da
    import zarr

    root = zarr.open_group(str(path), mode="r")
    if not _masks_info(root).get("complete"):
        raise InputError(f"{path}: the spot masks are not (completely) written; run the clean again to finish them.")
    return da.from_zarr(root[MASKS_PATH + "/0"]).astype(bool)


def store_spot_table(path, stack, omegas=None, cancel=None) -> list[dict] | None:
    """The spot table (:func:`~matrestore.labdct.infer.spot_table` rows) of a store's masks against the
    raw ``stack``, one frame at a time (peak memory: a frame); ``None`` if cancelled."""
    from .infer import spot_table

    import zarr

    root = zarr.open_group(str(path), mode="r")
    if not _masks_info(root).get("complete"):
        raise InputError(f"{path}: the spot masks are not (completely) written; run the clean again to finish them.")
    mk = root[MASKS_PATH + "/0"]
    st = open_frames(stack, omegas=omegas)
    if tuple(mk.shape) != (len(st),) + tuple(st.shape):
        raise InputError(f"the store's masks have shape {tuple(mk.shape)}, the stack {(len(st),) + tuple(st.shape)}.")
    om = omegas if omegas is not None else st.omegas
    rows = []
    for k in range(len(st)):
        if is_cancelled(cancel):
            return None
        m = np.asarray(mk[k]).astype(bool)
        if m.any():
            for r in spot_table(m[None], st[k][None], omegas=None if om is None else [om[k]]):
                r["frame"] = k
                rows.append(r)
    return rows
