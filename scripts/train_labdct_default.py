"""Train the shipped LabDCT spot-cleaning model (preset ``cpu``), resumable.

Backgrounds: the real pure-iron frames 1–28 (ω 180° … 99°) only — frames 29–40 are the test backgrounds
of ``matrestore labdct evaluate`` and are never seen in training. The frames are read from the shared data
folder (they carry no licence: nothing derived from them is written into the package or the repository
except the model weights).

    OMP_NUM_THREADS=1 nohup .venv/bin/python scripts/train_labdct_default.py > training/labdct_default/stdout.log 2>&1 &
    # resume after an interruption:
    OMP_NUM_THREADS=1 nohup .venv/bin/python scripts/train_labdct_default.py --resume >> training/labdct_default/stdout.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
IRON = Path(os.environ.get("MATRESTORE_IRON", ROOT.parent / "shared" / "data" / "xrd" / "labdct_pure_iron"))
TRAIN_FRAMES = range(0, 28)  # 0-based: files 0001..0028


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "training" / "labdct_default"))
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--val-every", type=int, default=250)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--scenes", type=int, default=12)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--neighbours", type=int, default=None)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--stop-after", type=int, default=None, help="cancel (checkpoint kept) after this many steps (A/B runs)")
    a = ap.parse_args(argv)
    a.steps_given = any(x == "--steps" or x.startswith("--steps=") for x in (argv if argv is not None else sys.argv[1:]))
    torch.set_num_threads(1)
    from matrestore.labdct.background import extract_background
    from matrestore.labdct.stack import FrameStack
    from matrestore.labdct.train import TrainConfig, train

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    files = sorted(IRON.glob("*.tiff"))
    st = FrameStack([files[k] for k in TRAIN_FRAMES])
    t0 = time.time()
    bg = extract_background(st, window=60)
    print(f"backgrounds from {len(st)} training frames in {time.time() - t0:.0f} s", flush=True)
    cfg = TrainConfig(preset=a.preset, steps=a.steps, batch=a.batch, val_every=a.val_every, scenes=a.scenes,
                      scene_frames=10, val_scenes=2, val_patches=64, threads=1)
    log = open(out / "log.jsonl", "a")
    overrides = {} if a.neighbours is None else {"neighbours": a.neighbours}
    state = {"step": 0}
    cancel = (lambda: a.stop_after is not None and state["step"] >= a.stop_after)
    gen = train(bg, out, config=cfg, resume=a.resume, model_overrides=overrides, cancel=cancel,
                steps=a.steps if a.resume and a.steps_given else None)
    last = time.time()
    while True:
        try:
            rec = next(gen)
        except StopIteration as stop:
            print("best model:", stop.value, flush=True)
            break
        k = str(rec["kind"])
        if k == "step":
            state["step"] = rec["step"]
        if k in ("setup", "phase", "epoch", "done", "stopped"):
            doc = {kk: v for kk, v in rec.items() if kk != "images"}
            doc["kind"] = k
            doc["time"] = time.strftime("%H:%M:%S")
            log.write(json.dumps(doc, default=str) + "\n")
            log.flush()
            print(json.dumps(doc, default=str), flush=True)
        elif k == "step" and time.time() - last > 60:
            last = time.time()
            print(f"{time.strftime('%H:%M:%S')} step {rec['step']}/{rec['total']} loss {rec['losses']['loss']:.4f} "
                  f"lr {rec['lr']:.2e} {rec['elapsed_s']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
