"""Out-of-core restoration: peak memory against image size, throughput against the in-memory path, and
1 → 2 worker scaling (issue 15's figures; docs/big_images.md).

Every configuration runs in a fresh subprocess so that its peak RSS (VmHWM) is its own.

    python benchmarks/bench_bigimage.py engine            # SmoothUpKernel ×4: 1024², 4096², 8192² LR → Zarr
    python benchmarks/bench_bigimage.py sr --sizes 256 512 # the shipped SR model (cpu preset): store vs in memory
    python benchmarks/bench_bigimage.py cluster --size 384 # SR into a store with 1 and 2 LocalCluster workers
    python benchmarks/bench_bigimage.py labdct --frames 40 181 # LabDCT stacks: network clean and routine, store vs memory
    python benchmarks/bench_bigimage.py all --json out.json

Inputs are synthetic micrograph-like textures made block by block (a lazy dask array: nothing of the
input is ever whole in memory), seeded, so the runs are reproducible. ``labdct`` uses the 40 real 1024²
pure-iron projections of ``../shared/data/xrd/labdct_pure_iron`` (repeated to the length asked for),
written to one multi-page TIFF that every run reads lazily, as the CLI does (1 torch thread).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _texture(size: int, chunk: int = 1024):
    """A lazy uint8 texture of ``size``² px: smooth blobs plus grain, block by block (seeded per block)."""
    import dask.array as da
    import numpy as np

    def block(block_info=None):
        loc = block_info[None]["chunk-location"]
        shape = block_info[None]["chunk-shape"]
        rng = np.random.default_rng([7, *loc])
        yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
        y0, x0 = (block_info[None]["array-location"][0][0], block_info[None]["array-location"][1][0])
        base = 0.5 + 0.25 * np.sin((yy + y0) / 37.0) * np.cos((xx + x0) / 53.0)
        img = base + 0.08 * rng.standard_normal(shape).astype(np.float32)
        return np.clip(img * 255, 0, 255).astype(np.uint8)

    return da.map_blocks(block, dtype=np.uint8, chunks=((chunk,) * (size // chunk) + ((size % chunk,) if size % chunk else ()),) * 2)


def _refs():
    from matrestore.io import read_single_image

    sample = ROOT / "src" / "matrestore" / "data"
    files = sorted(p for p in sample.glob("*.tif*"))
    if files:
        img = read_single_image(files[0])[0]
    else:  # pragma: no cover
        from skimage import data

        img = data.camera()
    return [img[:256, :256]]


# ----------------------------------------------------------------------------------------------- children
def child_engine(size: int, out: str) -> dict:
    from matrestore import bigimage

    x = _texture(size)
    k = bigimage.SmoothUpKernel(scale=4, grid=256, halo=2, dtype="uint8")
    t0 = time.perf_counter()
    bigimage.store(x, k, out, chunk=1024)
    el = time.perf_counter() - t0
    return {"size": size, "output_mp": (4 * size) ** 2 / 1e6, "seconds": el, "peak_rss_mb": _peak_rss_mb()}


def child_sr(size: int, out: str, path: str, threads: int = 2, budget_s: float = 0.0) -> dict:
    """One SR run. ``budget_s`` > 0 (store only): stop between blocks after that long and report the blocks
    done and the rate; rerunning with the same ``out`` resumes the store (a long run over several goes)."""
    import numpy as np
    import torch

    from matrestore import sr
    from matrestore.progress import Kind, drive

    torch.set_num_threads(threads)
    x = _texture(size, chunk=min(size, 1024))
    refs = _refs()
    model = sr.load_model("default")
    t0 = time.perf_counter()
    info: dict = {}
    if path == "memory":
        res = sr.enhance(np.asarray(x), refs, model)
        res = np.clip(np.rint(res), 0, 255).astype(np.uint8)
    else:
        flag = {"stop": False}

        def watch(rec):
            if rec["kind"] == Kind.SETUP and rec.get("phase") == "blocks":
                info["blocks_total"] = rec.get("total")
                info["blocks_before"] = rec.get("step")
                info["t_blocks"] = time.perf_counter()
            if rec["kind"] == Kind.STEP and rec.get("phase") == "blocks":
                info["blocks_done"] = rec.get("step")
                print(f"  {rec.get('message')}  (peak RSS {_peak_rss_mb():.0f} MB)", file=sys.stderr, flush=True)
            if budget_s and time.perf_counter() - t0 > budget_s:
                flag["stop"] = True

        chunk = int(path.split(":")[1]) if ":" in path else None
        done = drive(sr.enhance_to_zarr_iter(x, out, refs, model, chunk=chunk, cancel=lambda: flag["stop"]), watch)
        info["complete"] = done is not None
    el = time.perf_counter() - t0
    row = {"size": size, "path": path, "threads": threads, "output_mp": (4 * size) ** 2 / 1e6, "seconds": el,
           "mp_per_s": (4 * size) ** 2 / 1e6 / el, "peak_rss_mb": _peak_rss_mb(), **info}
    if info.get("blocks_total") and not info.get("complete", True):
        n = (info.get("blocks_done") or info["blocks_before"]) - info["blocks_before"]
        bel = time.perf_counter() - info["t_blocks"]
        row["mp_per_s"] = (n / info["blocks_total"]) * row["output_mp"] / bel if n else 0.0
        row["projected_total_s"] = bel / n * info["blocks_total"] if n else None
    row.pop("t_blocks", None)
    return row


def child_cluster(size: int, out: str, workers: int) -> dict:
    import torch
    from distributed import Client, LocalCluster

    from matrestore import sr

    torch.set_num_threads(1)
    x = _texture(size, chunk=min(size, 1024))
    refs = _refs()
    model = sr.load_model("default")
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
            Client(cl) as client:
        t0 = time.perf_counter()
        sr.enhance_to_zarr(x, out, refs, model, chunk=max(64, size // 4), scheduler=client)
        el = time.perf_counter() - t0
    return {"size": size, "workers": workers, "output_mp": (4 * size) ** 2 / 1e6, "seconds": el,
            "mp_per_s": (4 * size) ** 2 / 1e6 / el}


IRON = ROOT.parent / "shared" / "data" / "xrd" / "labdct_pure_iron"


def _iron_stack(path: Path, n: int) -> Path:
    """The real iron frames, repeated to ``n``, as one multi-page TIFF (written frame by frame)."""
    import tifffile

    files = sorted(p for p in IRON.iterdir() if p.suffix.lower() in (".tif", ".tiff"))
    if not files:
        raise SystemExit(f"no LabDCT frames in {IRON}")
    with tifffile.TiffWriter(str(path), bigtiff=True) as w:
        for k in range(n):
            w.write(tifffile.imread(str(files[k % len(files)])), contiguous=False)
    return path


def child_labdct(stack: str, out: str, method: str, path: str) -> dict:
    """One LabDCT run: ``method`` network|routine, ``path`` memory|store (chunk 8 frames)."""
    import torch

    from matrestore import labdct
    from matrestore.labdct import lazy

    torch.set_num_threads(1)
    n = len(labdct.stack.as_stack(stack))
    t0 = time.perf_counter()
    if method == "network":
        if path == "memory":
            labdct.clean(stack)
        else:
            lazy.clean_to_zarr(stack, out, chunk=8)
    elif path == "memory":
        labdct.standard_routine(stack)
    else:
        lazy.routine_to_zarr(stack, out, chunk=8)
    el = time.perf_counter() - t0
    return {"frames": n, "method": method, "path": path, "seconds": el, "frames_per_s": n / el,
            "peak_rss_mb": _peak_rss_mb()}


def _run_child(args: list[str]) -> dict:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, __file__, "--child", *args], stdout=subprocess.PIPE, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed with exit code {proc.returncode} (its errors are above)")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="?", default="engine", choices=["engine", "sr", "cluster", "labdct", "all"])
    ap.add_argument("--sizes", type=int, nargs="+", default=None)
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--json", default=None)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the sr runs")
    ap.add_argument("--keep", default=None, help="sr: write the stores here and keep them (a rerun resumes)")
    ap.add_argument("--budget", type=float, default=0.0, help="sr store: stop after this many seconds (resumable)")
    ap.add_argument("--paths", nargs="+", default=["memory", "store"], help="sr: which paths to run")
    ap.add_argument("--frames", type=int, nargs="+", default=[40, 181], help="labdct: stack lengths")
    ap.add_argument("--methods", nargs="+", default=["network", "routine"], help="labdct: which methods to run")
    ap.add_argument("--child", nargs="+", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        kind, *rest = a.child
        if kind == "engine":
            res = child_engine(int(rest[0]), rest[1])
        elif kind == "sr":
            res = child_sr(int(rest[0]), rest[1], rest[2], *(int(rest[3]), float(rest[4])) if len(rest) > 3 else ())
        elif kind == "labdct":
            res = child_labdct(*rest)
        else:
            res = child_cluster(int(rest[0]), rest[1], int(rest[2]))
        print(json.dumps(res))
        return 0
    results: dict = {"cpu_count": os.cpu_count(), "load_avg": os.getloadavg()}
    with tempfile.TemporaryDirectory(dir=os.environ.get("MATRESTORE_BENCH_DIR")) as tmp:
        if a.what in ("engine", "all"):
            rows = []
            for size in a.sizes or [1024, 4096, 8192]:
                r = _run_child(["engine", str(size), str(Path(tmp) / f"e{size}.zarr")])
                rows.append(r)
                print(f"engine  {size:>6}² LR → {4 * size}² ({r['output_mp']:.0f} MP): {r['seconds']:7.1f} s, "
                      f"peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
            results["engine"] = rows
        if a.what in ("sr", "all"):
            rows = []
            for size in a.sizes or [256, 512]:
                for path in a.paths:
                    out = Path(a.keep or tmp) / f"s{size}.zarr"
                    out.parent.mkdir(parents=True, exist_ok=True)
                    r = _run_child(["sr", str(size), str(out), path, str(a.threads), str(a.budget)])
                    rows.append(r)
                    print(f"sr {path:>6} {size:>5}² LR: {r['seconds']:7.1f} s, {r['mp_per_s']:.3f} output MP/s, "
                          f"peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
            results["sr"] = rows
        if a.what in ("cluster", "all"):
            rows = []
            for w in (1, 2):
                r = _run_child(["cluster", str(a.size), str(Path(tmp) / f"c{w}.zarr"), str(w)])
                rows.append(r)
                print(f"cluster {w} worker(s) {a.size}² LR: {r['seconds']:7.1f} s, {r['mp_per_s']:.3f} output MP/s",
                      flush=True)
            results["cluster"] = rows
        if a.what in ("labdct", "all"):
            rows = []
            for n in a.frames:
                stack = _iron_stack(Path(tmp) / f"iron{n}.tif", n)
                for method in a.methods:
                    for path in a.paths:
                        out = Path(tmp) / f"l{n}_{method}.zarr"
                        r = _run_child(["labdct", str(stack), str(out), method, path])
                        rows.append(r)
                        print(f"labdct {method:>8} {path:>6} {n:>4} frames: {r['seconds']:7.1f} s, "
                              f"{r['frames_per_s']:.2f} frames/s, peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
                stack.unlink()
            results["labdct"] = rows
    results["load_avg_end"] = os.getloadavg()
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
