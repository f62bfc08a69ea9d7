"""Out-of-core restoration: one block engine for every image-to-image task, on dask and Zarr.

A task hands the engine a **kernel** (:class:`BlockKernel`): its output ``scale`` (4 for SR, 1 for
denoising), its ``halo`` (input px of context a block needs on each side: the network's receptive
radius), its ``grid`` (block sides are multiples of it: the task's tile grid, so that a block runs
exactly the tiles the whole image would run there) and ``run(window, origin, region)`` that computes
one block. Everything image-wide (normalisation percentiles, reference selection, reference features)
is computed once by the task before the kernel is made and travels inside it, so a block's pixels are
bit-identical to the same pixels of an in-memory run.

* :func:`lazy_map` — a lazy dask array of the output (``dask.array.map_overlap`` with the halo, no
  padding at the image border, output chunks ``scale ×`` the input chunks); nothing is computed.
* :func:`store_iter` — a generator that computes the blocks (local threads by default, or a
  ``dask.distributed`` client: ``LocalCluster``, ``LocalCUDACluster``, a SLURM cluster from
  dask-jobqueue) and writes each one into a Zarr store as it completes, with a completion record per
  block (a rerun skips completed blocks; a block half-written at a crash has no record and is redone),
  then builds the pyramid from the stored level 0 and writes the OME-NGFF metadata
  (:mod:`matrestore.ngff`). Progress: blocks done / total with time left; cancel stops between blocks
  and leaves a resumable store.

The kernel is one object in the graph (a ``dask.delayed`` value): a worker process receives it once and
keeps the model loaded for all its blocks (:func:`kernel_cache`).
"""

from __future__ import annotations

import errno
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ._validate import InputError
from .progress import Kind, format_duration, is_cancelled, record

__all__ = ["BlockKernel", "BlockGrid", "block_grid", "lazy_map", "store_iter", "store", "DEFAULT_CHUNK", "SmoothUpKernel",
           "get_client", "kernel_cache"]

DEFAULT_CHUNK = 1024  # input px per block side (rounded to the task's grid)
MARKERS = ".matrestore_blocks"  # folder in the store: one empty file per completed level-0 block


class BlockKernel(Protocol):
    """What a task gives the engine (see the module doc)."""

    scale: int
    halo: int
    grid: int
    dtype: Any
    token: str  # identifies the computation (model, references, options): a store made by another is refused

    def run(self, window: np.ndarray, origin: tuple[int, int], region: tuple[int, int, int, int]) -> np.ndarray:
        """Output (``scale·h × scale·w``) of ``region = (y0, y1, x0, x1)`` (image px) from ``window``, the
        input pixels of the region plus up to ``halo`` around it, whose pixel (0, 0) is image ``origin``."""

    def describe(self) -> dict:
        """JSON-able facts recorded in the store (task, model, options)."""


# --------------------------------------------------------------------------------------------- blocks
@dataclass(frozen=True)
class BlockGrid:
    """Block edges along each axis (input px) and what was adjusted to get them."""

    rows: tuple
    cols: tuple
    notes: tuple = field(default=())
    side: int = 0  # the nominal block side (every block starts at a multiple of it)
    lead: tuple = field(default=())  # block edges of the leading (frame) axes of a stack, () for a 2-D image

    @property
    def edges(self) -> tuple:
        """Block edges of every axis (leading axes first, then rows and columns)."""
        return tuple(self.lead) + (self.rows, self.cols)

    @property
    def chunks(self) -> tuple:
        return tuple(tuple(np.diff(e).tolist()) for e in self.edges)

    @property
    def shape(self) -> tuple:
        return tuple(len(e) - 1 for e in self.edges)

    def region(self, *index: int) -> tuple:
        """``(y0, y1, x0, x1)`` of block ``(i, j)``; for a stack ``(f0, f1, y0, y1, x0, x1)`` of block
        ``(k, i, j)`` (start and end of every axis)."""
        out = []
        for e, i in zip(self.edges, index):
            out += [int(e[i]), int(e[i + 1])]
        return tuple(out)

    def blocks(self) -> list:
        """The index of every block, in order."""
        import itertools

        return list(itertools.product(*(range(n) for n in self.shape)))


def _axis_edges(n: int, chunk: int, halo: int) -> list[int]:
    edges = list(range(0, n, chunk)) + [n]
    if len(edges) > 2 and edges[-1] - edges[-2] <= halo:  # a last block thinner than the halo: merge it
        del edges[-2]
    return edges


def block_grid(shape, chunk: int | None, grid: int, halo: int) -> BlockGrid:
    """The blocks of an image of ``shape`` (2-D): sides ``chunk`` rounded to a multiple of ``grid`` and
    larger than the ``halo`` (dask's overlap needs every block at least as wide as the halo it lends), the
    last block of an axis merged into its neighbour when thinner than the halo. ``notes`` say what was
    changed (shown to the user)."""
    H, W = int(shape[-2]), int(shape[-1])
    grid, halo = max(1, int(grid)), max(0, int(halo))
    want = DEFAULT_CHUNK if chunk is None else int(chunk)
    if want < 1:
        raise InputError(f"--chunk must be a positive number of pixels, got {chunk}.")
    notes = []
    c = max(grid, int(round(want / grid)) * grid)
    while c <= halo:
        c += grid
    if chunk is not None and c != want:
        notes.append(f"block side {want} px rounded to {c} px (a multiple of the {grid} px tile grid, "
                     f"wider than the {halo} px halo)")
    rows, cols = _axis_edges(H, c, halo), _axis_edges(W, c, halo)
    return BlockGrid(tuple(rows), tuple(cols), tuple(notes), c)


def kernel_axes(kernel, ndim: int) -> tuple[tuple, tuple, tuple]:
    """Per-axis ``(halo, grid, boundary)`` of ``kernel`` for an input of ``ndim`` axes. A 2-D kernel's
    ``halo`` and ``grid`` are ints (the spatial axes); a stack kernel may give tuples with one entry per
    axis (e.g. ``halo = (1, 0, 0)``: each frame's two neighbours) and ``boundary`` (``"none"``, or
    ``"periodic"`` on an axis that wraps around, such as the ω of a full turn)."""
    def per_axis(v, lead_default):
        if isinstance(v, (tuple, list)):
            if len(v) != ndim:
                raise InputError(f"the kernel gives {len(v)} per-axis values for a {ndim}-D input.")
            return tuple(v)
        return (lead_default,) * (ndim - 2) + (v, v)

    halo = tuple(max(0, int(h)) for h in per_axis(kernel.halo, 0))
    grid = tuple(max(1, int(g)) for g in per_axis(kernel.grid, 1))
    bnd = getattr(kernel, "boundary", "none")
    bnd = tuple(per_axis(bnd, bnd if isinstance(bnd, str) else "none"))
    return halo, grid, bnd


def stack_grid(shape, frames: int | None, grid=1, halo=(0, 0, 0), side: int | None = None) -> BlockGrid:
    """The blocks of a stack of ``shape`` (N, H, W): ``frames`` frames per block (more than the frame
    halo; a last block thinner than the halo merged into its neighbour), whole frames unless ``side``
    (then the frames are tiled as :func:`block_grid` tiles a 2-D image). ``grid``/``halo``: an int or
    per-axis ``(frame, y, x)`` values."""
    if len(shape) != 3:
        raise InputError(f"a stack (frames × rows × cols) is needed, got shape {tuple(shape)}.")
    n, H, W = (int(v) for v in shape)
    hz, hy, hx = (halo,) * 3 if isinstance(halo, int) else (int(v) for v in halo)
    gy = grid[-1] if isinstance(grid, (tuple, list)) else int(grid)
    want = 8 if frames is None else int(frames)
    if want < 1:
        raise InputError(f"--chunk must be a positive number of frames, got {frames}.")
    notes = []
    f = want
    while f <= hz:
        f += 1
    if f != want:
        notes.append(f"{want} frame(s) per block raised to {f} (more than the {hz}-frame halo)")
    lead = (tuple(_axis_edges(n, f, hz)),)
    if side is None:
        if hy or hx:
            raise InputError("a stack kernel with a spatial halo needs a block side (side=...).")
        return BlockGrid((0, H), (0, W), tuple(notes), max(H, W), lead)
    g2 = block_grid((H, W), side, gy, max(hy, hx))
    return BlockGrid(g2.rows, g2.cols, tuple(notes) + g2.notes, g2.side, lead)


def _window_origin(grid: BlockGrid, i: int, j: int, halo: int) -> tuple[int, int]:
    """Image coordinates of pixel (0, 0) of block (i, j) as ``map_overlap(boundary="none")`` hands it over
    (the halo on every side that has a neighbour)."""
    return (int(grid.rows[i]) - (halo if i > 0 else 0), int(grid.cols[j]) - (halo if j > 0 else 0))


def _run_window(window, kernel, origin, region):
    """``kernel.run`` on one block's input window, then the freed heap handed back to the system (one
    block's working set at a time, whatever the image size)."""
    out = np.asarray(kernel.run(np.asarray(window), origin, region), dtype=kernel.dtype)
    from .device import trim_host_memory

    trim_host_memory()
    return out


def _kernel_delayed(kernel):
    """The kernel as one ``dask.delayed`` value of the graph (a worker receives it once for all its blocks)."""
    import dask

    return dask.delayed(kernel, pure=True, name=f"matrestore-kernel-{kernel.token}")


def _run_block(block, block_info=None, kernel=None, grid: BlockGrid | None = None):
    i, j = block_info[0]["chunk-location"][-2:]
    return _run_window(block, kernel, _window_origin(grid, i, j, kernel.halo), grid.region(i, j))


def plan_grid(x, kernel: BlockKernel, chunk=None) -> BlockGrid:
    """The blocks of ``kernel`` over the input ``x`` (2-D: :func:`block_grid`, with a note when the input's
    chunks are thinner than the halo; a stack: :func:`stack_grid`, ``chunk`` frames per block or ``(frames,
    side)``); InputError for an input the engine cannot take."""
    if x.ndim == 3:
        halo, g, bnd = kernel_axes(kernel, 3)
        frames, side = (chunk if isinstance(chunk, (tuple, list)) else (chunk, None))
        if int(x.shape[0]) <= halo[0] and bnd[0] == "periodic":
            raise InputError(f"{x.shape[0]} frame(s) are too few for a {halo[0]}-frame halo that wraps around.")
        return stack_grid(x.shape, frames, g, halo, side)
    if x.ndim != 2:
        raise InputError(f"the block engine needs a 2-D image or a stack (frames × rows × cols), got shape "
                         f"{tuple(x.shape)}.")
    grid = block_grid(x.shape, chunk, kernel.grid, kernel.halo)
    small = min(min(c) for c in x.chunks)
    if small < kernel.halo:
        grid = BlockGrid(grid.rows, grid.cols, grid.notes + (
            f"the input's chunks ({small} px at the smallest) are smaller than the {kernel.halo} px halo: "
            f"rechunked to blocks of {grid.side} px",), grid.side)
    return grid


def lazy_map(x, kernel: BlockKernel, chunk: int | None = None, grid: BlockGrid | None = None):
    """The lazy output of ``kernel`` over the 2-D dask array ``x`` (nothing is computed here).

    ``x`` is rechunked to the blocks of :func:`block_grid` (the dask chunks of the input are only where
    it is read from); the result has chunks ``scale ×`` those blocks. Returns ``(array, grid)``."""
    import dask.array as da

    if grid is None:
        grid = plan_grid(x, kernel, chunk)
    if x.ndim == 3:
        return _lazy_map_stack(x, kernel, grid)
    xr = x.rechunk(grid.chunks)
    s = int(kernel.scale)
    out_chunks = tuple(tuple(c * s for c in cs) for cs in grid.chunks)
    y = da.map_overlap(_run_block, xr, depth=int(kernel.halo), boundary="none", trim=False, chunks=out_chunks,
                       dtype=np.dtype(kernel.dtype), kernel=_kernel_delayed(kernel), grid=grid,
                       meta=np.empty((0, 0), kernel.dtype))
    return y, grid


def _run_block_nd(block, block_info=None, kernel=None, grid: BlockGrid | None = None, halo=(), boundary_axes=()):
    idx = tuple(block_info[0]["chunk-location"])
    region = grid.region(*idx)
    origin = tuple(int(e[i]) - (h if (i > 0 or b == "periodic") else 0)
                   for e, i, h, b in zip(grid.edges, idx, halo, boundary_axes))
    return _run_window(block, kernel, origin, region)


def _lazy_map_stack(x, kernel, grid):
    """:func:`lazy_map` of a stack (N, H, W): blocks of whole frames (or tiles of frames), a per-axis halo
    and boundary (:func:`kernel_axes`); ``run`` gets ``origin = (f, y, x)`` of the window's first pixel
    (negative, or past the end, on a periodic axis: frame ``f`` is ``f mod N``) and ``region = (f0, f1,
    y0, y1, x0, x1)``; the output has the input's frames and ``scale ×`` its rows and columns."""
    import dask.array as da

    halo, _g, bnd = kernel_axes(kernel, 3)
    xr = x.rechunk(grid.chunks)
    s = int(kernel.scale)
    out_chunks = grid.chunks[:1] + tuple(tuple(c * s for c in cs) for cs in grid.chunks[1:])
    depth = {a: int(h) for a, h in enumerate(halo)}
    boundary = {a: ("periodic" if b == "periodic" else "none") for a, b in enumerate(bnd)}
    y = da.map_overlap(_run_block_nd, xr, depth=depth, boundary=boundary, trim=False, chunks=out_chunks,
                       dtype=np.dtype(kernel.dtype), kernel=_kernel_delayed(kernel), grid=grid, halo=halo,
                       boundary_axes=bnd,
                       meta=np.empty((0, 0, 0), kernel.dtype))
    return y, grid


def block_window(x, grid: BlockGrid, index: tuple, halo: tuple, boundary: tuple):
    """The input window of block ``index`` as :func:`lazy_map`'s ``map_overlap`` hands it over — the block
    with ``halo`` on every side that has a neighbour (wrapped around on a ``"periodic"`` axis) — sliced
    straight from ``x``'s own chunks, with its origin (the coordinates of its first pixel). A block run
    alone then reads only its window; a block of the rechunked graph computed alone reads its neighbour
    blocks whole (3x the frames of a stack in blocks of 8)."""
    win, origin = x, []
    for a, (e, i, h, b) in enumerate(zip(grid.edges, index, halo, boundary)):
        n, last = int(x.shape[a]), len(e) - 2
        if b == "periodic":
            lo, hi = int(e[i]) - h, int(e[i + 1]) + h
            sel = slice(lo, hi) if (lo >= 0 and hi <= n) else np.arange(lo, hi) % n
        else:
            lo = int(e[i]) - (h if i > 0 else 0)
            hi = int(e[i + 1]) + (h if i < last else 0)
            sel = slice(lo, hi)
        origin.append(lo)
        win = win[(slice(None),) * a + (sel,)]
    return win, tuple(origin)


def block_task(x, kernel, grid: BlockGrid, index: tuple):
    """A delayed computation of block ``index`` of ``kernel`` over ``x`` that reads only the block's window
    (:func:`block_window`); equal to that block of :func:`lazy_map`."""
    import dask

    halo, _g, bnd = kernel_axes(kernel, x.ndim)
    win, origin = block_window(x, grid, tuple(index), halo, bnd)
    return dask.delayed(_run_window, pure=True)(win, _kernel_delayed(kernel), origin, grid.region(*index))


# --------------------------------------------------------------------------------------------- cache
_KERNELS: dict = {}
_KERNELS_LOCK = threading.Lock()


def kernel_cache(token: str, make):
    """The process-wide object for ``token`` (made once by ``make()``): a worker that unpickles the same
    kernel for many blocks loads its model once."""
    with _KERNELS_LOCK:
        obj = _KERNELS.get(token)
        if obj is None:
            obj = make()
            _KERNELS.clear()  # one kernel at a time per process (bounded memory)
            _KERNELS[token] = obj
        return obj


# --------------------------------------------------------------------------------------------- schedulers
def get_client(scheduler):
    """``None`` for the local threaded scheduler (``None``, ``"threads"``, ``"local"``); a
    ``dask.distributed.Client`` as given, or one connected to an address (``"tcp://host:8786"``), or a new
    ``LocalCluster`` for ``"processes"`` / ``"processes:N"`` (N worker processes of one thread)."""
    if scheduler is None or scheduler in ("threads", "local", "sync"):
        return None
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - a dependency
        raise InputError("a dask.distributed scheduler needs the 'distributed' package.") from exc
    if isinstance(scheduler, Client):
        return scheduler
    text = str(scheduler)
    if text.startswith("processes"):
        n = int(text.split(":", 1)[1]) if ":" in text else max(1, os.cpu_count() or 1)
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
        client._matrestore_owned = True  # closed by store_iter when done
        return client
    try:
        return Client(text, timeout=10)
    except Exception as exc:  # noqa: BLE001 - say which address failed
        raise InputError(f"cannot connect to the dask scheduler at {text!r}: {exc}") from exc


# --------------------------------------------------------------------------------------------- store
def _marker(path: Path, *index: int) -> Path:
    return Path(path) / MARKERS / ".".join(str(int(i)) for i in index)


def _write_block(data, path: str, region_out: tuple, marker: str, levels: int = 1):
    """Write one computed block into level 0 of the store, its part of the coarser levels (each read back
    from the level below as stored), then its completion record."""
    import zarr

    from .ngff import write_block_levels

    sl = tuple(slice(region_out[2 * a], region_out[2 * a + 1]) for a in range(len(region_out) // 2))
    arr = zarr.open_array(str(Path(path) / "0"), mode="r+")
    try:
        arr[sl] = data
        if levels > 1:
            write_block_levels(path, region_out, levels)
        Path(marker).touch()
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise InputError(f"disk full while writing {path}: the store is incomplete (block {Path(marker).name} "
                             "not recorded); free some space and run again to resume.") from exc
        raise
    return int(data.size)


def _fingerprint(kernel, shape, grid: BlockGrid, dtype) -> dict:
    fp = {"token": kernel.token, "input_shape": [int(v) for v in shape], "scale": int(kernel.scale),
          "rows": list(map(int, grid.rows)), "cols": list(map(int, grid.cols)), "dtype": str(np.dtype(dtype))}
    if grid.lead:
        fp["lead"] = [list(map(int, e)) for e in grid.lead]
    return fp


def store_iter(x, kernel: BlockKernel, path, *, chunk: int | None = None, scheduler=None, overwrite: bool = False,
               cancel=None, pixel_size_nm: float | None = None, translate=(0.0, 0.0), name: str = "image",
               workers: int = 1, pyramid: bool = True, meta: dict | None = None, lead_axes=None):
    """Compute ``kernel`` over the lazy 2-D input ``x`` (or a stack, frames × rows × cols) into the OME-Zarr store ``path`` (a generator of
    progress records; returns the path, or ``None`` when cancelled — the store is then resumable).

    ``pixel_size_nm`` is the *input's* pixel size: the store's level 0 records it divided by ``scale``.
    ``translate`` (nm, or px without a pixel size) is the output's origin. ``workers``: blocks at a time on
    the local threaded scheduler (each sets torch to ``cores / workers`` threads); ``scheduler``: a
    ``dask.distributed`` client or address (see :func:`get_client`).

    A stack (3-D ``x``, see :func:`lazy_map`): ``chunk`` is frames per block (or ``(frames, side)`` to
    tile the frames too); level 0 is stored with one frame per Zarr chunk and no pyramid (frames are
    shown one at a time); ``lead_axes`` is the NGFF axis of the frames, ``{"name", "type", "unit",
    "scale", "translation"}`` (default ``{"name": "t", "type": "time"}``, step 1)."""
    import dask

    from . import ngff

    path = Path(path)
    grid = plan_grid(x, kernel, chunk)  # blocks run through block_task, each reading its own window
    for note in grid.notes:
        yield record(Kind.WARNING, message=f"note: {note}")
    s = int(kernel.scale)
    lead = tuple(int(v) for v in x.shape[:-2])
    out_shape = lead + (int(x.shape[-2]) * s, int(x.shape[-1]) * s)
    fp = _fingerprint(kernel, x.shape, grid, kernel.dtype)
    block_out = int(grid.side) * s  # blocks start at multiples of this (output px)
    zchunk = ngff.chunk_side(block_out)
    shapes = ngff.block_levels(out_shape, block_out) if (pyramid and not lead) else [out_shape]
    fp["levels"] = len(shapes)
    root, resumed = ngff.open_output(path, out_shape, kernel.dtype, (1,) * len(lead) + (zchunk, zchunk), fp,
                                     overwrite=overwrite, describe={**kernel.describe(), **(meta or {})})
    ngff.create_levels(root, shapes, kernel.dtype, block_out)
    yield record(Kind.PHASE, phase="store", store=str(path), levels=len(shapes), output_shape=out_shape,
                 message=f"writing {path.name} ({'×'.join(map(str, out_shape))} px, {len(shapes)} level(s))")
    (path / MARKERS).mkdir(exist_ok=True)
    every = grid.blocks()
    todo = [b for b in every if not _marker(path, *b).is_file()]
    total = len(every)
    done0 = total - len(todo)
    size = "×".join(str(c[0]) for c in grid.chunks) + (" (frames × px)" if lead else " px")
    yield record(Kind.SETUP, phase="blocks", step=done0, total=total, output_shape=out_shape, chunks=grid.chunks,
                 store=str(path), resumed=resumed,
                 message=(f"resuming {path.name}: {done0}/{total} blocks already written" if done0 else
                          f"{total} block(s) of {size} → {path.name}"))
    tasks = {}
    for b in todo:
        reg = grid.region(*b)
        nl = 2 * len(lead)
        reg_out = tuple(reg[:nl]) + tuple(v * s for v in reg[nl:])
        tasks[b] = dask.delayed(_write_block, pure=False)(  # each block reads only its own window of x
            block_task(x, kernel, grid, b), str(path), reg_out, str(_marker(path, *b)), len(shapes))
    t0 = time.perf_counter()
    done = done0
    client = get_client(scheduler)
    try:
        if todo:
            stopped = yield from _execute(tasks, client, workers, cancel, done0, total, t0)
            if stopped is None:
                return None
            done = stopped
        missing = [b for b in every if not _marker(path, *b).is_file()]
        if missing:
            raise InputError(f"{len(missing)} block(s) of {path} were not recorded as written; run again to resume.")
        yield record(Kind.PHASE, phase="pyramid", step=done, total=total, message="building the pyramid from the stored level 0…")
        # the blocks filled the levels they could; coarser ones (if any) from the stored coarsest
        levels = ngff.build_pyramid(root, cancel=cancel, start=len(shapes) - 1) if (pyramid and not lead) else 1
        if levels is None:
            yield record(Kind.STOPPED, step=done, total=total, message="stopped while building the pyramid (rerun to finish)")
            return None
        px_out = None if pixel_size_nm is None else float(pixel_size_nm) / s
        if lead:
            la = list(lead_axes or [{"name": "t", "type": "time"}] * len(lead))
            ngff.write_metadata(root, levels, px_out, translate, name=name, lead_axes=la)
        else:
            ngff.write_metadata(root, levels, px_out, translate, name=name)
        ngff.mark_complete(root)
    finally:
        if client is not None and getattr(client, "_matrestore_owned", False):
            cluster = client.cluster
            client.close()
            cluster.close()
    el = time.perf_counter() - t0
    yield record(Kind.DONE, step=total, total=total, elapsed_s=el,
                 message=f"{total} block(s), {'×'.join(map(str, out_shape))} px written in {format_duration(el)}")
    return path


def _progress(done, total, done0, t0, message=None):
    el = time.perf_counter() - t0
    text = message or f"block {done}/{total} · {format_duration(el)}"
    if message is None and done0 < done < total:  # the rate of this run (resumed blocks cost nothing)
        text += f" · about {format_duration(el / (done - done0) * (total - done))} left"
    return record(Kind.STEP, phase="blocks", step=done, total=total, fraction=done / total, elapsed_s=el, message=text)


def _threads_for(workers: int) -> int:
    cores = os.cpu_count() or 1
    return max(1, cores // max(1, workers))


def _execute(tasks: dict, client, workers: int, cancel, done0: int, total: int, t0: float):
    """Run the block tasks, yielding a record as each completes. Returns blocks done, or None if cancelled."""
    import dask

    done = done0
    if client is None:
        import concurrent.futures as cf

        import torch

        workers = max(1, int(workers))
        prev = torch.get_num_threads()
        if workers > 1:  # one block runs with the caller's threads (so results equal an in-memory run's)
            torch.set_num_threads(_threads_for(workers))
        pool = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="matrestore-block")
        try:
            pending = list(tasks.values())
            running: set = set()
            while pending or running:
                while pending and len(running) < workers and not is_cancelled(cancel):
                    task = pending.pop(0)
                    running.add(pool.submit(dask.compute, task, scheduler="sync"))
                if not running:
                    break
                finished, running = cf.wait(running, timeout=0.5, return_when=cf.FIRST_COMPLETED)
                for fut in finished:
                    fut.result()  # re-raises (disk full, ...)
                    done += 1
                    yield _progress(done, total, done0, t0)
                if is_cancelled(cancel) and not running:
                    break
                if not finished:
                    yield _progress(done, total, done0, t0)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            torch.set_num_threads(prev)
        if is_cancelled(cancel) and done < total:
            yield record(Kind.STOPPED, step=done, total=total, message=f"stopped after {done}/{total} blocks "
                         "(run again to resume)", status="stopped")
            return None
        return done
    from distributed import as_completed

    futures = client.compute(list(tasks.values()))
    try:
        seq = as_completed(futures)
        for fut in seq:
            fut.result()
            done += 1
            yield _progress(done, total, done0, t0)
            if is_cancelled(cancel):
                client.cancel(futures)
                yield record(Kind.STOPPED, step=done, total=total, message=f"stopped after {done}/{total} blocks "
                             "(run again to resume)", status="stopped")
                return None
    except BaseException:
        client.cancel(futures)
        raise
    return done


def store(x, kernel, path, progress=None, **kw):
    """:func:`store_iter` run to the end (``progress`` gets each record)."""
    from .progress import drive

    return drive(store_iter(x, kernel, path, **kw), progress)


def estimated_bytes(shape, scale: int, dtype) -> int:
    """Bytes of an output of ``shape × scale`` (a guide for the in-memory / store choice)."""
    return int(shape[-2]) * int(shape[-1]) * int(scale) ** 2 * np.dtype(dtype).itemsize


class SmoothUpKernel:
    """A cheap reference kernel: a 3 × 3 mean (per-pixel sums, so every block reproduces the whole
    image's pixels exactly) followed by ``scale ×`` pixel replication. Used to test the engine and to
    measure its own cost (memory, I/O, scheduling) apart from a network's."""

    def __init__(self, scale: int = 2, grid: int = 8, halo: int = 1, dtype=np.float32):
        self.scale, self.grid, self.halo, self.dtype = int(scale), int(grid), max(1, int(halo)), np.dtype(dtype)
        self.token = f"smoothup-{self.scale}-{self.grid}-{self.halo}-{self.dtype}"
        self.calls = 0

    def describe(self) -> dict:
        return {"task": "smoothup", "scale": self.scale}

    def run(self, window, origin, region):
        self.calls += 1
        y0, y1, x0, x1 = region
        w = np.pad(np.asarray(window, np.float32), 1, mode="edge")
        acc = np.zeros(window.shape, np.float32)
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                acc += w[dy : dy + window.shape[0], dx : dx + window.shape[1]]
        acc /= 9.0
        oy, ox = origin
        inner = acc[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
        return np.repeat(np.repeat(inner, self.scale, 0), self.scale, 1).astype(self.dtype)

    def whole(self, image) -> np.ndarray:
        """The same computation on a whole in-memory image (the reference for tests)."""
        H, W = image.shape
        return self.run(np.asarray(image), (0, 0), (0, H, 0, W))
