"""``matrestore denoise synth | train | apply | evaluate | grains``: thin argument parsing over the engine.

``matrestore.cli`` calls :func:`add_subparser`. Bad input raises :class:`~matrestore._validate.InputError`
(exit code 2, one line). Outputs never replace an input, nor an existing file matrestore did not write
unless ``--overwrite`` (:mod:`matrestore._paths`); every file is written atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .._validate import InputError

__all__ = ["add_subparser"]


def _epoch_line(rec) -> None:
    if str(rec.get("kind")) == "epoch" and rec.get("val"):
        v = rec["val"]
        print(f"epoch {rec['epoch']}: validation boundary F1 {v['f1']:.3f}, PSNR(affine) {v['psnr']:.2f} dB"
              f"{'  (best)' if rec.get('best') else ''}", file=sys.stderr)


def _drive(gen, desc, unit="step"):
    """Run a generator of progress records with a tqdm bar (:func:`matrestore._cli_progress.drive_with_bar`)."""
    from .._cli_progress import drive_with_bar

    return drive_with_bar(gen, desc, unit, on_record=_epoch_line)


def _outputs(args, inputs):
    from .._paths import Outputs

    return Outputs(inputs=inputs, overwrite=getattr(args, "overwrite", False))


def _write_json(path, doc):
    from .._paths import atomic_write_text
    from .scoring import to_json

    atomic_write_text(path, to_json(dict(doc, written_by="matrestore")))


def _threads(args):
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(int(args.threads))


# ------------------------------------------------------------------------------------------------ synth
def _cmd_synth(args) -> int:
    from ..io import write_tiff
    from ..progress import Kind, record
    from .phasefield import phase_field
    from .synth import synthesize, texture_source

    out = _outputs(args, args.real)
    folder = out.folder(args.out)
    reals = [texture_source(r) for r in args.real]
    for img, name in reals:
        if min(img.shape) < args.shape:
            raise InputError(f"{name} of shape {img.shape} is too small for {args.shape}² pairs; use --shape {min(img.shape)} or less.")
    total = args.n * len(reals)
    planned = []
    for i in range(args.n):
        for j in range(len(reals)):
            stem = f"pair_{i:03d}_{j}"
            planned.append((i, j, {k: out.in_folder(folder, f"{stem}_{k}.tif") for k in ("noisy", "clean", "labels", "scratch")},
                            out.in_folder(folder, f"{stem}.json")))

    def work():
        done = 0
        yield record(Kind.SETUP, total=total, step=0)
        for i in range(args.n):
            pf = phase_field((args.shape, args.shape), args.grains, args.steps, seed=args.seed + i)
            for j, (img, name) in enumerate(reals):
                pair = synthesize(pf, img, seed=args.seed + i * len(reals) + j, boundary_width=args.boundary_width,
                                  mix=args.mix, histogram=not args.no_histogram, real_name=name)
                _, _, files, js = planned[done]
                for key, arr in (("noisy", pair.noisy), ("clean", pair.clean), ("labels", pair.labels),
                                 ("scratch", pair.masks["scratch"].astype("uint8"))):
                    write_tiff(files[key], arr, metadata={"recipe": pair.recipe, "kind": key}, overwrite=True)
                _write_json(js, {"recipe": pair.recipe, "files": {k: str(v.name) for k, v in files.items()}})
                done += 1
                yield record(Kind.STEP, step=done, total=total)
        return done

    n = _drive(work(), "pairs", "pair")
    print(f"wrote {n} pairs to {folder}")
    return 0


# ------------------------------------------------------------------------------------------------ train
def _cmd_train(args) -> int:
    from .train import train

    _threads(args)
    out = _outputs(args, args.real)
    folder = out.folder(args.out)
    for name in ("best.safetensors", "last.safetensors"):
        out.in_folder(folder, name)
    opts = {}
    for f in ("preset", "epochs", "steps_per_epoch", "batch_size", "patch", "structures", "val_structures", "lr",
              "boundary_weight", "seed", "schedule", "deepen"):
        v = getattr(args, f, None)
        if v is not None:
            opts[f] = v
    model_options = {k: getattr(args, k) for k in ("feats", "n_blocks", "dropout") if getattr(args, k, None) is not None}
    res = _drive(train(args.real, folder, resume=args.resume, init=args.init, device=args.device,
                       model_options=model_options or None, **opts), "training")
    print(json.dumps({k: v for k, v in (res or {}).items()}, indent=1))
    return 0


# ------------------------------------------------------------------------------------------------ apply
def _apply_options(args):
    from .apply import DenoiseOptions

    return DenoiseOptions(tile=args.tile if args.tile and args.tile > 0 else None, halo=args.halo,
                          batch=args.batch, histogram=not args.no_histogram).check()


def apply_store(args) -> Path:
    """``denoise apply`` into an OME-Zarr store, block by block (:func:`matrestore.denoise.denoise_to_zarr_iter`)."""
    from .._cli_store import run_store, store_path
    from .lazy import denoise_to_zarr_iter

    if len(args.images) != 1:
        raise InputError("an OME-Zarr output (--out *.zarr, --chunk, --scheduler or a Zarr input) takes one image.")
    if args.baseline:
        raise InputError(f"--baseline {args.baseline}: the classical methods run in memory only; write a TIFF "
                         "(no --chunk/--scheduler, --out not ending in .zarr).")
    src = Path(args.images[0])
    if not src.exists():
        raise InputError(f"file not found: {src}")
    out = store_path(src, args.out, "denoised")
    gen = denoise_to_zarr_iter(src, out, args.model, _apply_options(args), chunk=args.chunk, scheduler=args.scheduler,
                               workers=args.workers, overwrite=args.overwrite, device=args.device)
    return run_store(gen, src.name, threads=getattr(args, "threads", None))


def _cmd_apply(args) -> int:
    from .._cli_store import wants_store
    from ..io import read_image, write_tiff
    from .apply import denoise_iter
    from .baselines import run_baseline
    from .modelio import BUNDLED, resolve_model

    if any(wants_store(args.out, im, args.chunk, args.scheduler) for im in args.images):
        apply_store(args)
        return 0
    _threads(args)
    out = _outputs(args, [args.images, args.model if args.model not in BUNDLED else None])
    targets = []
    if len(args.images) > 1 and args.out and not Path(args.out).suffix == "":
        raise InputError("--out must be a folder when several images are given.")
    for im in args.images:
        p = Path(im)
        if not p.is_file():
            raise InputError(f"file not found: {p}" if not p.exists() else f"{p} is not a file.")
        suffix = "_denoised" if not args.baseline else f"_{args.baseline}"
        if args.out is None:
            dest = p.with_name(p.stem + suffix + ".tif")
        elif len(args.images) > 1 or Path(args.out).is_dir():
            dest = out.folder(args.out) / (p.stem + suffix + ".tif")
        else:
            dest = Path(args.out)
        targets.append((p, out.file(dest)))
    opts = None
    if not args.baseline:
        opts = _apply_options(args)
    net = resolve_model(args.model) if not args.baseline else None
    for src, dest in targets:
        arr, meta = read_image(src)
        if args.baseline:
            res, params = run_baseline(arr, args.baseline, calibrate=not args.no_calibrate, return_params=True)
            info = {"method": args.baseline, "parameters": params}
        else:
            res = _drive(denoise_iter(arr, net, device=args.device, **opts.kwargs()), src.name, "tile")
            info = {"method": "network", "model": str(args.model), "model_name": (net.meta or {}).get("name"),
                    "histogram_matching": opts.histogram, "tile": opts.tile, "options": opts.kwargs()}
        md = {"source": str(src), "denoise": info, "pixel_size_source": meta.get("pixel_size_source")}
        write_tiff(dest, res, pixel_size_nm=meta.get("pixel_size"), metadata=md, overwrite=True)
        print(f"{src} -> {dest}")
    return 0


# ----------------------------------------------------------------------------------------------- grains
def _cmd_grains(args) -> int:
    from ..io import read_image, write_tiff
    from .apply import denoise_iter, prepare_input
    from .grains import UNIT_TO_MM, WHOLE_MAX_PX, grains_csv, measure_grains
    from .modelio import BUNDLED, resolve_model

    _threads(args)
    if (args.pixel_size is None) != (args.unit is None):
        raise InputError("give --pixel-size and --unit together (e.g. --pixel-size 0.2252 --unit um).")
    out = _outputs(args, [args.images, args.model if args.denoise and args.model not in BUNDLED else None])
    net = resolve_model(args.model) if args.denoise else None
    if args.fields:
        return _grain_fields(args, out, net)
    for im in args.images:
        src = Path(im)
        if not src.is_file():
            raise InputError(f"file not found: {src}" if not src.exists() else f"{src} is not a file.")
        arr, meta = read_image(src)
        grey, _note = prepare_input(arr, "luminance", f"image '{src.name}'")
        if args.pixel_size is not None:
            px, unit, px_from = args.pixel_size, args.unit, "--pixel-size"
        elif meta.get("pixel_size"):
            px, unit, px_from = float(meta["pixel_size"]) / 1e3, "um", "the file"
        else:
            px, unit, px_from = None, None, None
        if not args.labels and grey.size > WHOLE_MAX_PX:  # a whole segmentation would hold ~0.45 GB per Mpx
            print(f"{src.name}: over {WHOLE_MAX_PX / 1e6:g} Mpx, measured field by field (--fields 1024; "
                  "give --labels to segment it whole)")
            if not _fields_of(args, out, src, grey, net, px, unit, 1024):
                return 1
            continue
        stages = [("input", grey)]
        if net is not None:
            stages.append(("denoised", _drive(denoise_iter(arr, net, device=args.device), src.name, "tile")))
        doc = {"source": str(src), "pixel_size": px, "unit": unit or "px", "pixel_size_from": px_from, "results": {}}
        for stage, img in stages:
            final_stage, final = stage, measure_grains(img, px, unit)
            s = final["summary"]
            doc["results"][stage] = {"summary": s, "rule": final["rule"]}
            g = f", ASTM E112 G {s['astm_g']:.2f}" if s["astm_g"] is not None else ", ASTM G: no pixel size"
            area = (f"{s['mean_area']:.4g} {unit}²" if s["mean_area"] is not None else f"{s['mean_area_px']:.1f} px")
            print(f"{src.name} ({stage}): {s['count']} grains ({s['inside']} inside, {s['border']} cut by the border), "
                  f"mean area {area}, mean diameter {s['mean_diameter']:.4g} {s['unit']}{g}")
        stem = src.stem + ("_denoised" if net is not None else "")
        if args.labels:
            lab_dest = out.file(Path(args.labels) if len(args.images) == 1 else src.with_name(stem + "_grains.tif"))
            write_tiff(lab_dest, final["labels"], pixel_size_nm=None if px is None else px * UNIT_TO_MM[unit] * 1e6,
                       metadata={"source": str(src), "grains": final["summary"]}, overwrite=True)
            print(f"{src} -> {lab_dest} (grain labels)")
        _write_tables(args, out, src, stem + "_grains", grains_csv(final["grains"]), doc, f"per grain of the {final_stage} image")
    return 0


def _write_tables(args, out, src: Path, stem: str, csv_text: str, doc: dict, what: str) -> None:
    """``denoise grains``: the CSV table (``--csv`` or ``<stem>.csv`` beside the image) and, with ``--json``,
    the summaries."""
    from .._paths import atomic_write_text

    one = len(args.images) == 1
    dest = out.file(Path(args.csv) if args.csv and one else src.with_name(stem + ".csv"))
    atomic_write_text(dest, csv_text)
    print(f"{src} -> {dest} ({what})")
    if args.json:
        jdest = out.file(Path(args.json) if one else src.with_name(stem + ".json"))
        _write_json(jdest, doc)
        print(f"{src} -> {jdest}")


def _grain_fields(args, out, net) -> int:
    """``denoise grains --fields N``: ASTM E112 fields of N px, read one at a time (any size, Zarr stores)."""
    from ..io import open_lazy

    if args.labels:
        raise InputError("--labels is not written with --fields (a field-by-field measurement keeps no label image).")
    for im in args.images:
        src = Path(im)
        if not src.exists():
            raise InputError(f"file not found: {src}")
        if not _fields_of(args, out, src, open_lazy(src), net, args.pixel_size, args.unit, args.fields):
            return 1
    return 0


def _fields_of(args, out, src: Path, source, net, px, unit, field: int) -> bool:
    """The fields of one image (opened once: ``source``, lazy or in memory) and, with ``net``, of its
    denoised image: a line per stage, the per-field table of the last; False when cancelled."""
    from .fields import fields_csv, measure_fields_iter

    doc = {"source": str(src), "field_px": field, "results": {}}
    last = None
    for stage, model in [("input", None)] + ([("denoised", net)] if net is not None else []):
        res = _drive(measure_fields_iter(source, field, pixel_size=px, unit=unit, max_fields=args.max_fields,
                                         model=model, device=args.device), f"{src.name} ({stage})", "field")
        if res is None:
            return False
        s = res["summary"]
        na = s["grains_per_area"]
        doc["results"][stage] = {"summary": s, "fields": res["fields"]}
        g = (f"ASTM E112 G {s['astm_g']:.2f}" if s["astm_g"] is not None else "ASTM G: no pixel size")
        ci = (f", N_A {na['mean']:.4g} ± {na['ci95']:.2g} {na['unit']} (95 %), relative accuracy "
              f"{na['ra_percent']:.1f} %" if na["ci95"] is not None else "")
        gl = f", G intercept {s['astm_g_intercept']:.2f}" if s["astm_g_intercept"] is not None else ""
        print(f"{src.name} ({stage}): {s['measured']} of {s['fields']} fields of {s['field_px']} px, "
              f"{s['method']} rule: {g}{gl}{ci}")
        last = (stage, res)
    stage, res = last
    stem = src.stem + ("_denoised" if stage == "denoised" else "")
    _write_tables(args, out, src, stem + "_fields", fields_csv(res["fields"]), doc, f"per field of the {stage} image")
    return True


# --------------------------------------------------------------------------------------------- evaluate
def _cmd_evaluate(args) -> int:
    from .testset import evaluate_iter, make_test_set

    _threads(args)
    out = _outputs(args, [args.real, args.model if args.model not in ("default", "none") else None])
    json_path = out.file(args.json) if args.json else None
    pairs = make_test_set(args.real, n_per_real=args.n, seed=args.seed, shape=args.shape)
    baselines = "all" if args.baselines == "all" else ([] if args.baselines == "none" else args.baselines.split(","))
    model = None if args.model == "none" else args.model
    res = _drive(evaluate_iter(pairs, model, baselines, calibrate=not args.no_calibrate, device=args.device), "evaluate", "run")
    print(res["table"])
    if json_path:
        cmd = (f"matrestore denoise evaluate --real {' '.join(map(str, args.real))} --model {args.model} --n {args.n} "
               f"--shape {args.shape} --seed {args.seed} --baselines {args.baselines}" + (" --no-calibrate" if args.no_calibrate else ""))
        doc = {"command": cmd, "real": [str(r) for r in args.real],
               "n_per_real": args.n, "shape": args.shape, "seed": args.seed, "model": args.model, **res}
        _write_json(json_path, doc)
        print(f"wrote {json_path}")
    return 0


def add_subparser(subparsers) -> argparse.ArgumentParser:
    from .._cli_store import add_store_options
    from .._paths import add_overwrite_option
    from .baselines import BASELINES
    from .model import PRESETS

    d = subparsers.add_parser("denoise", help="optical micrograph denoising: synthetic pairs, training, apply, evaluate")
    sub = d.add_subparsers(dest="denoise_command", required=True)

    s = sub.add_parser("synth", help="write synthetic noisy/clean pairs (phase field + a real micrograph's spectrum)")
    s.add_argument("--real", nargs="+", required=True, help="real optical micrograph(s): magnitude spectrum and histogram")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--n", type=int, default=4, help="structures (each combined with every real micrograph; default 4)")
    s.add_argument("--shape", type=int, default=256, help="side of the pairs in px (default 256)")
    s.add_argument("--grains", type=int, default=60, help="Voronoi grains at the start (default 60)")
    s.add_argument("--steps", type=int, default=500, help="phase-field steps (default 500)")
    s.add_argument("--boundary-width", type=int, default=0, help="dark etched boundaries in the ground truth, px (default 0)")
    s.add_argument("--mix", type=float, default=1.0, help="1 = the real magnitude spectrum (paper); < 1 blends")
    s.add_argument("--no-histogram", action="store_true", help="skip the histogram matching to the real micrograph")
    s.add_argument("--seed", type=int, default=0)
    add_overwrite_option(s)
    s.set_defaults(func=_cmd_synth)

    t = sub.add_parser("train", help="train a denoiser on pairs synthesised on the fly from real micrographs")
    t.add_argument("--real", nargs="+", required=True, help="real optical micrograph(s) (texture sources)")
    t.add_argument("--out", required=True, help="run folder: checkpoint.pt, best/last.safetensors, log.jsonl")
    t.add_argument("--preset", choices=list(PRESETS), default=None, help="network size (default cpu)")
    t.add_argument("--epochs", type=int, default=None)
    t.add_argument("--steps-per-epoch", type=int, default=None)
    t.add_argument("--batch-size", type=int, default=None)
    t.add_argument("--patch", type=int, default=None, help="training crop side in px (default 128)")
    t.add_argument("--structures", type=int, default=None, help="phase-field structures in the pool (default 48)")
    t.add_argument("--val-structures", type=int, default=None)
    t.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 1e-4, the paper's)")
    t.add_argument("--schedule", choices=["constant", "cosine"], default=None)
    t.add_argument("--boundary-weight", type=float, default=None, help="extra loss weight near true boundaries (default 0)")
    t.add_argument("--feats", type=int, default=None, help="network width (overrides the preset)")
    t.add_argument("--n-blocks", type=int, default=None, help="residual attention blocks (overrides the preset)")
    t.add_argument("--dropout", type=float, default=None)
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--init", default=None, help="fine-tune this model file ('default': the shipped model)")
    t.add_argument("--deepen", type=int, default=None, metavar="N",
                   help="with --init: deepen the base model to N residual attention blocks first (its own kept, "
                        "near-identity new ones between them; 12 from the default = the cpu-deep preset)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    t.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:1, mps")
    t.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    add_overwrite_option(t)
    t.set_defaults(func=_cmd_train)

    a = sub.add_parser("apply", help="denoise micrograph file(s)")
    a.add_argument("images", nargs="+", help="image file(s) (TIFF, PNG, JPEG), or one Zarr / OME-Zarr store folder")
    a.add_argument("--out", default=None, help="output file (one image) or folder; default <image>_denoised.tif; or an "
                                               "OME-Zarr store (a name ending in .zarr: one image, computed block by "
                                               "block, out of core, resumable)")
    a.add_argument("--model", default="default", help="model file, 'default' (the bundled model) or 'etched' (the "
                                                      "bundled model for bright-field etched steels)")
    a.add_argument("--baseline", choices=list(BASELINES), default=None, help="run a classical method instead of the network")
    a.add_argument("--no-calibrate", action="store_true", help="baselines: rule-of-thumb parameters, no calibration")
    a.add_argument("--no-histogram", action="store_true", help="skip matching the result's histogram to the input's")
    a.add_argument("--tile", type=int, default=1024, help="tile side in px (0: whole image; default 1024)")
    a.add_argument("--halo", type=int, default=None, help="tile halo in px (default: the receptive radius: exact)")
    a.add_argument("--batch", type=int, default=1, help="tiles per batch (default 1)")
    a.add_argument("--device", default=None)
    a.add_argument("--threads", type=int, default=None)
    add_store_options(a, unit="px")
    add_overwrite_option(a)
    a.set_defaults(func=_cmd_apply)

    g = sub.add_parser("grains", help="segment grains and measure them (counts, sizes, ASTM E112 grain size number)")
    g.add_argument("images", nargs="+", help="micrograph file(s) (with --fields also Zarr stores), already denoised "
                                             "or with --denoise")
    g.add_argument("--denoise", action="store_true", help="denoise with the network first (the input is measured too)")
    g.add_argument("--model", default="default", help="--denoise: model file, 'default' or 'etched' (bundled)")
    g.add_argument("--pixel-size", type=float, default=None, help="pixel size (default: from the file, else none: "
                                                                    "sizes in px and no ASTM number)")
    g.add_argument("--unit", choices=["nm", "um", "mm"], default=None, help="unit of --pixel-size (required with it)")
    g.add_argument("--csv", default=None, help="per-grain table (default <image>[_denoised]_grains.csv)")
    g.add_argument("--labels", default=None, help="also write the grain labels as a TIFF here (several images: "
                                                  "<image>_grains.tif beside each, give any name)")
    g.add_argument("--json", default=None, help="also write the summaries as JSON")
    g.add_argument("--fields", type=int, default=None, metavar="PX",
                   help="measure ASTM E112 fields of PX px one at a time (any image size, TIFF or Zarr store) and "
                        "report the mean with its 95 %% confidence interval; the CSV is then per field")
    g.add_argument("--max-fields", type=int, default=None, help="--fields: at most this many, spread evenly")
    g.add_argument("--device", default=None)
    g.add_argument("--threads", type=int, default=None)
    add_overwrite_option(g)
    g.set_defaults(func=_cmd_grains)

    e = sub.add_parser("evaluate", help="network vs every classical baseline on a synthetic test set")
    e.add_argument("--real", nargs="+", required=True, help="real micrograph(s) for the test spectra (use ones the model never saw)")
    e.add_argument("--model", default="default", help="model file, 'default', or 'none' (baselines only)")
    e.add_argument("--n", type=int, default=6, help="test images per real micrograph (default 6)")
    e.add_argument("--shape", type=int, default=256, help="test image side in px (default 256)")
    e.add_argument("--seed", type=int, default=10_000_000, help="test-set seed (default: far from training seeds)")
    e.add_argument("--baselines", default="all", help="'all' (default), 'none' or a comma list, e.g. nl_means,tv")
    e.add_argument("--no-calibrate", action="store_true", help="baselines: rule-of-thumb parameters")
    e.add_argument("--json", default=None, help="also write the table and every figure as JSON")
    e.add_argument("--device", default=None)
    e.add_argument("--threads", type=int, default=None)
    add_overwrite_option(e)
    e.set_defaults(func=_cmd_evaluate)
    return d
