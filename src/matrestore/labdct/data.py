"""Training data: simulated spot stacks on real backgrounds, sampled as random patches.

A :class:`TrainingData` holds *scenes* (noise-free simulated stacks of consecutive projections, each
with its own sample, geometry and binning) and the normalised real backgrounds ``I_BG`` of the training
frames. :meth:`TrainingData.batch` draws patches: a scene, a frame k (and k ± 1 for ``neighbours=1``), a
background frame j (and j ± 1), a position; then per patch the brightness ``b`` (98th percentile of the
spot peaks = ``b × I0``, log-uniform in ``brightness``), ``I0`` (log-uniform in ``i0``), ``τ`` (uniform in
``tau``) and, per frame, ``R_BG`` and the Poisson noise of eqs. 1–2; flips and 90° turns. Backgrounds of
unbinned scenes are the binned ones upsampled ×2 (they are smooth). The target is the LoG ground truth
of the noise-free centre frame at ``gt_level = 0.02 × I0`` counts (spots below 2 % of the background
level are not spots). Inputs are normalised as at inference: ``asinh(x / m)`` with ``m`` the median the
whole synthetic frame would have, ``(1 + τ/2) I0 median(I_BG_j)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage as ndi

from .._validate import InputError
from .background import ground_truth
from .geometry import IRON_GEOMETRY, Geometry
from .simulate import SampleConfig, make_sample, project

__all__ = ["SceneSpec", "DataConfig", "TrainingData", "default_scenes", "GT_FRAC", "make_scene"]

GT_FRAC = 0.02


@dataclass
class SceneSpec:
    material: str = "Fe"
    grain_size_mm: float = 0.12
    diameter_mm: float = 1.0
    height_mm: float = 1.0
    binning: int = 2  # 2: the iron frames' binning (1024²), 1: unbinned (2048², spots twice as large)
    lsd_over_lss: float = 1.0  # 1: Laue focusing
    frames: int = 12
    step_deg: float = 3.0
    start_deg: float = 0.0
    seed: int = 0
    size: int | None = None  # simulate only a size×size detector window (tests)


def default_scenes(n: int = 12, frames: int = 12, seed: int = 0, size=None, grain_mm=(0.06, 0.2)) -> list[SceneSpec]:
    """A varied list of scenes: Fe and Al, grain sizes log-uniform in ``grain_mm`` (60–200 µm), mostly
    binned, some unbinned, some out of focusing (Lsd = 1.3 Lss), 2° or 3° steps."""
    lo, hi = (float(v) for v in grain_mm)
    if not 0 < lo <= hi:
        raise InputError(f"grain sizes must satisfy 0 < smallest <= largest, got {lo * 1000:g}–{hi * 1000:g} µm.")
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        out.append(SceneSpec(material="Fe" if i % 3 else "Al", grain_size_mm=float(np.exp(rng.uniform(np.log(lo), np.log(hi)))),
                             diameter_mm=float(rng.uniform(0.7, 1.2)), height_mm=float(rng.uniform(0.6, 1.2)),
                             binning=1 if i % 4 == 3 else 2, lsd_over_lss=1.3 if i % 5 == 4 else 1.0,
                             frames=frames, step_deg=float(rng.choice([2.0, 3.0])), start_deg=float(rng.uniform(0, 360)),
                             seed=int(seed * 1000 + i), size=size))
    return out


def scene_geometry(spec: SceneSpec, base: Geometry = IRON_GEOMETRY) -> Geometry:
    g = base if spec.binning == 2 else base.binned(0.5)
    from dataclasses import replace

    g = replace(g, lsd=g.lss * spec.lsd_over_lss)
    if spec.size:
        s = int(spec.size)
        cz, cy = g.beam_centre
        g = replace(g, shape=(s, s), centre=(cz - (g.shape[0] - s) / 2, cy - (g.shape[1] - s) / 2), beamstop=None)
    return g


def make_scene(spec: SceneSpec, base: Geometry = IRON_GEOMETRY) -> dict:
    geo = scene_geometry(spec, base)
    smp = make_sample(SampleConfig(material=spec.material, diameter_mm=spec.diameter_mm, height_mm=spec.height_mm,
                                   grain_size_mm=spec.grain_size_mm, seed=spec.seed), geo)
    om = spec.start_deg + spec.step_deg * np.arange(spec.frames)
    frames = np.stack([project(smp, geo, w) for w in om])
    peaks = frames[(frames == ndi.maximum_filter(frames, (1, 3, 3))) & (frames > frames.max() * 1e-4)]
    f = 1.0 / max(float(np.quantile(peaks, 0.98)), 1e-12) if peaks.size else 1.0
    return {"spots": (frames * f).astype(np.float16), "binning": spec.binning, "spec": asdict(spec),
            "beamstop": geo.beamstop}


@dataclass
class DataConfig:
    i0: tuple = (50.0, 2000.0)
    brightness: tuple = (0.3, 3.0)
    tau: tuple = (0.7, 1.3)
    neighbours: int = 1
    patch: int = 128


class TrainingData:
    def __init__(self, scenes: list[dict], backgrounds: np.ndarray, cfg: DataConfig):
        if not scenes:
            raise InputError("no training scenes.")
        bg = np.asarray(backgrounds, np.float32)
        if bg.ndim != 3:
            raise InputError("backgrounds must be a stack (N, H, W) of normalised I_BG frames.")
        self.scenes, self.bg, self.cfg = scenes, bg, cfg
        self.bg_median = np.array([np.median(b[b > 0]) if np.any(b > 0) else 1.0 for b in bg], np.float64)
        for s in scenes:
            if s["spots"].shape[0] < 1 + 2 * cfg.neighbours:
                raise InputError("a scene has too few frames for the neighbours.")

    def _background(self, j, binning, r, c, P):
        """Background patch of background frame j for a scene of ``binning`` at (r, c) in scene pixels."""
        b = self.bg[j]
        if binning == 2:
            return b[r : r + P, c : c + P]
        rr, cc = r // 2, c // 2
        q = P // 2 + 2
        crop = b[rr : rr + q, cc : cc + q]
        up = ndi.zoom(crop, 2, order=1)
        o0, o1 = r - 2 * rr, c - 2 * cc
        return up[o0 : o0 + P, o1 : o1 + P]

    def sample(self, rng, patch=None):
        """One (input (C, P, P) float32 normalised, target (1, P, P) float32, info) triple."""
        cfg = self.cfg
        P = int(patch or cfg.patch)
        s = self.scenes[rng.integers(len(self.scenes))]
        spots = s["spots"]
        T, H, W = spots.shape
        nb = cfg.neighbours
        k = int(rng.integers(nb, T - nb))
        nbg = len(self.bg)
        j = int(rng.integers(0, nbg))
        js = [min(max(j + d, 0), nbg - 1) for d in range(-nb, nb + 1)]
        bh, bw = self.bg.shape[1:]
        scale = 1 if s["binning"] == 2 else 2
        hh, ww = min(H, bh * scale), min(W, bw * scale)
        if hh < P or ww < P:
            raise InputError(f"patch {P} larger than the scene/background ({hh}x{ww}).")
        r = int(rng.integers(0, hh - P - 2 * scale + 1))
        c = int(rng.integers(0, ww - P - 2 * scale + 1))
        i0 = float(np.exp(rng.uniform(*np.log(cfg.i0))))
        b = float(np.exp(rng.uniform(*np.log(cfg.brightness))))
        tau = float(rng.uniform(*cfg.tau))
        chans = []
        for d, jj in zip(range(-nb, nb + 1), js):
            sp = spots[k + d, r : r + P, c : c + P].astype(np.float32) * (b * i0)
            bgp = self._background(jj, s["binning"], r, c, P)
            rbg = rng.uniform(i0 - np.sqrt(i0), i0 + np.sqrt(i0))
            x0 = np.clip(sp + rbg * bgp, 0, None)
            chans.append(x0 + tau * rng.poisson(x0 / 2.0))
        m = (1 + tau / 2) * i0 * self.bg_median[j] * float(rng.uniform(0.95, 1.05))
        x = np.arcsinh(np.stack(chans).astype(np.float32) / np.float32(m))
        # ground truth with context around the patch
        pad = 8
        r0, c0 = max(0, r - pad), max(0, c - pad)
        big = spots[k, r0 : r + P + pad, c0 : c + P + pad].astype(np.float32) * (b * i0)
        gt = ground_truth(big, GT_FRAC * i0)[r - r0 : r - r0 + P, c - c0 : c - c0 + P]
        y = gt[None].astype(np.float32)
        t = int(rng.integers(8))
        if t & 1:
            x, y = x[:, :, ::-1], y[:, :, ::-1]
        if t & 2:
            x, y = x[:, ::-1], y[:, ::-1]
        if t & 4:
            x, y = np.swapaxes(x, 1, 2), np.swapaxes(y, 1, 2)
        return np.ascontiguousarray(x), np.ascontiguousarray(y), {"i0": i0, "brightness": b, "tau": tau}

    def batch(self, rng, n: int, patch=None):
        xs, ys = zip(*[self.sample(rng, patch)[:2] for _ in range(int(n))])
        return np.stack(xs), np.stack(ys)

    def summary(self) -> dict:
        return {"scenes": [s["spec"] for s in self.scenes], "backgrounds": int(len(self.bg)),
                "data": asdict(self.cfg)}
