"""Evaluation on synthetic stacks with known spots, and figures on real frames.

**Synthetic test protocol** (``matrestore labdct evaluate``). The 40 real iron frames are split by
index: frames 1–28 give the *training* backgrounds (the shipped model saw only these) and frames 29–40
the *test* backgrounds; each split's ``I_BG`` is extracted from its own frames only (appendix A). Stacks:

* *tuning stack* — a new simulated sample (12 frames) on the training backgrounds, used only to
  grid-search the routine's four parameters (:func:`matrestore.labdct.routine.tune_routine`, scored on 6
  evenly spread frames, the rolling median over all 12);
* *test stack* — another new sample (seed never used in training) on the test backgrounds, 3° steps,
  I0 = 110, τ = 1, brightness 1 (98th percentile of the spot peaks = I0), per-frame R_BG (eqs. 1–2).

Truth: the LoG ground truth of the noise-free frames at 2 % of I0 (as in training). Scores:
:mod:`matrestore.labdct.metrics` (one-to-one matching by overlap, pixel Dice, terciles of the true peak
intensity) for the network (``segment(clean(x))`` at 5/255), the routine with its defaults and the
routine with tuned parameters; the beam-stop box is excluded from every mask and from the truth.

**Real frames**: spot counts per frame of both methods, and the residual background in non-spot pixels
(pixels outside the beam stop and outside both methods' masks dilated by 2 px): "before" is the input's
mean there divided by the input's 99.9th percentile (a 0–1 scale like an 8-bit image); "after" is the
network output's mean there (already 0–1) and, for the routine, the mean of the positive part of
``frame − rolling median`` divided by the same percentile.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from .._validate import InputError
from .background import extract_background, ground_truth
from .data import GT_FRAC
from .geometry import IRON_GEOMETRY, Geometry
from .infer import clean, segment
from .metrics import score_stack
from .routine import ROUTINE_DEFAULTS, beamstop_mask, find_beamstop, standard_routine, tune_routine
from .simulate import SampleConfig, make_sample, project
from .stack import FrameStack

__all__ = ["TRAIN_FRAMES", "TEST_FRAMES", "split_backgrounds", "make_stack", "evaluate_synthetic", "evaluate_real",
           "format_report"]

TRAIN_FRAMES = tuple(range(0, 28))  # 0-based indices of the iron frames 0001..0028
TEST_FRAMES = tuple(range(28, 40))  # 0029..0040


def iron_files(folder) -> list[Path]:
    files = sorted(Path(folder).glob("*.tif*"))
    if len(files) < 40:
        raise InputError(f"{folder}: expected the 40 iron frames, found {len(files)} TIFF files.")
    return files


def split_backgrounds(folder, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """``(I_BG of the training frames, I_BG of the test frames)``, each extracted from its own split."""
    files = iron_files(folder)
    tr = extract_background(FrameStack([files[k] for k in TRAIN_FRAMES]), window=60)
    te = extract_background(FrameStack([files[k] for k in TEST_FRAMES]), window=60)
    return tr, te


def make_stack(backgrounds: np.ndarray, n_frames: int = 24, seed: int = 1234, i0: float = 110.0, tau: float = 1.0,
               brightness: float = 1.0, geometry: Geometry = IRON_GEOMETRY, material: str = "Fe",
               grain_size_mm: float = 0.12, step_deg: float = 3.0) -> dict:
    """A synthetic stack on real backgrounds (cycled in order): ``x`` (inputs), ``spots`` (noise-free
    counts), ``truth`` (bool), ``omegas``."""
    rng = np.random.default_rng(seed)
    smp = make_sample(SampleConfig(material=material, grain_size_mm=grain_size_mm, seed=seed), geometry)
    om = 180.0 - step_deg * np.arange(n_frames)
    raw = np.stack([project(smp, geometry, w) for w in om])
    peaks = raw[(raw == ndi.maximum_filter(raw, (1, 3, 3))) & (raw > raw.max() * 1e-4)]
    f = brightness * i0 / float(np.quantile(peaks, 0.98))
    spots = (raw * f).astype(np.float32)
    nb = len(backgrounds)
    x = np.zeros_like(spots)
    truth = np.zeros(spots.shape, bool)
    for k in range(n_frames):
        bg = backgrounds[k % nb]
        rbg = rng.uniform(i0 - np.sqrt(i0), i0 + np.sqrt(i0))
        x0 = np.clip(spots[k] + rbg * bg, 0, None)
        x[k] = x0 + tau * rng.poisson(x0 / 2.0)
        truth[k] = ground_truth(spots[k], GT_FRAC * i0)
    bs = beamstop_mask(geometry.beamstop, geometry.shape) if geometry.beamstop else None
    if bs is not None:
        truth &= ~bs
    return {"x": x, "spots": spots, "truth": truth, "omegas": om, "beamstop": geometry.beamstop,
            "settings": {"n_frames": n_frames, "seed": seed, "i0": i0, "tau": tau, "brightness": brightness,
                         "material": material, "grain_size_mm": grain_size_mm, "step_deg": step_deg}}


def evaluate_synthetic(model="default", iron_folder=None, backgrounds=None, n_frames: int = 24, tune_frames: int = 12, tune_use: int = 6,
                       seed: int = 1234, i0: float = 110.0, brightness: float = 1.0, tune: bool = True, progress=None,
                       grid=None) -> dict:
    """The synthetic evaluation (module docstring). ``backgrounds``: ``(train_I_BG, test_I_BG)`` or taken
    from ``iron_folder``."""
    say = progress or (lambda msg: None)
    t0 = time.perf_counter()
    if backgrounds is None:
        if iron_folder is None:
            raise InputError("evaluate needs the iron frames folder (--iron) or ready backgrounds.")
        say("extracting training and test backgrounds")
        backgrounds = split_backgrounds(iron_folder)
    bg_tr, bg_te = backgrounds
    say("simulating the test stack")
    test = make_stack(bg_te, n_frames=n_frames, seed=seed, i0=i0, brightness=brightness)
    bs = test["beamstop"]
    res = {"protocol": {"train_background_frames": "iron frames 1-28", "test_background_frames": "iron frames 29-40",
                        "test_stack": test["settings"], "truth": f"LoG of the noise-free frame at {GT_FRAC} x I0",
                        "matching": "one-to-one by overlap, greedy by IoU (see matrestore.labdct.metrics)"}, "methods": {}}
    say("routine with default parameters")
    t = time.perf_counter()
    m_def = standard_routine(test["x"], beamstop=bs, **ROUTINE_DEFAULTS)
    res["methods"]["routine_default"] = {**score_stack(m_def, test["truth"], test["spots"]), "params": dict(ROUTINE_DEFAULTS),
                                         "seconds": time.perf_counter() - t}
    edges = res["methods"]["routine_default"]["tercile_edges"]
    if tune:
        say("tuning the routine on the tuning stack")
        tun = make_stack(bg_tr, n_frames=max(tune_frames, ROUTINE_DEFAULTS["window"]), seed=seed + 1, i0=i0,
                         brightness=brightness)
        use = np.unique(np.linspace(0, len(tun["x"]) - 1, min(tune_use, len(tun["x"]))).round().astype(int))
        best = tune_routine(tun["x"], tun["truth"], beamstop=tun["beamstop"], grid=grid, frames=list(use))
        params = best["params"]
        t = time.perf_counter()
        m_tun = standard_routine(test["x"], beamstop=bs, **params)
        res["methods"]["routine_tuned"] = {**score_stack(m_tun, test["truth"], test["spots"], edges), "params": params,
                                           "tuning_f1": best["score"], "seconds": time.perf_counter() - t}
    if model is not None:
        say("network")
        t = time.perf_counter()
        cl = clean(test["x"], model)
        m_net = segment(cl, beamstop=bs)
        res["methods"]["network"] = {**score_stack(m_net, test["truth"], test["spots"], edges),
                                     "seconds": time.perf_counter() - t}
        from .modelio import resolve_model

        net = resolve_model(model)
        res["model"] = {"preset": net.cfg.preset, "neighbours": net.cfg.neighbours, "loss": net.cfg.loss,
                        "steps": ((net.meta or {}).get("training") or {}).get("steps")}
    res["seconds"] = time.perf_counter() - t0
    return res


def evaluate_real(model="default", iron_folder=None, frames=TEST_FRAMES, routine_params=None) -> dict:
    """Spot counts per frame and residual background before/after, on real iron frames (module docstring)."""
    files = iron_files(iron_folder)
    st = FrameStack([files[k] for k in frames])
    x = np.stack([st[k] for k in range(len(st))])
    params = dict(ROUTINE_DEFAULTS if routine_params is None else routine_params)
    window = min(int(params.get("window", 11)), len(st))
    params["window"] = window
    med0 = np.median(x[: min(11, len(x))], 0)
    bs = find_beamstop(med0)
    rout = standard_routine(x, beamstop=bs, **params)
    cl = clean(x, model)
    net = segment(cl, beamstop=bs)
    # routine's background-corrected frames (for its residual)
    from .routine import rolling_median_iter

    corr = np.zeros_like(x)
    for k, f, med in rolling_median_iter(st, window, False):
        corr[k] = np.clip(f - med, 0, None)
    rows = []
    for k in range(len(x)):
        excl = ndi.binary_dilation(rout[k] | net[k], iterations=2)
        if bs is not None:
            excl |= bs
        bgpx = ~excl
        p999 = float(np.percentile(x[k], 99.9))
        rows.append({"frame": int(frames[k]) + 1, "spots_network": int(ndi.label(net[k], np.ones((3, 3)))[1]),
                     "spots_routine": int(ndi.label(rout[k], np.ones((3, 3)))[1]),
                     "residual_before": float(x[k][bgpx].mean() / p999),
                     "residual_network": float(cl[k][bgpx].mean()),
                     "residual_routine": float(corr[k][bgpx].mean() / p999)})
    keys = ("spots_network", "spots_routine", "residual_before", "residual_network", "residual_routine")
    return {"frames": [int(f) + 1 for f in frames], "routine_params": params, "per_frame": rows,
            "mean": {k: float(np.mean([r[k] for r in rows])) for k in keys}}


def format_report(doc: dict) -> str:
    lines = []
    syn = doc.get("synthetic")
    if syn:
        lines.append("Synthetic test stack: " + ", ".join(f"{k}={v}" for k, v in syn["protocol"]["test_stack"].items()))
        lines.append(f"{'method':<17}{'P':>7}{'R':>7}{'F1':>7}{'Dice':>7}   F1 weak / medium / strong   (recall weak)")
        for name, r in syn["methods"].items():
            s, t = r["spots"], r["terciles"]
            lines.append(f"{name:<17}{s['precision']:7.3f}{s['recall']:7.3f}{s['f1']:7.3f}{r['pixel_dice']:7.3f}   "
                         f"{t['weak']['f1']:.3f} / {t['medium']['f1']:.3f} / {t['strong']['f1']:.3f}        ({t['weak']['recall']:.3f})")
        if "routine_tuned" in syn["methods"]:
            lines.append(f"tuned routine parameters: {syn['methods']['routine_tuned']['params']}")
    real = doc.get("real")
    if real:
        m = real["mean"]
        lines.append(f"Real iron frames {real['frames'][0]}-{real['frames'][-1]} (means per frame): spots network {m['spots_network']:.0f}, "
                     f"routine {m['spots_routine']:.0f}; residual background before {m['residual_before']:.4f}, "
                     f"after network {m['residual_network']:.4f}, after routine {m['residual_routine']:.4f}")
    return "\n".join(lines)
