"""Inference: a denoised micrograph of any size, through :mod:`matrestore.tiling`.

The image is mapped to [0, 1] by its own 0.5/99.5 percentiles (whole image, never per tile), padded
(reflection, at the bottom and right) to a multiple of the model's ``shuffle`` grid, cut into the tiles
of a *grid plan* (:func:`tile_plan`: kept parts of ``tile − 2·halo`` px on a grid anchored at the image
origin, windows their kept part plus the halo, clipped to the image) whose halo is at least the
network's receptive radius (so the tiled result equals the whole-image pass), run in batches of
equal-shape tiles on the chosen device, stitched, mapped back to the input's grey scale and — by
default, paper section III b — histogram-matched to the input. The result is float32 with the input's
(2-D) shape. The plan is a property of the image's shape alone, so an image computed block by block
(:mod:`matrestore.denoise.lazy`, out of core) runs the very same windows and gives the same pixels.

Colour: RGB(A) input becomes grey (Rec. 601 luminance; equal channels: one of them; alpha ignored) and
a ``"warning"`` record says so; ``colour="error"`` refuses it instead.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch

from .._validate import InputError
from ..device import is_oom, pick_device, describe
from ..nets.hooks import ForwardMonitor
from ..params import param
from ..progress import Cancelled, Kind, drive, eta_text, is_cancelled, record, run_blocking
from ..tiling import Stitcher, plan_grid_tiles, same_shape_batch
from .model import DenoiseNet, as_channels_last, fuse_for_inference, receptive_radius
from .modelio import norm_stats, normalise, resolve_model
from .synth import as_grey, match_histogram

__all__ = ["denoise", "denoise_iter", "prepare_input", "MIN_SIDE", "default_halo", "DenoiseOptions", "COLOUR_CHOICES",
           "grid_kept", "tile_plan", "run_tiles"]

MIN_SIDE = 16  # px; smaller images are refused
GLOBAL_HALO = 64  # halo for models with a global squeeze (their tiling is approximate)
HEARTBEAT_S = 0.5  # s between progress records inside one long batch of tiles
COLOUR_CHOICES = {"convert to grey (luminance)": "luminance", "refuse colour images": "error"}


@dataclass
class DenoiseOptions:
    """The options of a network denoising run (the CLI's ``apply`` arguments and the Denoise widget's
    controls are made from these fields); :meth:`kwargs` gives them as :func:`denoise_iter` takes them."""

    tile: int | None = param(
        1024, label="tile size", min=0, max=16384, step=128, suffix=" px", special="whole image",
        tip="Tile side in px, including the halo that is discarded. Smaller tiles need less memory; the\n"
            "result is the same (the halo covers the network's receptive field).\nwhole image: one piece.")
    halo: int | None = param(
        None, label="halo", min=-1, max=1024, suffix=" px", special="auto",
        tip="Overlap kept around every tile and then discarded.\nauto: the network's receptive radius, so the "
            "tiled result equals a whole-image pass.")
    batch: int = param(1, label="batch size", min=1, max=256,
                       tip="Tiles computed together (more: faster on a GPU, more memory). An out-of-memory "
                           "error halves it automatically.")
    histogram: bool = param(True, label="match histogram to the input",
                            tip="Give the result the grey-level distribution of the input (paper, section III b), "
                                "so it looks like the micrograph it came from. Off: the network's own grey levels, "
                                "mapped back to the input's range.")
    colour: str = param("luminance", label="colour images", choices=COLOUR_CHOICES,
                        tip="RGB(A) micrographs: converted to grey (Rec. 601 luminance 0.299 R + 0.587 G + 0.114 B; "
                            "equal channels: one of them; alpha ignored), or refused.")

    def check(self) -> "DenoiseOptions":
        """InputError naming an option the engine cannot use (the one validation, for the widget and CLI)."""
        for name, v, lo in (("tile", self.tile, 1), ("halo", self.halo, 0), ("batch", self.batch, 1)):
            if v is None and name != "batch":
                continue
            if isinstance(v, bool) or v is None or int(v) != v or v < lo:
                raise InputError(f"{name} must be a whole number >= {lo}" + ("" if name == "batch" else
                                 " (or None for the default)") + f", got {v!r}.")
        if self.tile is not None and self.tile < MIN_SIDE:
            raise InputError(f"tile must be at least {MIN_SIDE} px (or None for the whole image), got {self.tile}.")
        if self.colour not in COLOUR_CHOICES.values():
            raise InputError(f"colour must be 'luminance' or 'error', got {self.colour!r}.")
        if not isinstance(self.histogram, bool):
            raise InputError(f"histogram must be True or False, got {self.histogram!r}.")
        return self

    def kwargs(self) -> dict:
        """The options as keyword arguments of :func:`denoise_iter` / :func:`denoise`."""
        return asdict(self)


def prepare_input(image, colour: str = "luminance", name: str = "image") -> tuple[np.ndarray, str | None]:
    """``(grey float64 copy, colour note)`` after every check (shape, dtype, finite, not constant, size)."""
    grey, note = as_grey(image, name, colour)
    if min(grey.shape) < MIN_SIDE:
        raise InputError(f"{name} of shape {grey.shape} is too small for the network (at least {MIN_SIDE} px a side).")
    if float(np.ptp(grey)) == 0.0:
        raise InputError(f"{name} is constant (every pixel {grey.flat[0]:g}); there is nothing to denoise.")
    return grey, note


def default_halo(model: DenoiseNet) -> int:
    r = receptive_radius(model.cfg)
    s = model.cfg.shuffle
    h = GLOBAL_HALO if r < 0 else r
    return int(-(-h // s) * s)


def _round_up(v, s):
    return int(-(-int(v) // s) * s)


@torch.inference_mode()
def _run(model, x, device, amp=False):
    t = as_channels_last(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[:, None].to(device))
    return np.ascontiguousarray(model(t).float().cpu().numpy()[:, 0])


def grid_kept(padded_shape, tile: int | None, margin: int, shuffle: int) -> int:
    """The kept side of the grid plan's tiles for a (padded) image of ``padded_shape``: ``tile − 2·margin``
    (``tile`` rounded up to a multiple of ``shuffle`` and to at least ``2·margin + shuffle``); the whole
    image as one tile when it fits in one ``tile`` (or ``tile`` is ``None``/0). A multiple of ``shuffle``."""
    n = max(int(padded_shape[0]), int(padded_shape[1]))
    s = int(shuffle)
    if tile is None or tile <= 0:
        return _round_up(n, s)
    tile = _round_up(max(int(tile), 2 * int(margin) + s), s)
    if n <= tile:
        return tile
    return tile - 2 * int(margin)


def overlap_note(kept: int, margin: int) -> str:
    """The warning for tiles whose kept part is smaller than their halo on both sides together."""
    side = kept + 2 * margin
    return (f"tiles of {side} px with a {margin} px halo keep only {kept} px a side ({100 * kept**2 / side**2:.0f} % "
            f"of each tile's work): a tile of {_round_up(6 * margin, 64)} px or more is several times faster, if "
            "memory allows")


def tile_plan(padded_shape, kept: int, margin: int, region=None):
    """The grid plan's tiles (:func:`matrestore.tiling.plan_grid_tiles`) of the padded image, all of them
    or those whose kept parts cover ``region``."""
    return plan_grid_tiles(padded_shape, int(kept), int(margin), region)


def run_tiles(net, x: np.ndarray, tiles, batch: int, device, out: np.ndarray, origin=(0, 0)) -> None:
    """The network on ``tiles`` (image coordinates) of the normalised (padded) window ``x`` whose pixel
    (0, 0) is image pixel ``origin``, into ``out`` (the kept region of the tiles, whose (0, 0) is the
    first tile's kept corner). Batches of equal-shape tiles, as :func:`denoise_iter` runs them; no
    progress, no out-of-memory recovery (the block engine's inner loop)."""
    oy, ox = origin
    ky0, kx0 = tiles[0].ky0, tiles[0].kx0
    queue = list(tiles)
    while queue:
        group = same_shape_batch(queue, max(1, int(batch)))
        res = _run(net, np.stack([x[t.y0 - oy : t.y1 - oy, t.x0 - ox : t.x1 - ox] for t in group]), device)
        for t, r in zip(group, res):
            out[t.ky0 - ky0 : t.ky1 - ky0, t.kx0 - kx0 : t.kx1 - kx0] = r[t.kept_in_tile()]
        queue = queue[len(group):]


def _run_monitored(net, xb, dev, cancel, done, total, t0):
    """:func:`_run` in a helper thread inside a :class:`ForwardMonitor` (a generator): ``"step"`` records
    with the fraction of this batch done every :data:`HEARTBEAT_S`; raises Cancelled within one layer."""
    with ForwardMonitor(net, cancel) as monitor:
        monitor.begin_pass()

        def heartbeat():
            frac = done + len(xb) * monitor.fraction()
            el = time.perf_counter() - t0
            return record(Kind.STEP, step=done, total=total, fraction=frac / total, elapsed_s=el,
                          message=eta_text(done, total, el, "tile") or f"tile {done}/{total}")

        out = yield from run_blocking(lambda: _run(net, xb, dev), heartbeat, poll_s=HEARTBEAT_S)
        monitor.end_pass()
    return out


def denoise_iter(image, model="default", *, tile: int | None = 1024, halo: int | None = None, batch: int = 1,
                 device=None, histogram: bool = True, colour: str = "luminance", cancel=None):
    """:func:`denoise` as a generator of progress records (``"step"`` per batch of tiles, and every half
    second inside a long batch, with ``fraction``); returns the float32 result, or ``None`` after a
    ``"stopped"`` record. ``cancel`` is checked between batches and inside the network, between its
    layers (:class:`~matrestore.nets.hooks.ForwardMonitor`). The options are those of
    :class:`DenoiseOptions` (``**DenoiseOptions(...).check().kwargs()``)."""
    t0 = time.perf_counter()
    net = resolve_model(model)
    grey, note = prepare_input(image, colour)
    if note:
        yield record(Kind.WARNING, message=note)
    dev = pick_device(device)
    net = fuse_for_inference(net).to(dev)  # batch norms folded into the convolutions: same function, faster
    s = int(net.cfg.shuffle)
    H, W = grey.shape
    stats = norm_stats(grey)
    x = normalise(grey, stats)
    ph, pw = _round_up(H, s) - H, _round_up(W, s) - W
    if ph or pw:
        x = np.pad(x, ((0, ph), (0, pw)), mode="reflect")
    n0, n1 = x.shape
    margin = default_halo(net) if halo is None else _round_up(max(0, int(halo)), s)
    exact = receptive_radius(net.cfg) >= 0 and margin >= receptive_radius(net.cfg)
    kept = grid_kept((n0, n1), tile, margin, s)
    tiles = tile_plan((n0, n1), kept, margin)
    th, tw = max(t.shape[0] for t in tiles), max(t.shape[1] for t in tiles)
    if len(tiles) > 1 and not exact:
        yield record(Kind.WARNING, message=(
            "this model's attention pools over the whole image (global squeeze): tiled results differ slightly "
            "from a whole-image pass; pass tile=None to process the image in one piece"
            if receptive_radius(net.cfg) < 0 else f"halo {margin} px is below the receptive radius "
            f"{receptive_radius(net.cfg)} px: tiles will differ from a whole-image pass"))
    if len(tiles) > 1 and kept < 2 * margin:  # most of each tile is overlap: slow for nothing
        yield record(Kind.WARNING, message=overlap_note(kept, margin))
    yield record(Kind.SETUP, message=f"{len(tiles)} tile(s) of up to {th}×{tw} px, halo {margin} px, on {describe(dev)}",
                 total=len(tiles), step=0)
    st = Stitcher((n0, n1))
    done = 0
    bsize = max(1, int(batch))
    queue = list(tiles)
    while queue:
        group = same_shape_batch(queue, bsize)
        queue = queue[len(group):]
        if is_cancelled(cancel):
            yield record(Kind.STOPPED, message="stopped", step=done, total=len(tiles))
            return None
        try:
            out = yield from _run_monitored(net, np.stack([x[t.window] for t in group]), dev, cancel, done,
                                            len(tiles), t0)
        except Cancelled:
            yield record(Kind.STOPPED, message="stopped", step=done, total=len(tiles))
            return None
        except Exception as exc:  # noqa: BLE001
            if is_oom(exc) and bsize > 1:
                from ..device import free_memory

                free_memory(dev)
                bsize = max(1, bsize // 2)
                queue = group + queue
                yield record(Kind.WARNING, message=f"out of memory: batch lowered to {bsize}")
                continue
            raise
        for t, o in zip(group, out):
            st.add(t, o)
        done += len(group)
        el = time.perf_counter() - t0
        yield record(Kind.STEP, step=done, total=len(tiles), fraction=done / len(tiles), elapsed_s=el,
                     message=eta_text(done, len(tiles), el, "tile"))
    y = st.out[:H, :W].astype(np.float64) * (stats[1] - stats[0]) + stats[0]
    if histogram:
        y = match_histogram(y, grey)
    result = y.astype(np.float32)
    yield record(Kind.DONE, message="done", step=len(tiles), total=len(tiles), elapsed_s=time.perf_counter() - t0)
    return result


def denoise(image, model="default", *, tile: int | None = 1024, halo: int | None = None, batch: int = 1, device=None,
            histogram: bool = True, colour: str = "luminance", progress: Callable | None = None, cancel=None):
    """Denoise an optical micrograph with the attention residual network.

    Parameters
    ----------
    image : array (H, W) or (H, W, 3|4)
        Integer or float pixels; never modified. Colour: see the module docstring.
    model : "default", path or DenoiseNet
        The shipped model, a model file or a model object.
    tile, halo, batch : int
        Tile side (px; ``None``: the whole image at once), halo (default: the receptive radius, so tiling
        is exact) and tiles per batch.
    device : str or torch.device
        ``None``/``"auto"``: CUDA, then MPS, then the CPU.
    histogram : bool
        Match the result's histogram to the input's (paper, section III b); on by default.
    progress : callable
        Receives every progress record.

    Returns
    -------
    numpy.ndarray
        float32, shape ``(H, W)``, in the input's grey scale (``None`` if cancelled).
    """
    def show(rec):
        if rec["kind"] == Kind.WARNING and progress is None:
            warnings.warn(rec["message"], stacklevel=3)
        if progress is not None:
            progress(rec)

    return drive(denoise_iter(image, model, tile=tile, halo=halo, batch=batch, device=device, histogram=histogram,
                              colour=colour, cancel=cancel), show)
