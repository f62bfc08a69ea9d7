"""Overlap tiling for every task: plan tiles, batch them, stitch the kept centres.

A tile is a window of the input; of its output only the *kept* part is written, which drops a margin of
``margin`` input pixels on each side where the window has neighbours (at the image border the tile's
outer margin is kept, so nothing is lost and no padding is needed). Kept parts tile the image exactly.

Two uses:

* the SEM paper's stitching: 32×32 tiles keeping the central 62.5 % per axis
  (``margin = margin_for_keep(32, 0.625) = 6``);
* fast whole-image-equivalent inference: large tiles whose margin (halo) is at least the network's
  receptive radius, so each kept pixel sees exactly what it would see in a whole-image pass.

Tiles are all the same size (``min(tile, image side)`` per axis), so they stack into batches. With a
``scale`` the output coordinates are the input coordinates times ``scale``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np

from ._validate import InputError

__all__ = ["Tile", "axis_plan", "plan_tiles", "grid_axis_plan", "plan_grid_tiles", "same_shape_batch", "margin_for_keep", "balanced_tile", "batched", "Stitcher", "seam_profile"]


@dataclass(frozen=True)
class Tile:
    """Input window ``[y0:y1, x0:x1]`` and the kept region ``[ky0:ky1, kx0:kx1]`` (input coordinates)."""

    y0: int
    y1: int
    x0: int
    x1: int
    ky0: int
    ky1: int
    kx0: int
    kx1: int

    @property
    def window(self):
        return (slice(self.y0, self.y1), slice(self.x0, self.x1))

    @property
    def shape(self):
        return (self.y1 - self.y0, self.x1 - self.x0)

    def kept_in_tile(self, scale: int = 1):
        """Slices of the kept region inside the tile's (scaled) output."""
        s = scale
        return (
            slice((self.ky0 - self.y0) * s, (self.ky1 - self.y0) * s),
            slice((self.kx0 - self.x0) * s, (self.kx1 - self.x0) * s),
        )

    def kept_in_image(self, scale: int = 1):
        s = scale
        return (slice(self.ky0 * s, self.ky1 * s), slice(self.kx0 * s, self.kx1 * s))


def margin_for_keep(tile: int, keep: float) -> int:
    """Margin per side that keeps the central fraction ``keep`` of a tile (32, 0.625 -> 6: 20 px kept)."""
    if not 0 < keep <= 1:
        raise InputError(f"kept fraction must be in (0, 1], got {keep}.")
    return int(round(tile * (1.0 - keep) / 2.0))


def balanced_tile(n: int, tile: int, margin: int) -> int:
    """The smallest tile (at most ``tile``) that covers an axis of length ``n`` with as few tiles as
    ``tile`` needs: spreads the work evenly instead of a last tile that keeps only a sliver."""
    n, tile, margin = int(n), int(tile), int(margin)
    if n <= tile:
        return n
    inner = tile - 2 * margin
    if inner < 1:
        return tile
    k = -(-(n - 2 * margin) // inner)
    return min(tile, -(-(n - 2 * margin) // k) + 2 * margin)


def axis_plan(n: int, tile: int, margin: int) -> list[tuple[int, int, int, int]]:
    """``[(start, stop, keep0, keep1), ...]`` along one axis of length ``n``.

    Windows have length ``min(tile, n)``; interior kept parts drop ``margin`` on both sides, the first
    and last tiles keep their outer border; the last window is flush with the end.
    """
    n, tile, margin = int(n), int(tile), int(margin)
    if n < 1:
        raise InputError(f"cannot tile an axis of length {n}.")
    if margin < 0 or tile < 1:
        raise InputError(f"tile must be >= 1 and margin >= 0 (got tile={tile}, margin={margin}).")
    if n <= tile:  # one window: nothing is discarded
        return [(0, n, 0, n)]
    if tile - 2 * margin < 1:
        raise InputError(f"tile {tile} leaves nothing to keep with a margin of {margin} on each side.")
    segs = []
    start, keep0 = 0, 0
    while True:
        if start + tile >= n:
            start = n - tile
            segs.append((start, n, keep0, n))
            return segs
        keep1 = start + tile - margin
        segs.append((start, start + tile, keep0, keep1))
        keep0 = keep1
        start = keep1 - margin


def plan_tiles(shape: Sequence[int], tile, margin) -> list[Tile]:
    """All tiles of a 2-D image, row-major. ``tile`` and ``margin`` are ints or (rows, cols) pairs."""
    th, tw = (tile, tile) if np.isscalar(tile) else tile
    mh, mw = (margin, margin) if np.isscalar(margin) else margin
    rows = axis_plan(shape[0], th, mh)
    cols = axis_plan(shape[1], tw, mw)
    return [Tile(r[0], r[1], c[0], c[1], r[2], r[3], c[2], c[3]) for r in rows for c in cols]


def grid_axis_plan(n: int, kept: int, margin: int, start: int = 0, stop: int | None = None) -> list[tuple[int, int, int, int]]:
    """``[(start, stop, keep0, keep1), ...]`` of the *grid* plan along an axis of length ``n``: kept parts
    ``[i·kept, (i+1)·kept)`` anchored at 0 (the last one shorter), each window its kept part plus
    ``margin`` on both sides, clipped to the axis (no padding: a whole-image pass sees no more).

    The plan is a property of the axis alone, so the tiles covering any part ``[start, stop)`` whose ends
    are multiples of ``kept`` (or ``n``) are exactly the tiles of the whole axis there: an image computed
    block by block (:mod:`matrestore.bigimage`) runs the very same windows as an image computed at once,
    which makes the two results bit-identical."""
    n, kept, margin = int(n), int(kept), int(margin)
    stop = n if stop is None else int(stop)
    if n < 1:
        raise InputError(f"cannot tile an axis of length {n}.")
    if kept < 1 or margin < 0:
        raise InputError(f"kept must be >= 1 and margin >= 0 (got kept={kept}, margin={margin}).")
    if not (0 <= start < stop <= n) or start % kept:
        raise ValueError(f"part [{start}, {stop}) of an axis of {n} does not start on the grid of {kept}")
    segs = []
    for a in range(start, stop, kept):
        b = min(a + kept, n)
        segs.append((max(0, a - margin), min(n, b + margin), a, b))
    return segs


def plan_grid_tiles(shape: Sequence[int], kept, margin, region=None) -> list[Tile]:
    """The tiles of :func:`grid_axis_plan` on a 2-D image (row-major), all of them or those whose kept
    parts cover ``region = (y0, y1, x0, x1)`` (ends on the grid). Windows at the border are smaller;
    callers batch tiles of equal shape."""
    kh, kw = (kept, kept) if np.isscalar(kept) else kept
    mh, mw = (margin, margin) if np.isscalar(margin) else margin
    y0, y1, x0, x1 = region if region is not None else (0, shape[0], 0, shape[1])
    rows = grid_axis_plan(shape[0], kh, mh, y0, y1)
    cols = grid_axis_plan(shape[1], kw, mw, x0, x1)
    return [Tile(r[0], r[1], c[0], c[1], r[2], r[3], c[2], c[3]) for r in rows for c in cols]


def same_shape_batch(queue: Sequence[Tile], n: int) -> list[Tile]:
    """The first tiles of ``queue`` (at most ``n``) that share the first one's shape: one batch (grid-plan
    tiles at the image border are smaller, and a batch is one tensor)."""
    run = [queue[0]]
    for t in queue[1:n]:
        if t.shape != run[0].shape:
            break
        run.append(t)
    return run


def batched(items: Sequence, size: int) -> Iterator[list]:
    size = max(1, int(size))
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


class Stitcher:
    """Collects tile outputs into one array of shape ``scale × input shape``."""

    def __init__(self, shape: Sequence[int], scale: int = 1, dtype=np.float32):
        self.scale = int(scale)
        self.out = np.zeros((shape[0] * self.scale, shape[1] * self.scale), dtype=dtype)
        self.filled = 0

    def add(self, tile: Tile, result: np.ndarray) -> None:
        exp = (tile.shape[0] * self.scale, tile.shape[1] * self.scale)
        if result.shape[-2:] != exp:
            raise ValueError(f"tile output has shape {result.shape}, expected {exp}")
        self.out[tile.kept_in_image(self.scale)] = result[tile.kept_in_tile(self.scale)]
        self.filled += (tile.ky1 - tile.ky0) * (tile.kx1 - tile.kx0)

    @property
    def complete(self) -> bool:
        return self.filled * self.scale**2 == self.out.size


def seam_positions(tiles: Iterable[Tile], axis: int) -> list[int]:
    """Input coordinates where two kept regions meet along ``axis`` (0: rows, 1: columns)."""
    ends = {(t.ky1 if axis == 0 else t.kx1) for t in tiles}
    starts = {(t.ky0 if axis == 0 else t.kx0) for t in tiles}
    return sorted(ends & starts)


def seam_profile(tiled: np.ndarray, whole: np.ndarray, tiles: Sequence[Tile], scale: int = 1) -> dict:
    """How visible the seams are: differences between a tiled and a whole-image result.

    Returns ``max_abs`` and ``rms`` of ``tiled - whole`` over the image, ``seam_rms`` over the output
    rows/columns next to seams (two pixels either side), and ``jump_ratio``: the mean absolute step
    between the two pixels either side of each seam in the tiled result divided by the same in the
    whole-image result (1 when seams add no edge of their own; measured at the same positions, so
    image content and periodic patterns cancel).
    """
    t = np.asarray(tiled, np.float64)
    w = np.asarray(whole, np.float64)
    d = t - w
    mask = np.zeros(d.shape, bool)
    rows = [p * scale for p in seam_positions(tiles, 0)]
    cols = [p * scale for p in seam_positions(tiles, 1)]
    for q in rows:
        mask[max(q - 2, 0) : q + 2, :] = True
    for q in cols:
        mask[:, max(q - 2, 0) : q + 2] = True

    def steps(a):
        parts = [np.abs(a[q, :] - a[q - 1, :]) for q in rows] + [np.abs(a[:, q] - a[:, q - 1]) for q in cols]
        return np.concatenate(parts) if parts else np.zeros(1)

    st, sw = steps(t).mean(), steps(w).mean()
    return {
        "max_abs": float(np.abs(d).max()),
        "rms": float(np.sqrt(np.mean(d**2))),
        "seam_rms": float(np.sqrt(np.mean(d[mask] ** 2))) if mask.any() else 0.0,
        "jump_ratio": float(st / sw) if sw > 0 else (1.0 if st == 0 else float("inf")),
    }
