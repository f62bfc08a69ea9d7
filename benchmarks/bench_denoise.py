"""Speed and memory of the denoising workflow (figures for docs/denoise.md; not a test).

    .venv/bin/python benchmarks/bench_denoise.py            # 2 threads (the targets' setting)
    .venv/bin/python benchmarks/bench_denoise.py --threads 1

Each measurement runs in a fresh subprocess so that its peak resident memory (ru_maxrss) is its own:

* phase field: a 512² structure (200 Voronoi grains, 500 steps, 20 order parameters; target ≤ 5 s), always
  on one thread (its FFTs are small: on a busy 2-core machine two threads measured 10–60 s, one 2.7 s);
* the ``cpu`` preset (the shipped default model if installed, else random weights of the same
  architecture: same speed; ``--model`` another file) on a 1024² micrograph, whole image (target ≤ 2 s);
  a 2048² image in 1024² tiles shows the peak memory bounded by the tile, not the image;
* NL-means and TV (scikit-image, rule-of-thumb parameters: no calibration) on the same 1024² image;
* the grain measurement (``measure_grains``, auto → etched rule, with the ASTM numbers) of the 1024² and
  2048² images: it runs on the whole image in memory (no tiling), so its time and memory grow with it;
* the same measurement field by field (``denoise.fields.measure_fields``) on a 4096² Zarr store (the 1024²
  image mirrored 4 × 4): 16 fields, one in memory at a time, so the memory is that of one 1024² field.

The 1024² image is the NIST etched-steel micrograph (600×800) mirrored to 1024² (a real micrograph;
the speed does not depend on the content). Times: best of ``--repeat`` runs after one warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap

REAL = "/work/shared/data/optical/nistgsat__grain_structures_steel.tif"

COMMON = textwrap.dedent('''
    import json, os, resource, sys, time
    import numpy as np, torch
    torch.set_num_threads({threads})
    def image(n):
        from matrestore.io import read_image
        a, _ = read_image({real!r})
        a = np.asarray(a, np.float32)
        while min(a.shape) < n:
            a = np.concatenate([a, a[::-1]], 0); a = np.concatenate([a, a[:, ::-1]], 1)
        return np.ascontiguousarray(a[:n, :n])
    def best(f, repeat):
        f(); ts = []
        for _ in range(repeat):
            t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
        return min(ts)
    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    def net():
        from matrestore.denoise import DEFAULT_MODEL, build_model, load_model
        if {model!r} != "default":
            m = load_model({model!r})
        elif DEFAULT_MODEL.is_file():
            m = load_model()
        else:
            return build_model("cpu").eval(), "random cpu"
        return m, f"{{{model!r}}}: {{m.cfg.preset}} preset, {{m.cfg.n_blocks}} blocks"
''')

CASES = {
    "phase field 512² (200 grains, 500 steps; 1 thread)": '''
from matrestore.denoise import phase_field
torch.set_num_threads(1)  # small FFTs: extra threads only add synchronisation (much slower on a busy machine)
t = best(lambda: phase_field((512, 512), 200, 500, seed=0), {repeat})
print(json.dumps({{"s": t, "peak_mb": peak_mb()}}))
''',
    "network 1024², whole image": '''
from matrestore.denoise import denoise
m, mname = net()
x = image(1024)
t = best(lambda: denoise(x, m, tile=None), {repeat})
print(json.dumps({{"s": t, "peak_mb": peak_mb(), "model": mname}}))
''',
    "network 2048², 1024² tiles": '''
from matrestore.denoise import denoise
m, mname = net()
x = image(2048)
t = best(lambda: denoise(x, m, tile=1024), 1)
print(json.dumps({{"s": t, "peak_mb": peak_mb()}}))
''',
    "NL-means 1024² (rule of thumb)": '''
from matrestore.denoise import run_baseline
x = image(1024)
t = best(lambda: run_baseline(x, "nl_means", calibrate=False), {repeat})
print(json.dumps({{"s": t, "peak_mb": peak_mb()}}))
''',
    "grains 1024² (auto rule, ASTM numbers)": '''
from matrestore.denoise import measure_grains
x = image(1024)
t = best(lambda: measure_grains(x, 0.2252, "um"), {repeat})
print(json.dumps({{"s": t, "peak_mb": peak_mb()}}))
''',
    "grains 2048² (auto rule, ASTM numbers)": '''
from matrestore.denoise import measure_grains
x = image(2048)
t = best(lambda: measure_grains(x, 0.2252, "um"), 1)
print(json.dumps({{"s": t, "peak_mb": peak_mb()}}))
''',
    "grains by fields, 4096² Zarr store (16 fields of 1024²)": '''
import tempfile, zarr
from matrestore.denoise.fields import measure_fields
x = image(1024)
d = tempfile.mkdtemp()
z = zarr.open(d + "/big.zarr", mode="w", shape=(4096, 4096), chunks=(1024, 1024), dtype="float32")
for i in range(4):
    for j in range(4):
        z[i * 1024:(i + 1) * 1024, j * 1024:(j + 1) * 1024] = x[::(-1) ** i, ::(-1) ** j]
del x
t = best(lambda: measure_fields(z, 1024, pixel_size=0.2252, unit="um"), 1)
print(json.dumps({{"s": t, "peak_mb": peak_mb()}}))
''',
    "TV 1024² (rule of thumb)": '''
from matrestore.denoise import run_baseline
x = image(1024)
t = best(lambda: run_baseline(x, "tv", calibrate=False), {repeat})
print(json.dumps({{"s": t, "peak_mb": peak_mb()}}))
''',
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", default=None, help="run the cases whose name contains this text")
    ap.add_argument("--model", default="default", help="the network cases' model: 'default' (the shipped one) or a file")
    args = ap.parse_args(argv)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    print(f"threads: {args.threads}; load average before: {os.getloadavg()[0]:.2f}")
    print("| case | time s | peak memory MB |\n|---|---:|---:|")
    for name, body in CASES.items():
        if args.only and args.only not in name:
            continue
        code = COMMON.format(threads=args.threads, real=REAL, model=args.model) + body.format(repeat=args.repeat)
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        if r.returncode != 0:
            print(f"| {name} | failed: {r.stderr.strip().splitlines()[-1] if r.stderr else r.returncode} | |")
            continue
        doc = json.loads(r.stdout.strip().splitlines()[-1])
        extra = f" ({doc['model']})" if "model" in doc else ""
        print(f"| {name}{extra} | {doc['s']:.2f} | {doc['peak_mb']:.0f} |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f} (other processes share these cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
