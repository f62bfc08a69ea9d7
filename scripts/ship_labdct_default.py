"""Calibrate the trained LabDCT model's threshold on the tuning stack and ship it as the default model.

The threshold calibration uses the same *tuning stack* as the routine's parameter search in
``matrestore labdct evaluate`` (seed 1235, 12 frames, iron training backgrounds 1-28): the network's
probability threshold t* with the best pooled spot F1 over 6 of its frames is mapped onto the default
5/255 by a logit offset (``calibration`` in the model file). The test stack and test backgrounds (frames
29-40) are not touched. Weights are stored as float16.

    python scripts/ship_labdct_default.py --model training/labdct_default/best.safetensors
    python scripts/ship_labdct_default.py --record eval.json     # add held-out figures to the shipped file
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
IRON = Path(os.environ.get("MATRESTORE_IRON", ROOT.parent / "shared" / "data" / "xrd" / "labdct_pure_iron"))
THRESHOLDS = (0.002, 0.004, 0.006, 0.01, 0.015, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2, 0.3, 0.5, 0.7)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(ROOT / "training" / "labdct_default" / "best.safetensors"))
    ap.add_argument("--out", default=str(ROOT / "src" / "matrestore" / "labdct" / "models" / "default.safetensors"))
    ap.add_argument("--record", help="evaluation JSON (matrestore labdct evaluate --json) to store in the shipped file")
    a = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    from matrestore.labdct import clean, load_model, save_model
    from matrestore.labdct.background import extract_background
    from matrestore.labdct.evaluate import TRAIN_FRAMES, iron_files, make_stack
    from matrestore.labdct.metrics import prf, spot_counts
    from matrestore.labdct.train import DEFAULT_THRESHOLD

    if a.record:
        model = load_model(a.out)
        doc = json.loads(Path(a.record).read_text())
        syn = doc["synthetic"]["methods"]
        model.meta.setdefault("metrics", {})["held_out"] = {
            "protocol": doc["synthetic"]["protocol"],
            **{m: {"f1": r["spots"]["f1"], "precision": r["spots"]["precision"], "recall": r["spots"]["recall"],
                   "pixel_dice": r["pixel_dice"], "f1_terciles": {t: v["f1"] for t, v in r["terciles"].items()}}
               for m, r in syn.items()},
            "real_frames_29_40": doc.get("real", {}).get("mean")}
        save_model(model, a.out, half=True)
        print(f"recorded held-out figures in {a.out}")
        return 0
    model = load_model(a.model)
    model.meta["calibration"] = 0.0
    files = iron_files(IRON)
    from matrestore.labdct.stack import FrameStack

    bg_tr = extract_background(FrameStack([files[k] for k in TRAIN_FRAMES]), window=60)
    tun = make_stack(bg_tr, n_frames=12, seed=1235)
    use = np.unique(np.linspace(0, 11, 6).round().astype(int))
    prob = clean(tun["x"], model)
    bs = np.zeros(prob.shape[1:], bool)
    r0, r1, c0, c1 = tun["beamstop"]
    bs[r0:r1, c0:c1] = True
    table = {}
    for t in THRESHOLDS:
        c = np.sum([spot_counts((prob[k] >= t) & ~bs, tun["truth"][k]) for k in use], 0)
        table[t] = prf(*c)["f1"]
        print(f"threshold {t:.4g}: tuning-stack spot F1 {table[t]:.4f}")
    t_best = max(table, key=table.get)
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    calib = logit(DEFAULT_THRESHOLD) - logit(t_best)
    model.meta["calibration"] = calib
    model.meta["calibration_source"] = {"stack": "tuning stack (seed 1235, 12 frames, iron backgrounds 1-28), 6 frames scored",
                                        "threshold": t_best, "f1": table[t_best],
                                        "table": {str(k): v for k, v in table.items()}}
    model.meta["backgrounds"] = {"training": "iron frames 0001-0028 (ω 180° … 99°)",
                                 "test (never seen)": "iron frames 0029-0040 (ω 96° … 63°)"}
    p = save_model(model, a.out, half=True)
    print(f"t* = {t_best} (F1 {table[t_best]:.4f}); calibration {calib:+.3f}; wrote {p} ({p.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
