"""Speed and memory of LabDCT spot cleaning on 1024² frames: the standard routine and the network.

    python benchmarks/bench_labdct.py                      # 2 threads, 24 frames (routine) / 6 frames (network)
    python benchmarks/bench_labdct.py --threads 2 --json bench.json
    python benchmarks/bench_labdct.py --quick              # smoke run: 256² frames

Each method runs in its own subprocess on a multi-page TIFF stack written to a temporary folder and read
lazily (as the CLI does), so the peak resident memory (``ru_maxrss``) is that of one method on a stack
that is never held in memory. Frames: simulated spots (iron geometry) on a smooth background with
Poisson noise. Prints frames/s and the extrapolated time for a 181-frame stack; the CPU target is 181
frames of 1024² in at most 10 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_stack(path: Path, n: int, size: int):
    import tifffile

    from matrestore.labdct.geometry import IRON_GEOMETRY
    from matrestore.labdct.simulate import SampleConfig, make_sample, project

    geo = IRON_GEOMETRY if size == 1024 else IRON_GEOMETRY.binned(1024 / size)
    smp = make_sample(SampleConfig(seed=5), geo)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    bg = 400 + 200 * np.sin(3 * xx) * np.cos(2 * yy)
    with tifffile.TiffWriter(str(path)) as w:
        for k in range(n):
            spots = project(smp, geo, 180.0 - 3 * k)
            spots *= 300.0 / max(float(np.quantile(spots[spots > 0], 0.99)), 1e-9)
            w.write(rng.poisson(bg + spots).astype(np.uint16), photometric="minisblack", contiguous=True)


def child(method: str, path: str, threads: int, model: str, frames: int):
    import torch

    torch.set_num_threads(threads)
    from matrestore.labdct.stack import FrameStack

    st = FrameStack(path)
    n = min(frames, len(st))
    if method == "routine":
        from matrestore.labdct.routine import standard_routine_iter
        from matrestore.progress import drive

        masks = np.zeros((len(st),) + st.shape, bool)
        t = time.perf_counter()
        drive(standard_routine_iter(st, window=11, beamstop=(478, 594, 434, 561) if st.shape == (1024, 1024) else None, out=masks))
        dt = time.perf_counter() - t
        n = len(st)
    else:
        from matrestore.labdct.infer import clean_iter
        from matrestore.labdct.model import build_model
        from matrestore.labdct.modelio import load_model
        from matrestore.progress import drive

        net = load_model(model) if model != "random" else build_model("cpu").eval()
        sub = FrameStack(np.stack([st[k] for k in range(n)])) if n < len(st) else st
        done = []
        t = time.perf_counter()
        drive(clean_iter(sub, net, sink=lambda k, f: done.append(k)))
        dt = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB on Linux
    print(json.dumps({"method": method, "frames": n, "seconds": dt, "fps": n / dt, "peak_rss_mib": peak,
                      "threads": threads, "frame_shape": list(st.shape)}))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--frames", type=int, default=24, help="stack length (routine runs over all of it)")
    ap.add_argument("--net-frames", type=int, default=6, help="frames cleaned by the network")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--model", default="default", help="model file, 'default' or 'random' (cpu preset)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        return child(a.child[0], a.child[1], a.threads, a.model, a.net_frames)
    if a.quick:
        a.size, a.frames, a.net_frames = 256, 12, 3
    model = a.model
    if model == "default":
        from matrestore.labdct.modelio import DEFAULT_MODEL

        model = str(DEFAULT_MODEL) if DEFAULT_MODEL.is_file() else "random"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stack.tif"
        make_stack(path, a.frames, a.size)
        for method in ("routine", "network"):
            cmd = [sys.executable, __file__, "--child", method, str(path), "--threads", str(a.threads), "--model", model,
                   "--net-frames", str(a.net_frames)]
            env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
            out = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if out.returncode:
                print(out.stderr, file=sys.stderr)
                return 1
            r = json.loads(out.stdout.strip().splitlines()[-1])
            r["minutes_for_181"] = 181 / r["fps"] / 60
            rows.append(r)
            print(f"{method:<8} {r['frames']:>3} frames of {a.size}²: {r['fps']:.2f} frames/s, 181 frames in "
                  f"{r['minutes_for_181']:.1f} min, peak RSS {r['peak_rss_mib']:.0f} MiB ({a.threads} threads)")
    if a.json:
        Path(a.json).write_text(json.dumps({"model": model, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
