"""Inference: ``clean`` a stack with the network (tiled), ``segment`` the cleaned frames, ``spot_table``.

``clean`` normalises from the stack itself (``asinh(x / m)``, ``m`` = median of the non-zero pixels of up
to 8 evenly spread frames), so raw counts and rescaled stacks give the same output. Frames are read and
cleaned one at a time (with their two neighbours for ``neighbours=1`` models: wrapped around for a full
turn, mirrored at the ends otherwise), each through :mod:`matrestore.tiling`: the frame is padded (reflect)
to a multiple of the network's stride and cut into tiles whose size and margin are multiples of the
stride, so with a margin of at least the network's receptive radius the tiled result equals the
whole-frame result. The output is ``sigmoid(logit + calibration)`` in [0, 1]: background ≈ 0, spots
bright; :func:`segment` thresholds it at 5/255 (the paper's 5 of 255).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from scipy import ndimage as ndi

from .._validate import InputError
from ..device import is_oom, pick_device
from ..progress import Kind, drive, is_cancelled, record
from ..tiling import Stitcher, batched, plan_tiles
from .model import normalise_frames, stack_scale
from .modelio import resolve_model
from .stack import as_stack

__all__ = ["clean", "clean_iter", "clean_frame", "segment", "spot_table", "write_spot_csv", "neighbour_indices",
           "DEFAULT_THRESHOLD", "SPOT_COLUMNS"]

DEFAULT_THRESHOLD = 5.0 / 255.0
SPOT_COLUMNS = ("frame", "label", "omega", "centroid_row", "centroid_col", "area", "max_intensity", "mean_intensity")


def neighbour_indices(k: int, n: int, nb: int, circular: bool) -> list[int]:
    out = []
    for d in range(-nb, nb + 1):
        j = k + d
        if circular:
            j %= n
        else:
            if j < 0:
                j = -j
            if j >= n:
                j = 2 * (n - 1) - j
            j = min(max(j, 0), n - 1)
        out.append(j)
    return out


def _forward(model, x: np.ndarray, dev, tile: int, margin: int, batch: int, calib: float) -> np.ndarray:
    """Cleaned (H, W) of a normalised (C, H, W) input."""
    s = model.stride
    C, H, W = x.shape
    Hp, Wp = -(-H // s) * s, -(-W // s) * s
    if (Hp, Wp) != (H, W):
        mode = "reflect" if (Hp - H < H and Wp - W < W) else "edge"
        x = np.pad(x, ((0, 0), (0, Hp - H), (0, Wp - W)), mode=mode)
    tile = max(s, (int(tile) // s) * s)
    margin = (int(margin) // s) * s
    if tile - 2 * margin < s and tile < max(Hp, Wp):
        raise InputError(f"tile {tile} is too small for a margin of {margin} px on each side.")
    tiles = plan_tiles((Hp, Wp), tile, margin)
    st = Stitcher((Hp, Wp))
    for group in batched(tiles, batch):
        xb = torch.from_numpy(np.stack([x[(slice(None),) + t.window] for t in group])).to(dev)
        xb = xb.contiguous(memory_format=torch.channels_last)  # ~1.7x faster convolutions on the CPU
        with torch.inference_mode():
            y = torch.sigmoid(model(xb) + calib).float().cpu().numpy()[:, 0]
        for t, yy in zip(group, y):
            st.add(t, yy)
    return st.out[:H, :W]


def clean_iter(stack, model="default", *, tile: int = 1024, margin: int = 128, batch: int = 1, device=None,
               scale: float | None = None, sink=None, circular=None, cancel=None):
    """Generator: yields progress records (and ``Kind.STEP`` records carry ``frame`` = k); returns the
    cleaned float32 stack, or, with ``sink(k, frame)``, ``None`` after handing each frame to ``sink``
    (peak memory: a few frames)."""
    net = resolve_model(model)
    nb = int(net.cfg.neighbours)
    single = isinstance(stack, np.ndarray) and stack.ndim == 2
    if single:
        if nb:
            raise InputError("a single 2-D frame, but this model also looks at each frame's two neighbours in ω: "
                             "give the whole stack (N, H, W), or use a single-frame model (neighbours=0).")
        stack = stack[None]
    st = as_stack(stack, name="stack", min_frames=1 + 2 * nb if nb else 1)
    if nb and len(st) < 3:
        raise InputError(f"this model needs each frame's neighbours: at least 3 frames, got {len(st)}.")
    dev = pick_device(device)
    net.to(dev).eval()
    net.to(memory_format=torch.channels_last)
    calib = float((getattr(net, "meta", {}) or {}).get("calibration", 0.0) or 0.0)
    m = float(scale) if scale else stack_scale(st.sample_pixels())
    n = len(st)
    circ = st.full_turn if circular is None else bool(circular)
    out = None if sink is not None else np.zeros((n,) + st.shape, np.float32)
    t0 = time.perf_counter()
    yield record(Kind.SETUP, message=f"{n} frames of {st.shape[0]}x{st.shape[1]}; normalised by the stack median {m:.4g}",
                 total=n)
    for k in range(n):
        if is_cancelled(cancel):
            yield record(Kind.STOPPED, message="stopped", step=k, total=n)
            return None
        idx = neighbour_indices(k, n, nb, circ)
        x = normalise_frames(np.stack([st[j] for j in idx]), m)
        while True:
            try:
                y = _forward(net, x, dev, tile, margin, batch, calib)
                break
            except RuntimeError as exc:
                if not is_oom(exc) or tile <= 2 * margin + 2 * net.stride:
                    raise
                from ..device import free_memory

                free_memory(dev)
                tile = max(2 * margin + 2 * net.stride, tile // 2)
                yield record(Kind.WARNING, message=f"out of memory: retrying with tiles of {tile} px")
        if sink is not None:
            sink(k, y)
        else:
            out[k] = y
        yield record(Kind.STEP, step=k + 1, total=n, frame=k, elapsed_s=time.perf_counter() - t0,
                     message=f"frame {k + 1}/{n}")
    yield record(Kind.DONE, message="cleaned", elapsed_s=time.perf_counter() - t0)
    if out is not None and single:
        return out[0]
    return out


def clean(stack, model="default", *, tile: int = 1024, margin: int = 128, batch: int = 1, device=None,
          scale: float | None = None, circular=None, progress=None, cancel=None) -> np.ndarray:
    """The cleaned stack (float32, same shape as ``stack``; values in [0, 1], background ≈ 0)."""
    return drive(clean_iter(stack, model, tile=tile, margin=margin, batch=batch, device=device, scale=scale,
                            circular=circular, cancel=cancel), progress)


def clean_frame(frames3, model, m: float, **kw) -> np.ndarray:
    """One frame from its (C, H, W) raw neighbourhood (C = 1 or 3) and the stack scale ``m``."""
    net = resolve_model(model)
    dev = pick_device(kw.pop("device", None))
    net.to(dev).eval()
    calib = float((net.meta or {}).get("calibration", 0.0) or 0.0)
    return _forward(net, normalise_frames(frames3, m), dev, kw.get("tile", 1024), kw.get("margin", 128), kw.get("batch", 1), calib)


def segment(cleaned, threshold: float = DEFAULT_THRESHOLD, min_size: int = 1, beamstop=None) -> np.ndarray:
    """Boolean spot masks: ``cleaned >= threshold`` (5/255 by default), components smaller than ``min_size``
    dropped, nothing inside ``beamstop`` (a box or a mask)."""
    c = np.asarray(cleaned)
    if c.ndim not in (2, 3):
        raise InputError(f"expected cleaned frames (H, W) or (N, H, W), got shape {c.shape}.")
    if not np.issubdtype(c.dtype, np.number):
        raise InputError(f"cleaned frames must be numeric, got {c.dtype}.")
    if not 0 <= threshold <= 1:
        raise InputError(f"threshold must be in [0, 1] (cleaned frames are in [0, 1]), got {threshold}.")
    masks = c >= threshold
    if beamstop is not None:
        from .routine import beamstop_mask

        bs = beamstop_mask(beamstop, c.shape[-2:])
        masks &= ~bs
    if min_size > 1:
        frames = masks if masks.ndim == 3 else masks[None]
        for k in range(len(frames)):
            lab, n = ndi.label(frames[k], np.ones((3, 3)))
            if n:
                ok = np.bincount(lab.ravel()) >= min_size
                ok[0] = False
                frames[k] = ok[lab]
    return masks


def spot_table(masks, stack, omegas=None) -> list[dict]:
    """One row per spot (8-connected component of each frame's mask): frame, label, ω (``None`` when
    unknown), centroid (row, col; intensity-weighted over the spot's pixels in ``stack``), area (px),
    max and mean intensity (of ``stack``)."""
    mk = np.asarray(masks, bool)
    if mk.ndim == 2:
        mk = mk[None]
    st = as_stack(stack if not (isinstance(stack, np.ndarray) and stack.ndim == 2) else stack[None], name="stack")
    if mk.shape != (len(st),) + st.shape:
        raise InputError(f"masks have shape {mk.shape}, the stack {(len(st),) + st.shape}.")
    om = omegas if omegas is not None else st.omegas
    if om is not None and len(om) != len(st):
        raise InputError(f"{len(om)} rotation angles for {len(st)} frames.")
    rows = []
    for k in range(len(st)):
        lab, n = ndi.label(mk[k], np.ones((3, 3)))
        if n == 0:
            continue
        f = st[k]
        idx = np.arange(1, n + 1)
        wpos = np.clip(f, 0, None)
        area = ndi.sum(np.ones_like(f), lab, idx)
        wsum = ndi.sum(wpos, lab, idx)
        rr, cc = np.indices(f.shape)
        cr = ndi.sum(wpos * rr, lab, idx)
        ccol = ndi.sum(wpos * cc, lab, idx)
        mr = ndi.mean(rr, lab, idx)
        mc = ndi.mean(cc, lab, idx)
        mx = ndi.maximum(f, lab, idx)
        mean = ndi.mean(f, lab, idx)
        for i in range(n):
            ok = wsum[i] > 0
            rows.append({"frame": k, "label": i + 1, "omega": None if om is None else float(om[k]),
                         "centroid_row": float(cr[i] / wsum[i]) if ok else float(mr[i]),
                         "centroid_col": float(ccol[i] / wsum[i]) if ok else float(mc[i]),
                         "area": int(area[i]), "max_intensity": float(mx[i]), "mean_intensity": float(mean[i])})
    return rows


def write_spot_csv(rows, path) -> None:
    """The spot table as CSV (columns :data:`SPOT_COLUMNS`), written to ``path`` (a file object or path)."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(SPOT_COLUMNS))
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in SPOT_COLUMNS})
    if hasattr(path, "write"):
        path.write(buf.getvalue())
    else:
        from pathlib import Path

        Path(path).write_text(buf.getvalue())
