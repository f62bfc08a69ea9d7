"""The standard routine users know: rolling median over the stack, then LoG spot segmentation.

1. **Rolling median.** For frame k the median over a window of ``window`` projections centred on k
   (k − N//2 … k + N//2, k included) is subtracted. The window is *circular* (it wraps from the last
   frame to the first) when the stack covers a full turn (equally spaced ω summing to 360°), or when
   ``circular=True``; otherwise it is shifted at the ends so that it always holds N frames.
2. **Beam stop excluded.** Pixels of the beam-stop region are never spots (``beamstop``: a box, a
   boolean mask, ``"auto"`` to find the shadow in the stack's median, or ``None``).
3. **LoG segmentation** with four parameters: ``background`` (subtracted, negatives set to 0), ``sigma``
   of the Gaussian, ``percent`` of each connected component's maximum, and ``min_size`` (pixels):
   ``L = -∇²(G_σ * max(I - background, 0))``; the connected components of ``L > 0`` are thresholded one by
   one at ``percent`` % of the component's maximum of L, and components smaller than ``min_size`` dropped.

The paper gives no numbers for the four parameters (it cites Fang et al. 2021); the defaults below are
this package's: ``background=0`` counts, ``sigma=1`` px, ``percent=50`` %, ``min_size=3`` px, with the
grid of :func:`tune_routine` as the ranges (background 0–6 noise standard deviations, σ 0.5–2 px,
percent 10–70 %, min size 1–8 px).
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage as ndi

from .._validate import InputError
from ..params import param
from ..progress import Kind, drive, is_cancelled, record
from .stack import FrameStack, as_stack

__all__ = ["ROUTINE_DEFAULTS", "RoutineOptions", "routine_preview", "rolling_median_iter", "log_segment", "standard_routine", "standard_routine_iter",
           "tune_routine", "find_beamstop", "beamstop_mask", "stack_beamstop", "window_indices", "noise_sigma", "TUNE_GRID"]

ROUTINE_DEFAULTS = {"window": 11, "background": 0.0, "sigma": 1.0, "percent": 50.0, "min_size": 3}

#: the tuning grid: background in units of the median-subtracted frame's robust noise σ
TUNE_GRID = {"background": (0.0, 1.0, 2.0, 3.0, 4.0, 6.0), "sigma": (0.5, 0.75, 1.0, 1.5, 2.0),
             "percent": (10.0, 30.0, 50.0, 70.0), "min_size": (1, 2, 3, 5, 8)}


@dataclass
class RoutineOptions:
    """The standard routine's parameters (one place for defaults, ranges, labels; the CLI and the widget
    build this): the rolling-median window, the beam stop and the four LoG parameters."""

    window: int = param(11, label="median window", tip="Rolling median over this many projections (centred on each "
                        "frame; circular for a full turn) is subtracted from each frame. The paper's default: 11.",
                        min=1, max=181, step=2, suffix=" frames")
    beamstop: str | None = param("auto", label="beam stop", tip="Pixels of the beam-stop shadow are never spots. auto: "
                                 "find the dark region near the detector centre in the stack's median; none: a "
                                 "detector without a beam stop.", choices={"auto (find the shadow)": "auto", "none": None})
    background: float = param(0.0, label="background", tip="LoG parameter 1: subtracted from the median-corrected frame "
                              "before the LoG (negatives set to 0); in counts, or in noise σ with 'background in σ'.",
                              min=0.0, max=1e6, step=0.5, decimals=2)
    background_in_sigma: bool = param(False, label="background in σ", tip="Read 'background' in units of each "
                                      "median-corrected frame's robust noise σ (what the tuning helper finds; carries "
                                      "over between intensity scales).")
    sigma: float = param(1.0, label="LoG σ", tip="LoG parameter 2: σ of the Gaussian in px (spot size; 0.5–2 px).",
                         min=0.3, max=10.0, step=0.25, decimals=2, suffix=" px")
    percent: float = param(50.0, label="percent of max", tip="LoG parameter 3: each connected component of the LoG "
                           "response keeps the pixels above this percent of its own maximum (10–70 %).",
                           min=0.0, max=99.0, step=5.0, decimals=1, suffix=" %")
    min_size: int = param(3, label="minimum spot size", tip="LoG parameter 4: spots smaller than this many pixels "
                          "are dropped (1–8 px).", min=1, max=10000, suffix=" px")

    def check(self) -> "RoutineOptions":
        """InputError naming a bad option; returns self."""
        if int(self.window) < 1:
            raise InputError(f"the rolling-median window must be >= 1 frame, got {self.window}.")
        if not self.sigma > 0:
            raise InputError(f"LoG σ must be positive, got {self.sigma}.")
        if not 0 <= self.percent < 100:
            raise InputError(f"percent must be in [0, 100), got {self.percent}.")
        if self.background < 0:
            raise InputError(f"background must be >= 0, got {self.background}.")
        if int(self.min_size) < 1:
            raise InputError(f"minimum spot size must be >= 1 px, got {self.min_size}.")
        if self.beamstop is not None and isinstance(self.beamstop, str) and self.beamstop != "auto":
            raise InputError(f"beam stop must be 'auto', None, a box or a mask; got {self.beamstop!r}.")
        return self

    def kwargs(self) -> dict:
        """Keyword arguments of :func:`standard_routine` / :func:`standard_routine_iter`."""
        d = asdict(self)
        d["window"], d["min_size"] = int(d["window"]), int(d["min_size"])
        return d


def window_indices(k: int, n: int, window: int, circular: bool) -> list[int]:
    """Frame indices of the rolling window around frame ``k`` of ``n``."""
    h = window // 2
    if circular:
        return [(k + j) % n for j in range(-h, window - h)]
    lo = min(max(0, k - h), max(0, n - window))
    return list(range(lo, min(n, lo + window)))


def rolling_median_iter(stack: FrameStack, window: int, circular: bool):
    """Yields ``(k, frame_k, median_k)`` for every frame, holding at most ``window`` + 1 frames."""
    n = len(stack)
    window = int(window)
    cache: OrderedDict = OrderedDict()
    for k in range(n):
        idx = window_indices(k, n, window, circular)
        for j in list(cache):
            if j not in idx:
                del cache[j]
        for j in idx:
            if j not in cache:
                cache[j] = stack[j]
        med = np.median(np.stack([cache[j] for j in idx]), axis=0).astype(np.float32)
        yield k, cache[k] if k in cache else stack[k], med


def find_beamstop(median_frame: np.ndarray, frac: float = 0.5) -> np.ndarray | None:
    """The beam-stop shadow: the dark connected region (below ``frac`` × the frame's median, after a
    9-px median filter) nearest the detector centre, holes filled, grown by 3 px; ``None`` if there is none
    (no dark region, or one that touches no central third of the detector)."""
    m = ndi.median_filter(np.asarray(median_frame, np.float32), 9)
    ref = np.median(m[m > 0]) if np.any(m > 0) else 0.0
    if ref <= 0:
        return None
    dark = m < frac * ref
    lab, n = ndi.label(dark)
    if n == 0:
        return None
    h, w = m.shape
    com = ndi.center_of_mass(dark, lab, range(1, n + 1))
    sizes = ndi.sum(dark, lab, range(1, n + 1))
    best, bd = None, None
    for i, (c, s) in enumerate(zip(com, sizes)):
        if s < 16:
            continue
        dist = np.hypot((c[0] - h / 2) / h, (c[1] - w / 2) / w)
        if dist < 1 / 6 and (bd is None or dist < bd):
            best, bd = i + 1, dist
    if best is None:
        return None
    mask = ndi.binary_fill_holes(lab == best)
    return ndi.binary_dilation(mask, iterations=3)


def beamstop_mask(beamstop, shape, median_frame=None, required: bool = False) -> np.ndarray | None:
    """A boolean mask from a box ``(row0, row1, col0, col1)``, a mask, ``"auto"`` or ``None``."""
    if beamstop is None or beamstop is False:
        return None
    if isinstance(beamstop, str):
        if beamstop != "auto":
            raise InputError(f"beamstop must be a box (row0, row1, col0, col1), a mask, 'auto' or None; got {beamstop!r}.")
        if median_frame is None:
            return None
        m = find_beamstop(median_frame)
        if m is None and required:
            raise InputError("no beam-stop shadow found in the stack (no dark region near the centre); pass "
                             "beamstop=None for a detector without a beam stop, or give its box (row0, row1, col0, col1).")
        return m
    arr = np.asarray(beamstop)
    if arr.dtype == bool:
        if arr.shape != tuple(shape):
            raise InputError(f"beam-stop mask has shape {arr.shape}, the frames {tuple(shape)}.")
        if not arr.any():
            raise InputError("the beam-stop mask is empty; pass beamstop=None for no beam stop.")
        return arr
    if arr.size != 4:
        raise InputError(f"beam-stop box must be (row0, row1, col0, col1), got {beamstop!r}.")
    r0, r1, c0, c1 = (int(v) for v in arr.ravel())
    h, w = shape
    if not (0 <= r0 < r1 <= h and 0 <= c0 < c1 <= w):
        raise InputError(f"beam-stop box {(r0, r1, c0, c1)} (row0, row1, col0, col1) lies outside the {h}x{w} frames.")
    m = np.zeros(shape, bool)
    m[r0:r1, c0:c1] = True
    return m


def noise_sigma(image: np.ndarray, exclude=None) -> float:
    """Robust noise σ of an image: 1.4826 × MAD of its pixel-to-pixel differences / √2."""
    d = np.diff(np.asarray(image, np.float32), axis=1)
    if exclude is not None:
        d = d[~(exclude[:, 1:] | exclude[:, :-1])]
    d = d.ravel()
    if d.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0))


def log_response(image: np.ndarray, background: float, sigma: float) -> np.ndarray:
    im = np.clip(np.asarray(image, np.float32) - float(background), 0.0, None)
    return -ndi.gaussian_laplace(im, float(sigma)).astype(np.float32)


def _threshold_components(L: np.ndarray, percent: float, min_size: int, exclude=None) -> np.ndarray:
    pos = L > 0
    if exclude is not None:
        pos &= ~exclude
    lab, n = ndi.label(pos, np.ones((3, 3), bool))
    if n == 0:
        return pos
    mx = ndi.maximum(L, lab, np.arange(1, n + 1)).astype(np.float32)
    thr = np.concatenate([[np.inf], mx * (float(percent) / 100.0)])
    keep = pos & (L >= thr[lab])
    if min_size > 1:
        lab2, n2 = ndi.label(keep, np.ones((3, 3), bool))
        if n2:
            sizes = np.bincount(lab2.ravel())
            ok = sizes >= int(min_size)
            ok[0] = False
            keep = ok[lab2]
    return keep


def log_segment(image, background: float = 0.0, sigma: float = 1.0, percent: float = 50.0, min_size: int = 3,
                exclude=None) -> np.ndarray:
    """LoG segmentation of one (background-corrected) frame -> boolean spot mask (module docstring)."""
    if not sigma > 0:
        raise InputError(f"sigma must be positive, got {sigma}.")
    if not 0 <= percent < 100:
        raise InputError(f"percent must be in [0, 100), got {percent}.")
    return _threshold_components(log_response(image, background, sigma), percent, min_size, exclude)


def _prepare(stack, window, circular, beamstop, name="stack"):
    window = int(window)
    if window < 1:
        raise InputError(f"the rolling-median window must be >= 1 frame, got {window}.")
    if isinstance(stack, np.ndarray) and stack.ndim == 2:
        raise InputError(f"{name}: a single 2-D frame, but the standard routine needs a stack: its rolling median "
                         f"compares each frame with the {window - 1} projections around it.")
    st = as_stack(stack, name=name)
    if len(st) < window:
        raise InputError(f"{name}: {len(st)} frame(s), fewer than the rolling-median window of {window}; "
                         "use a smaller window (e.g. window=5) or more frames.")
    circ = st.full_turn if circular is None else bool(circular)
    return st, circ, stack_beamstop(st, beamstop)


def stack_beamstop(stack, beamstop, required: bool = False) -> np.ndarray | None:
    """The beam-stop mask of a stack: :func:`beamstop_mask` of a box, a mask or ``None``; for ``"auto"``
    the shadow found in the median of up to 11 evenly spread frames (what the standard routine and the
    network clean's masks exclude)."""
    if beamstop is None or beamstop is False:
        return None
    st = as_stack(stack)
    med = None
    if isinstance(beamstop, str):
        idx = np.unique(np.linspace(0, len(st) - 1, min(len(st), 11)).round().astype(int))
        med = np.median(np.stack([st[i] for i in idx]), 0)
    return beamstop_mask(beamstop, st.shape, med, required)


def standard_routine_iter(stack, window: int = 11, background: float = 0.0, sigma: float = 1.0,
                          percent: float = 50.0, min_size: int = 3, beamstop="auto", circular=None,
                          background_in_sigma: bool = False, cancel=None, out=None, sink=None):
    """Generator version of :func:`standard_routine`: yields progress records, returns the masks.
    ``sink(k, corrected, mask)``, when given, receives each median-subtracted frame (float32) and its mask."""
    st, circ, bs = _prepare(stack, window, circular, beamstop)
    n = len(st)
    masks = out if out is not None else np.zeros((n,) + st.shape, bool)
    t0 = time.perf_counter()
    yield record(Kind.SETUP, message=f"{n} frames, window {window} ({'circular' if circ else 'shifted at the ends'}), "
                 f"beam stop {'none' if bs is None else f'{int(bs.sum())} px'}", total=n)
    if isinstance(beamstop, str) and bs is None:
        yield record(Kind.WARNING, message="no beam-stop shadow found in the stack (no dark region near the centre): "
                     "nothing is excluded; give the box (row0, row1, col0, col1) if there is a beam stop")
    for k, frame, med in rolling_median_iter(st, window, circ):
        if is_cancelled(cancel):
            yield record(Kind.STOPPED, message="stopped", step=k, total=n)
            return None
        corr = frame - med
        bg = background * noise_sigma(corr, bs) if background_in_sigma else background
        masks[k] = log_segment(corr, bg, sigma, percent, min_size, exclude=bs)
        if sink is not None:
            sink(k, corr, masks[k])
        yield record(Kind.STEP, step=k + 1, total=n, frame=k, elapsed_s=time.perf_counter() - t0, message=f"frame {k + 1}/{n}")
    yield record(Kind.DONE, message="done", elapsed_s=time.perf_counter() - t0)
    return masks


def standard_routine(stack, window: int = 11, background: float = 0.0, sigma: float = 1.0, percent: float = 50.0,
                     min_size: int = 3, beamstop="auto", circular=None, background_in_sigma: bool = False,
                     progress=None, cancel=None, out=None) -> np.ndarray:
    """Spot masks (N, H, W) bool by the standard routine (module docstring). ``background`` is in the
    stack's counts, or in units of each median-subtracted frame's robust noise σ with
    ``background_in_sigma=True`` (what :func:`tune_routine` uses, so tuned values carry over between
    intensity scales)."""
    return drive(standard_routine_iter(stack, window, background, sigma, percent, min_size, beamstop, circular,
                                       background_in_sigma, cancel, out), progress)


def routine_preview(stack, k: int, options: RoutineOptions | None = None, beamstop_cache: dict | None = None):
    """The standard routine on frame ``k`` alone (a live preview): ``(corrected, mask)``, the
    median-subtracted frame (float32) and its boolean spot mask, exactly as :func:`standard_routine`
    computes them for that frame. Reads only the ``window`` frames around ``k`` (and, for an automatic
    beam stop, up to 11 frames once: pass the same ``beamstop_cache`` dict to reuse it)."""
    o = (options or RoutineOptions()).check()
    if isinstance(stack, np.ndarray) and stack.ndim == 2:
        _prepare(stack, o.window, None, None)  # the "a single 2-D frame" message
    st = as_stack(stack)
    n = len(st)
    if n < o.window:
        _prepare(st, o.window, None, None)  # the "fewer frames than the window" message
    if not 0 <= int(k) < n:
        raise InputError(f"frame {k} is outside the stack of {n} frames.")
    bs = None
    if o.beamstop is not None:
        cache = beamstop_cache if beamstop_cache is not None else {}
        if "mask" not in cache:
            cache["mask"] = _prepare(st, o.window, None, o.beamstop)[2]
        bs = cache["mask"]
    idx = window_indices(int(k), n, int(o.window), st.full_turn)
    med = np.median(np.stack([st[j] for j in idx]), axis=0).astype(np.float32)
    corr = st[int(k)] - med
    bg = o.background * noise_sigma(corr, bs) if o.background_in_sigma else o.background
    return corr, log_segment(corr, bg, o.sigma, o.percent, int(o.min_size), exclude=bs)


def tune_routine(stack, truth_masks, window: int = 11, beamstop="auto", circular=None, grid=None,
                 frames=None, progress=None) -> dict:
    """Grid-search the four LoG parameters on a *tuning* stack with known spots (never the test stack).

    ``truth_masks``: (N, H, W) bool ground truth of the tuning stack; the score is the spot-level F1
    (:mod:`matrestore.labdct.metrics`) pooled over the tuning frames (``frames``: which; default all).
    ``background`` is searched in noise-σ units (``background_in_sigma=True``). Returns
    ``{"params": best parameters (for standard_routine), "score": best, "table": [(params, score), ...]}``.
    """
    grid = dict(TUNE_GRID if grid is None else grid)
    st, circ, bs = _prepare(stack, window, circular, beamstop, name="tuning stack")
    truth = np.asarray(truth_masks, bool)
    if truth.shape != (len(st),) + st.shape:
        raise InputError(f"truth masks have shape {truth.shape}, the tuning stack {(len(st),) + st.shape}.")
    use = list(range(len(st))) if frames is None else list(frames)
    corr, sig = {}, {}
    for k, frame, med in rolling_median_iter(st, window, circ):
        if k in use:
            corr[k] = frame - med
            sig[k] = noise_sigma(corr[k], bs)
    from .metrics import _EIGHT, candidates, greedy_pairs

    tlab = {k: ndi.label(truth[k], _EIGHT) for k in use}
    sizes_grid = sorted(int(m) for m in grid["min_size"])
    n_combos = len(grid["background"]) * len(grid["sigma"]) * len(grid["percent"]) * len(sizes_grid)
    table = []
    best = None
    done = 0
    eight = np.ones((3, 3), bool)
    for b, s in itertools.product(grid["background"], grid["sigma"]):
        comp = {}
        for k in use:  # LoG, its positive components and their maxima: once per (background, sigma)
            L = log_response(corr[k], b * sig[k], s)
            pos = L > 0
            if bs is not None:
                pos &= ~bs
            lab, n = ndi.label(pos, eight)
            mx = ndi.maximum(L, lab, np.arange(1, n + 1)).astype(np.float32) if n else np.zeros(0, np.float32)
            comp[k] = (L, pos, lab, mx)
        for p in grid["percent"]:
            counts = {m: [0, 0, 0] for m in sizes_grid}
            for k in use:
                L, pos, lab, mx = comp[k]
                thr = np.concatenate([[np.inf], mx * (float(p) / 100.0)])
                keep = pos & (L >= thr[lab])
                lp, npred = ndi.label(keep, _EIGHT)
                lt, ntrue = tlab[k]
                sz = np.bincount(lp.ravel(), minlength=npred + 1)
                cand = candidates(lp, npred, lt, ntrue)
                for m in sizes_grid:
                    allowed = sz >= m
                    allowed[0] = False
                    n_ok = int(allowed.sum())
                    tp = len(greedy_pairs(*cand, npred, ntrue, allowed=allowed))
                    c = counts[m]
                    c[0] += tp
                    c[1] += n_ok - tp
                    c[2] += ntrue - tp
            for m in sizes_grid:
                tp, fp, fn = counts[m]
                val = 2 * tp / max(1, 2 * tp + fp + fn)
                params = {"window": window, "background": b, "sigma": s, "percent": p, "min_size": m}
                table.append((params, float(val)))
                if best is None or val > best[1]:
                    best = (params, float(val))
                done += 1
            if progress is not None:
                progress(record(Kind.STEP, step=done, total=n_combos, message=f"tuning {done}/{n_combos}"))
    return {"params": dict(best[0], background_in_sigma=True), "score": best[1], "table": table}
