"""Held-out evaluation of a denoising model (default: the current training run's best) and shipping.

The test set takes its magnitude spectra and histograms from the two MLography micrographs, which the
default model never trained on (it trained on the NIST steel micrograph and procedural textures);
structures come from seeds far from the training pool's. The table is what
``matrestore denoise evaluate`` prints (this script runs exactly that command):

    .venv/bin/python scripts/eval_denoise_default.py                     # table + training/denoise_default/eval_heldout.json
    .venv/bin/python scripts/eval_denoise_default.py --seen              # also on the training texture (NIST), unseen structures
    .venv/bin/python scripts/eval_denoise_default.py --ship              # write the model (float16) as the package default,
                                                                         # with the held-out figures in its metadata
    .venv/bin/python scripts/eval_denoise_default.py --val M1 M2 ...     # model choice: the fixed VALIDATION set only
                                                                         # (NIST + procedural textures, no MLography)
    .venv/bin/python scripts/eval_denoise_default.py --real-check M1 ... # grey blotches on the real NIST micrograph
    .venv/bin/python scripts/eval_denoise_default.py --real-reference M1 ...  # grains vs NIST's highlighted boundaries
    .venv/bin/python scripts/eval_denoise_default.py --real-pits LABEL_DIR    # pits left on the held-out real images

The validation set (``--val``, run 3 on) is the same for every recipe, so that runs trained on different
structure pools can be compared: 16 pairs, NIST texture or a procedural texture as source (never the
MLography micrographs), structures from ``VAL_SEED`` (far from the training pools and ``TEST_SEED``), in two
grain-size regimes — "fine": 256² with 30–140 grains like the test, 12 pairs; "coarse": 384² with 6–24
grains (grains of ~80–160 px, like coarse real micrographs), 4 pairs — where the count error also shows
grains the network invents.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
DATA = Path("/work/shared/data/optical")
HELD_OUT = [DATA / "mlography__metallography_train_image_10.jpg", DATA / "mlography__metallography_train_image_15.jpg"]
SEEN = [DATA / "nistgsat__grain_structures_steel.tif"]
RUN = ROOT / "training" / "denoise_default"
VAL_SEED = 20_000_000
N_PER_REAL = 6  # held-out test images per micrograph (--n)
VAL_REGIMES = {"fine": dict(shape=256, grains=(30, 140), n=12), "coarse": dict(shape=384, grains=(6, 24), n=4)}


def validation_pairs():
    """The fixed validation pairs (module docstring): ``[(regime, pair), ...]``."""
    import numpy as np

    from matrestore.denoise.phasefield import phase_field
    from matrestore.denoise.synth import procedural_texture, synthesize, texture_source

    nist, name = texture_source(SEEN[0], SEEN[0].name)
    out = []
    for r, (regime, spec) in enumerate(VAL_REGIMES.items()):
        S = spec["shape"]
        for k in range(spec["n"]):
            rng = np.random.default_rng([VAL_SEED, r, k])
            g = int(rng.integers(spec["grains"][0], spec["grains"][1] + 1))
            pf = phase_field((S, S), g, int(rng.integers(100, 801)), seed=VAL_SEED + 1000 * r + k)
            if k % 2:
                src, sname = procedural_texture((S, S), rng), "procedural texture"
            else:
                src, sname = nist, name
            out.append((regime, synthesize(pf, src, seed=VAL_SEED + 1000 * r + k, boundary_width=(0, 2)[(k // 2) % 2],
                                           mix=1.0, real_name=sname)))
    return out


def validate_models(models, json_path: Path, pairs=None) -> dict:
    """Network figures (with histogram matching, as shipped) of each model on the validation pairs."""
    import time

    import numpy as np

    from matrestore.denoise import denoise
    from matrestore.denoise.modelio import resolve_model
    from matrestore.denoise.scoring import evaluate_output, summarise, to_json

    if pairs is None:
        t0 = time.perf_counter()
        pairs = validation_pairs()
        print(f"{len(pairs)} validation pairs in {time.perf_counter() - t0:.0f} s", flush=True)
    doc = json.loads(json_path.read_text()) if json_path.is_file() else {"models": {}}
    for mpath in models:
        net = resolve_model(mpath)
        per = {}
        for regime, p in pairs:
            m = evaluate_output(denoise(p.noisy, net), p.clean, p.labels, p.masks)
            m["signed_count_err"] = (m["count"] - m["count_true"]) / max(m["count_true"], 1)
            per.setdefault(regime, []).append(m)
            per.setdefault("all", []).append(m)
        summ = summarise(per)
        for reg, rows in per.items():
            summ[reg]["signed_count_err"] = float(np.mean([r["signed_count_err"] for r in rows]))
        doc["models"][str(mpath)] = {"summary": summ, "per_image": per}
        line = "  ".join(f"{reg}: F1 {summ[reg]['f1']:.3f} P {summ[reg]['precision']:.3f} R {summ[reg]['recall']:.3f} "
                         f"count {summ[reg]['count_err']:.3f} ({summ[reg]['signed_count_err']:+.3f})" for reg in per)
        print(f"{mpath}: {line}", flush=True)
    doc["pairs"] = [dict(regime=reg, **{k: v for k, v in p.recipe.items() if isinstance(v, (int, float, str))})
                    for reg, p in pairs] if hasattr(pairs[0][1], "recipe") else len(pairs)
    json_path.write_text(to_json(doc))
    return doc


def real_check(models, json_path: Path | None = None) -> dict:
    """Grey blotches on the real NIST micrograph (bright-field etched steel: uniform bright grains, dark
    boundaries), which has no ground truth: the *bright-interior deviation* — mean |output − input| over the
    input's bright grain interiors (pixels at or above the input's median, eroded by a 3-px disk so that
    boundaries and pits are left out), in units of the input's 1–99 % range. A clean grain that stays clean
    scores ~0; a grain the network gives a grey of its own scores its darkening. (The identity scores 0:
    read it beside the synthetic figures, never alone.)"""
    import numpy as np
    from scipy import ndimage as ndi
    from skimage.morphology import disk

    from matrestore.denoise import denoise
    from matrestore.denoise.modelio import resolve_model
    from matrestore.io import read_image

    img, _ = read_image(SEEN[0])
    a = np.asarray(img, np.float64)
    lo, hi = np.percentile(a, [1, 99])
    interior = ndi.binary_erosion(a >= np.median(a), disk(3))
    doc = json.loads(json_path.read_text()) if json_path is not None and json_path.is_file() else {"models": {}}
    for mpath in models:
        out = denoise(img, resolve_model(mpath))
        dev = float(np.mean(np.abs(out - a)[interior]) / (hi - lo))
        dark = float(np.mean((out < np.percentile(a, 25))[interior]))
        doc["models"][str(mpath)] = {"bright_interior_deviation": dev, "bright_interior_dark_share": dark,
                                     "interior_px": int(interior.sum())}
        print(f"{mpath}: NIST bright-interior deviation {dev:.4f}, share turned dark {dark:.4f}", flush=True)
    if json_path is not None:
        json_path.write_text(json.dumps(doc, indent=1))
    return doc


NIST_REFERENCE = ROOT / "training" / "denoise_default" / "reference" / "nist_steel_boundaries.png"


def nist_reference():
    """``(reference grain labels, skeleton of the reference boundaries)`` of the NIST micrograph."""
    import numpy as np
    from PIL import Image
    from scipy import ndimage as ndi
    from skimage.morphology import skeletonize
    from skimage.segmentation import expand_labels, relabel_sequential

    with Image.open(NIST_REFERENCE) as im:
        b = np.ascontiguousarray(np.array(im.convert("L")) > 127)  # (a 1-bit image as a plain bool array)
    cells, _ = ndi.label(~b)
    sizes = np.bincount(cells.ravel())
    cells[np.isin(cells, np.flatnonzero(sizes < 30))] = 0
    return relabel_sequential(expand_labels(cells, 10))[0], skeletonize(b)


def real_reference(models, json_path: Path | None = None, methods=("input", "bilateral")) -> dict:
    """The real-micrograph check against NIST's highlighted boundaries (training/denoise_default/reference):
    for the raw input, the named classical methods and each model, the grains of
    ``measure_grains(method="etched")`` — boundary F1 (2 px) against the reference, grain count and ASTM E112
    numbers (planimetric, intercept) against the reference grains'."""
    import numpy as np

    from matrestore.denoise import denoise, measure_grains, run_baseline
    from matrestore.denoise.modelio import resolve_model
    from matrestore.denoise.scoring import boundary_f1
    from matrestore.denoise.synth import boundary_map
    from matrestore.io import read_image

    from matrestore._samples import OPTICAL_PIXEL_SIZE_NM

    um = OPTICAL_PIXEL_SIZE_NM / 1e3  # the NIST micrograph: 222 px = 50 µm
    ref, skel = nist_reference()
    R = measure_grains(None, um, "um", labels=ref)["summary"]
    doc = json.loads(json_path.read_text()) if json_path is not None and json_path.is_file() else {}
    doc["reference"] = {k: R[k] for k in ("count", "inside", "astm_g", "astm_g_intercept", "mean_intercept")}
    doc.setdefault("outputs", {})
    print(f"reference: {R['count']} grains, ASTM G {R['astm_g']:.2f} (planimetric), {R['astm_g_intercept']:.2f} (intercept)")
    img, _ = read_image(SEEN[0])
    todo = [(m, (lambda m=m: np.asarray(img, float) if m == "input" else run_baseline(img, m))) for m in methods]
    todo += [(str(m), (lambda m=m: denoise(img, resolve_model(m)))) for m in models]
    for name, make in todo:
        r = measure_grains(make(), um, "um", method="etched")
        s = r["summary"]
        f = boundary_f1(boundary_map(r["labels"]), skel, 2.0)
        row = {"f1": f["f1"], "precision": f["precision"], "recall": f["recall"], "count": s["count"],
               "count_err": (s["count"] - R["count"]) / R["count"], "astm_g": s["astm_g"],
               "astm_g_intercept": s["astm_g_intercept"]}
        doc["outputs"][name] = row
        print(f"{name}: boundary F1 {row['f1']:.3f} (P {row['precision']:.3f} R {row['recall']:.3f}), {s['count']} grains "
              f"({row['count_err']:+.2f}), G {s['astm_g']:.2f} / {s['astm_g_intercept']:.2f}", flush=True)
    if json_path is not None:
        json_path.write_text(json.dumps(doc, indent=1))
    return doc


def real_pits(label_dir: Path, models=("default", "etched"), json_path: Path | None = None,
              baselines=("bilateral", "median", "nl_means", "tv")) -> dict:
    """Pit removal on the two held-out MLography micrographs against MLography's own hand labels of their dark
    impurities/pits (``t_10.jpg``, ``t_15.jpg`` of Segmentation/unet/data/metallography/train/label at commit
    3e9a82e561dda9ae4d985bf6b03bf1d455712b70; no licence for the data: read from ``label_dir``, never stored
    here). Per image, the *pit residual*: the darkness left in the labelled pit pixels, Σ max(bg − out, 0) /
    Σ max(bg − in, 0), with bg the median grey of a 2–6 px ring around each pit in the input (the grain it
    sits in); 1 = unchanged, 0 = gone. Labels are resized (nearest) to the image when their size differs
    (t_15 is 912×1334 for a 904×1327 image)."""
    import numpy as np
    from scipy import ndimage as ndi
    from skimage.io import imread
    from skimage.transform import resize

    from matrestore.denoise import denoise, run_baseline
    from matrestore.denoise.apply import prepare_input
    from matrestore.denoise.modelio import resolve_model

    doc = {"labels": "MLography train/label t_10.jpg, t_15.jpg (3e9a82e5)", "images": {}}
    for img_path in HELD_OUT:
        k = img_path.stem.rsplit("_", 1)[-1]
        img = imread(img_path)
        grey, _ = prepare_input(img, "luminance", img_path.name)
        grey = np.asarray(grey, np.float64)
        lab = imread(Path(label_dir) / f"t_{k}.jpg")
        lab = (lab.mean(-1) if lab.ndim == 3 else lab) < 128
        if lab.shape != grey.shape:
            lab = resize(lab.astype(float), grey.shape, order=0) > 0.5
        grown = ndi.binary_dilation(lab, iterations=6)
        ring = grown & ~ndi.binary_dilation(lab, iterations=2)
        blobs, n = ndi.label(grown)
        med = np.asarray(ndi.median(grey, blobs * ring, index=np.arange(1, n + 1)))
        bg = np.zeros_like(grey)
        bg[blobs > 0] = med[blobs[blobs > 0] - 1]
        base = float(np.clip(bg - grey, 0, None)[lab].sum())
        row = {"pits": int(n), "pit_px": int(lab.sum())}
        outs = [(str(m), lambda m=m: denoise(img, resolve_model(m))) for m in models]
        outs += [(b, lambda b=b: run_baseline(grey, b)) for b in baselines]
        for name, make in outs:
            row[name] = float(np.clip(bg - np.asarray(make(), np.float64), 0, None)[lab].sum() / base)
        doc["images"][img_path.name] = row
        print(f"{img_path.name}: {n} labelled pits; pit residual " + ", ".join(f"{k2} {v:.3f}" for k2, v in row.items()
                                                                         if isinstance(v, float)), flush=True)
    if json_path is not None:
        json_path.write_text(json.dumps(doc, indent=1))
    return doc


def command(model, reals, json_path, n):
    return ["denoise", "evaluate", "--real", *map(str, reals), "--model", str(model), "--n", str(n), "--threads", "1",
            "--json", str(json_path)]


def figure(model, held_json: Path) -> Path:
    """Real micrograph (NIST, free licence), network output and the held-out best baseline, side by side."""
    import numpy as np
    from PIL import Image

    from matrestore.denoise import denoise, run_baseline
    from matrestore.io import read_image

    doc = json.loads(held_json.read_text())
    base = {k: v for k, v in doc["summary"].items() if k not in ("network", "network (no histogram matching)", "input (not denoised)")}
    best = max(base, key=lambda k: base[k]["f1"])
    img, _ = read_image(SEEN[0])
    outs = [np.asarray(img, float), denoise(img, model), run_baseline(img, best)]

    def u8(a):
        lo, hi = np.percentile(a, [0.5, 99.5])
        return (np.clip((a - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)

    gap = np.full((img.shape[0], 8), 255, np.uint8)
    row = np.concatenate([u8(outs[0]), gap, u8(outs[1]), gap, u8(outs[2])], 1)
    out = held_json.parent / "real_nist.png"
    im = Image.fromarray(row)
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Software", "matrestore scripts/eval_denoise_default.py")
    info.add_text("Description", f"NIST etched steel: input | network ({Path(str(model)).name}) | {best} (best baseline by held-out F1)")
    im.save(out, pnginfo=info)
    print(f"wrote {out} (input | network | {best})")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(RUN / "best.safetensors"))
    ap.add_argument("--n", type=int, default=N_PER_REAL, help="test images per micrograph (default 6: 12 held-out images)")
    ap.add_argument("--seen", action="store_true", help="also evaluate on the training texture")
    ap.add_argument("--ship", action="store_true", help="write the model as src/matrestore/denoise/models/default.safetensors")
    ap.add_argument("--skip-eval", action="store_true", help="--ship/--figure with the existing eval_heldout.json")
    ap.add_argument("--val", nargs="+", default=None, metavar="MODEL",
                    help="only the fixed validation set (model choice), for these models")
    ap.add_argument("--real-check", nargs="+", default=None, metavar="MODEL",
                    help="only the grey-blotch figure on the real NIST micrograph (real_check), for these models")
    ap.add_argument("--real-reference", nargs="+", default=None, metavar="MODEL",
                    help="only the real-micrograph check against NIST's highlighted boundaries (real_reference)")
    ap.add_argument("--real-pits", default=None, metavar="LABEL_DIR",
                    help="only the pit removal on the held-out MLography micrographs against MLography's pit labels "
                         "(t_10.jpg, t_15.jpg in LABEL_DIR; real_pits)")
    ap.add_argument("--real-json", default=None, help="--real-check: write the figures here too")
    ap.add_argument("--val-json", default=str(RUN / "run3" / "val.json"),
                    help="validation figures (--val writes them; --ship records the model's entry, if any)")
    ap.add_argument("--dir", default=str(RUN), help="folder of eval_heldout.json / eval_seen_texture.json (run 3: RUN/run3)")
    ap.add_argument("--meta-from", default=None,
                    help="--ship: take the training metadata from this model file of the same run (for a model "
                         "extracted from a checkpoint, which has none)")
    ap.add_argument("--figure", action="store_true",
                    help="training/denoise_default/real_nist.png: the real NIST micrograph, the network, the best baseline")
    args = ap.parse_args(argv)
    if args.real_pits:
        import torch

        torch.set_num_threads(1)
        real_pits(Path(args.real_pits), json_path=Path(args.real_json) if args.real_json else None)
        return 0
    if args.real_reference:
        import torch

        torch.set_num_threads(1)
        real_reference([m for m in args.real_reference if m != "none"], Path(args.real_json) if args.real_json else None)
        return 0
    if args.real_check:
        import torch

        torch.set_num_threads(1)
        real_check(args.real_check, Path(args.real_json) if args.real_json else None)
        return 0
    if args.val:
        import torch

        torch.set_num_threads(1)
        validate_models(args.val, Path(args.val_json))
        return 0
    from matrestore.cli import main as cli

    out_dir = Path(args.dir)
    held = out_dir / "eval_heldout.json"
    if not args.skip_eval:
        cmd = command(args.model, HELD_OUT, held, args.n)
        print("matrestore " + " ".join(cmd), flush=True)
        if cli(cmd) != 0:
            return 1
        if args.seen:
            cmd = command(args.model, SEEN, out_dir / "eval_seen_texture.json", args.n)
            print("matrestore " + " ".join(cmd), flush=True)
            if cli(cmd) != 0:
                return 1
    if args.figure:
        figure(args.model, held)
    if args.ship:
        from matrestore.denoise import load_model, save_model
        from matrestore.denoise.modelio import DEFAULT_MODEL

        doc = json.loads(held.read_text())
        s = doc["summary"]
        net = s["network"]
        base = {k: v for k, v in s.items() if k not in ("network", "network (no histogram matching)", "input (not denoised)")}
        m = load_model(args.model)
        held_out = {
            "n": doc["n_images"], "real_micrographs": [Path(r).name for r in doc["real"]], "seed": doc["seed"],
            "shape": doc["shape"], "command": "matrestore " + " ".join(command("MODEL", HELD_OUT, "eval_heldout.json", args.n)),
            "network": {k: net[k] for k in ("f1", "count_err", "area_err", "psnr", "ssim", "scratch", "time_s")},
            "best_baseline_f1": max((v["f1"], k) for k, v in base.items()),
            "lowest_baseline_scratch": min((v["scratch"], k) for k, v in base.items()),
        }
        metrics = dict((m.meta.get("metrics") or {}), held_out=held_out)
        vj = Path(args.val_json)
        if vj.is_file():
            entry = json.loads(vj.read_text())["models"].get(str(args.model))
            if entry:
                metrics["validation_set"] = {
                    "seed": VAL_SEED, "regimes": {k: dict(v) for k, v in VAL_REGIMES.items()},
                    "command": "scripts/eval_denoise_default.py --val MODEL",
                    **{reg: {k: entry["summary"][reg][k] for k in ("f1", "precision", "recall", "count_err", "signed_count_err")}
                       for reg in entry["summary"]}}
        training = m.meta.get("training")
        if args.meta_from:
            src = load_model(args.meta_from).meta
            training = dict(src.get("training") or {})
            if m.meta.get("epoch") is not None:
                spe = training.get("config", {}).get("steps_per_epoch", 100)
                training.update(epochs_done=int(m.meta["epoch"]), steps_done=int(m.meta["epoch"]) * int(spe))
                training.pop("elapsed_s", None)
        out = save_model(m, DEFAULT_MODEL, half=True, name=f"matrestore denoise default ({m.cfg.preset} preset)", metrics=metrics,
                         training=training)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
