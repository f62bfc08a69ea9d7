"""A/B of the input: the frame alone (neighbours=0) vs the frame and its two neighbours (neighbours=1),
at the same number of steps of the same schedule, on the *same* validation patches.

The validation patches of the default run (seed 0: 2 held-out scenes, training backgrounds 1-28, 64
patches of 128²) are rebuilt; the single-frame model sees their centre channel, which is exactly its own
kind of input. Prints spot F1 on those patches at a list of thresholds for each model given.

    python scripts/ab_labdct_neighbours.py --single /tmp/ab/last.safetensors --neighbours MODEL_AT_SAME_STEP
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
IRON = Path(os.environ.get("MATRESTORE_IRON", ROOT.parent / "shared" / "data" / "xrd" / "labdct_pure_iron"))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+", help="model files (neighbours 0 or 1)")
    a = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    from matrestore.labdct import load_model
    from matrestore.labdct.background import extract_background
    from matrestore.labdct.evaluate import TRAIN_FRAMES, iron_files
    from matrestore.labdct.metrics import prf, spot_counts
    from matrestore.labdct.stack import FrameStack
    from matrestore.labdct.train import TrainConfig, make_training_data

    files = iron_files(IRON)
    bg = extract_background(FrameStack([files[k] for k in TRAIN_FRAMES]), window=60)
    tcfg = TrainConfig(scene_frames=10, val_scenes=2, val_patches=64)
    val = make_training_data(bg, tcfg, 1, 128, val=True)
    vx, vy = val.batch(np.random.default_rng(10_000 + tcfg.seed), 64, 128)
    truth = vy[:, 0] > 0.5
    for path in a.models:
        m = load_model(path)
        x = vx if m.cfg.neighbours == 1 else vx[:, 1:2]
        with torch.inference_mode():
            p = torch.sigmoid(m(torch.from_numpy(np.ascontiguousarray(x)))).numpy()[:, 0]
        row = []
        for t in (0.003, 0.006, 0.01, 5 / 255, 0.05, 0.1, 0.3, 0.5):
            c = np.sum([spot_counts(pp >= t, g) for pp, g in zip(p, truth)], 0)
            row.append(f"{t:.3g}:{prf(*c)['f1']:.3f}")
        steps = ((m.meta or {}).get("training") or {}).get("steps")
        print(f"{path}: neighbours={m.cfg.neighbours}, steps={steps}: F1 " + " ".join(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
