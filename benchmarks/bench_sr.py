"""Speed and memory of SR inference (``matrestore.sr.enhance``), with a naive baseline from the same run.

    python benchmarks/bench_sr.py                 # 1024x1024 LR -> 4096x4096 (cpu preset), paper preset on 256x256
    python benchmarks/bench_sr.py --quick         # smoke run: 128x128 LR
    python benchmarks/bench_sr.py --size 1024 --paper-size 1024 --json bench.json   # e.g. on a GPU

For each preset and stitching mode it prints the time, output megapixels per second and the peak memory
(resident set size of a fresh process on CPU, allocated CUDA memory on a GPU). Every configuration
runs in its own subprocess so that peaks do not mix.

Naive baselines: the paper's 32×32 tiling, one tile at a time, where every tile
  ``naive``      recomputes everything it needs from the references: the selector embeddings of the
                 whole bank (LTE of every Ref↓↑, eqs. 1-5) and the features of the selected crops
                 (LTE of Ref and Ref↓↑) — a straightforward per-tile implementation of the pipeline;
  ``naive-emb``  the same with the bank's embeddings cached (only the selected crops' features are
                 recomputed per tile) — a stronger baseline.
Both are timed on a sample of tiles spread over the image and extrapolated to all tiles; the ratios
to the fast mode are the speed-ups of the engine's design (reference work once per image, large tiles,
batching). They grow with the bank (``--refs-per-image``).

The LR image is a crop of a real SEM micrograph (mirrored up to the size if needed), the references
are crops of another; weights are random unless ``--model`` is given (speed does not depend on them).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("MATRESTORE_SHARED_DATA", "/work/shared/data")) / "sem"


def _images(size: int):
    """(LR image of size x size, list of reference images)."""
    lr_src = DATA / "openecci__steel_SEM_001.tif"
    ref_srcs = [DATA / "aquami__Sample.tif", DATA / "stabix__cpTi_post_polishing.tif"]
    if lr_src.exists() and all(p.exists() for p in ref_srcs):
        from matrestore import io

        lr = io.read_image(lr_src)[0].astype(np.float32)
        refs = [io.read_image(p)[0] for p in ref_srcs]
    else:  # no shared data: scikit-image samples
        from skimage import data

        lr = data.camera().astype(np.float32)
        refs = [data.moon(), data.coins()]
    if min(lr.shape) < size:
        reps = (int(np.ceil(size / lr.shape[0])), int(np.ceil(size / lr.shape[1])))
        lr = np.pad(lr, ((0, reps[0] * lr.shape[0] - lr.shape[0]), (0, reps[1] * lr.shape[1] - lr.shape[1])), mode="symmetric")
    return np.ascontiguousarray(lr[:size, :size]), refs


def _model(preset, model_path):
    from matrestore.sr import build_model, load_model

    if model_path:
        return load_model(model_path)
    return build_model(preset, seed=0)


def _peak(device):
    import torch

    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    if device.type == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def worker(args) -> dict:
    import torch

    from matrestore.device import pick_device
    from matrestore.sr import RefFeatures, enhance, load_references, measure_receptive_radius
    from matrestore.sr.model import normalise, norm_stats, unfold_normalised, value_table, running_search, transfer
    from matrestore.tiling import plan_tiles

    if args.threads:
        torch.set_num_threads(args.threads)
    dev = pick_device(args.device)
    lr, refs = _images(args.size)
    model = _model(args.preset, args.model).to(dev).eval()
    if model.cfg.receptive_radius is None:
        measure_receptive_radius(model)
    bank = load_references(refs, crop=model.cfg.ref_crop, max_per_image=args.refs_per_image)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    res = {"preset": args.preset, "mode": args.mode, "size": args.size, "device": str(dev), "threads": torch.get_num_threads(),
           "references": len(bank), "receptive_radius": model.cfg.receptive_radius, "rss_before_mb": base_rss}
    if args.mode in ("fast", "paper"):
        # warm-up on a small crop (kernels, allocator), not timed
        enhance(lr[:48, :48], bank, model, mode=args.mode, device=dev)
        recs = []
        t0 = time.perf_counter()
        with torch.no_grad():
            feats = RefFeatures(model, bank, dev)
            out = enhance(lr, None, model, mode=args.mode, device=dev, ref_features=feats, tile=args.tile, progress=recs.append)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        dt = time.perf_counter() - t0
        last = [r for r in recs if r.get("total")][-1]
        res.update(seconds=dt, out_mp=out.size / 1e6, mp_per_s=out.size / 1e6 / dt, tiles=last["total"], tile=last.get("tile"),
                   margin=last.get("margin"), batch=last.get("batch"))
    else:  # naive baselines: per-tile reference work, one tile at a time
        x_all = torch.from_numpy(normalise(lr, norm_stats(lr)))[None, None].to(dev)
        with torch.no_grad():
            feats = RefFeatures(model, bank, dev, cache_mb=0)  # embeddings only; no features kept
        tiles = plan_tiles(lr.shape, 32, 6)
        pick = np.linspace(0, len(tiles) - 1, min(args.naive_tiles, len(tiles))).round().astype(int)
        k = model.cfg.top_k
        t0 = time.perf_counter()
        with torch.no_grad():
            for i in pick:
                t = tiles[i]
                x = x_all[(..., *t.window)]
                lr_up = model.upsample(x)
                q3 = model.query(lr_up)
                if args.mode == "naive":  # the selector's embeddings of the whole bank, per tile
                    feats = RefFeatures(model, bank, dev, cache_mb=0)
                ids = feats.select(model.embed(q3), k)[0].tolist()
                k3, values = model.ref_features(bank.tensor(ids, dev))  # recomputed for every tile
                keys = unfold_normalised(k3).reshape(1, -1, unfold_normalised(k3).shape[-1]).transpose(1, 2)
                S, arg = running_search(unfold_normalised(q3), keys)
                hr_, wr_ = k3.shape[-2:]
                P, gw = hr_ * wr_, wr_ + 2
                h, w = x.shape[-2:]
                tables = []
                for v, b in zip(values, (4, 2, 1)):
                    tb = value_table(v, b)
                    tables.append(torch.cat((tb, tb.new_zeros(1, tb.shape[1]))))
                T = transfer(((arg // P) * (hr_ + 2) * gw).view(1, h, w), ((arg % P) // wr_).view(1, h, w),
                             ((arg % P) % wr_).view(1, h, w), gw, tables, (4, 2, 1), model.cfg.lte_channels)
                model.decode(x, lr_up, S.view(1, 1, h, w), T)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        dt = time.perf_counter() - t0
        per_tile = dt / len(pick)
        est = per_tile * len(tiles)
        out_px = lr.size * 16
        res.update(seconds=est, measured_tiles=len(pick), tiles=len(tiles), seconds_per_tile=per_tile, out_mp=out_px / 1e6,
                   mp_per_s=out_px / 1e6 / est, extrapolated=True)
    res.update(_peak(dev))
    return res


def run_one(preset, mode, size, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--preset", preset, "--mode", mode, "--size", str(size),
           "--naive-tiles", str(args.naive_tiles), "--refs-per-image", str(args.refs_per_image)]
    for opt in ("device", "threads", "model", "tile"):
        v = getattr(args, opt)
        if v:
            cmd += [f"--{opt}", str(v)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"benchmark worker failed ({preset}, {mode}):\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run on a 128x128 LR image")
    ap.add_argument("--size", type=int, default=1024, help="LR image side for the cpu preset (default 1024)")
    ap.add_argument("--paper-size", type=int, default=None, help="LR side for the paper preset (default: 256 on CPU, --size on GPU)")
    ap.add_argument("--presets", nargs="+", default=["cpu", "paper"])
    ap.add_argument("--naive-tiles", type=int, default=48, help="tiles timed for the naive baselines (extrapolated)")
    ap.add_argument("--refs-per-image", type=int, default=64, help="at most this many crops per reference image (2 images; the library default)")
    ap.add_argument("--modes", nargs="+", default=["fast", "paper", "naive", "naive-emb"])
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--tile", type=int, default=None, help="fast-mode tile (default by device)")
    ap.add_argument("--model", default=None, help="model file instead of random weights (its preset is used)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--preset", default="cpu", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="fast", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    import torch

    from matrestore.device import describe, pick_device

    dev = pick_device(args.device)
    size = 128 if args.quick else args.size
    psize = args.paper_size or (64 if args.quick else (size if dev.type == "cuda" else 256))
    print(f"device: {describe(dev)}; torch {torch.__version__}")
    rows = []
    for preset in args.presets:
        s = size if preset != "paper" else psize
        for mode in args.modes:
            r = run_one(preset, mode, s, args)
            rows.append(r)
            mem = f"{r['peak_rss_mb']:.0f} MB RSS" + (f", {r['peak_cuda_mb']:.0f} MB CUDA" if "peak_cuda_mb" in r else "")
            extra = f" (extrapolated from {r['measured_tiles']} of {r['tiles']} tiles)" if r.get("extrapolated") else f" ({r['tiles']} tiles)"
            print(f"{preset:6s} {mode:9s} {s}x{s} LR -> {4 * s}x{4 * s}: {r['seconds']:8.1f} s, {r['mp_per_s']:.3f} MP/s, peak {mem}{extra}", flush=True)
        got = {r["mode"]: r for r in rows if r["preset"] == preset}
        for base in ("naive", "naive-emb"):
            if base in got:
                ratios = ", ".join(f"{m} {got[base]['seconds'] / got[m]['seconds']:.1f}x" for m in ("fast", "paper") if m in got)
                print(f"{preset:6s} speed-up vs {base}: {ratios}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": describe(dev), "results": rows}, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
