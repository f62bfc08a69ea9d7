"""``matrestore sr train | enhance | evaluate``: thin argument parsing over the SR engine.

``matrestore.cli`` calls :func:`add_subparser` to register the ``sr`` command.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from .._cli_store import add_store_options
from .._paths import Outputs, add_overwrite_option
from ..io import read_single_image
from .._validate import InputError

__all__ = ["add_subparser", "evaluate_files", "enhance_file"]


def _json_number(v):
    v = float(v)
    return v if v == v and abs(v) != float("inf") else None


def _tqdm(total, desc):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="tile", leave=False, file=sys.stderr, disable=None)


def _enhance_with_bar(lr, refs, model, args, desc, ref_features=None):
    from .enhance import enhance

    bar = None

    def progress(rec):
        nonlocal bar
        if rec.get("total"):
            if bar is None:
                bar = _tqdm(rec["total"], desc)
            bar.n = rec["step"]
            bar.refresh()
        elif rec.get("message") and "out of memory" in rec["message"]:
            print(f"matrestore: {rec['message']}", file=sys.stderr)

    try:
        return enhance(lr, refs, model, tile=args.tile, batch=args.batch, device=args.device, progress=progress,
                       mode=args.mode, halo=args.halo, top_k=args.top_k, ref_features=ref_features)
    finally:
        if bar is not None:
            bar.close()


def _prepare(args):
    import torch

    from ..device import describe, pick_device
    from .modelio import resolve_model
    from .references import RefFeatures, load_references

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    model = resolve_model(args.model)
    dev = pick_device(args.device)
    model.to(dev).eval()
    bank = load_references(args.refs, crop=model.cfg.ref_crop, scale=model.scale)
    print(f"model {args.model} ({model.cfg.preset} preset), {len(bank)} reference crop(s), {describe(dev)}", file=sys.stderr)
    with torch.no_grad():
        feats = RefFeatures(model, bank, dev)
    return model, bank, feats


def enhance_file(args) -> Path:
    from .. import io

    import numpy as np

    outputs = Outputs(inputs=[args.lr, args.refs, args.model], overwrite=args.overwrite)
    out = outputs.file(args.out if args.out else Path(args.lr).with_name(Path(args.lr).stem + "_sr.tif"))
    lr, meta = read_single_image(args.lr)
    model, bank, feats = _prepare(args)
    sr = _enhance_with_bar(lr, bank, model, args, Path(args.lr).name, feats)
    if sr is None:
        raise KeyboardInterrupt
    if not args.float and np.issubdtype(lr.dtype, np.integer):
        sr = np.clip(np.rint(sr), np.iinfo(lr.dtype).min, np.iinfo(lr.dtype).max).astype(lr.dtype)
    px = meta.get("pixel_size")
    io.write_tiff(out, sr, pixel_size_nm=None if px is None else px / model.scale,
                  metadata={"source": str(args.lr), "sr_model": str(args.model), "sr_scale": model.scale, "sr_mode": args.mode,
                            "references": bank.sources})
    print(f"wrote {out} ({sr.shape[0]}×{sr.shape[1]} px" + (f", {px / model.scale:g} nm/px)" if px else ")"))
    return out


def evaluate_files(args, outputs: Outputs | None = None) -> dict:
    """Compare the SR model with nearest/bicubic/Lanczos on HR files; returns the compare JSON document."""
    from .. import io
    from ..evaluation import check_not_constant, evaluate_baselines
    from ..metrics import summarize

    if args.lr and len(args.lr) != len(args.hr):
        raise InputError(f"--lr needs one file per --hr file ({len(args.lr)} given for {len(args.hr)}).")
    outputs = outputs or Outputs(inputs=[args.hr, args.lr, args.refs, args.model], overwrite=args.overwrite)
    folder = outputs.folder(args.out_dir) if args.out_dir else None
    model, bank, feats = _prepare(args)
    s = model.scale
    ref_images = _reference_images(args.refs)
    images, per_image = [], []
    for i, hr_path in enumerate(args.hr):
        hr, meta = read_single_image(hr_path)
        check_not_constant(hr, f"ground truth {Path(hr_path).name}")  # before the long part
        _warn_overlaps(hr, hr_path, ref_images)
        if args.lr:
            lr = read_single_image(args.lr[i])[0]
        else:
            from ..degrade import crop_to_multiple, downsample

            lr = downsample(crop_to_multiple(hr, s), s)
        sr = _enhance_with_bar(lr, bank, model, args, Path(hr_path).name, feats)
        if sr is None:
            raise KeyboardInterrupt
        res = evaluate_baselines(hr, lr=lr, scale=s, extra={"ttsr": sr})
        name = Path(hr_path).stem
        images.append({
            "name": name,
            "path": str(hr_path),
            "shape": list(res["hr"].shape),
            "pixel_size_nm": meta.get("pixel_size"),
            "data_range": res["data_range"],
            "metrics": {m: {k: _json_number(v) for k, v in d.items()} for m, d in res["metrics"].items()},
        })
        per_image.append(res["metrics"])
        if folder is not None:
            io.write_tiff(outputs.in_folder(folder, f"{name}_ttsr.tif"), sr, pixel_size_nm=meta.get("pixel_size"))
    summary = summarize(per_image)
    summary = {m: {k: {kk: (_json_number(vv) if kk != "n" else vv) for kk, vv in d.items()} for k, d in v.items()} for m, v in summary.items()}
    return {"scale": s, "model": str(args.model), "references": bank.sources, "mode": args.mode, "images": images, "summary": summary}


def _reference_images(refs) -> dict:
    """``{name: array}`` of the reference files (for the ground-truth overlap check)."""
    from .references import _expand_sources

    out = {}
    for i, src in enumerate(_expand_sources(refs)):
        if isinstance(src, Path):
            out[src.name] = read_image_any(src)
        else:
            out[f"array{i}"] = np.asarray(src)
    return out


def read_image_any(path):
    from ..io import read_image

    return read_image(path)[0]


def _warn_overlaps(hr, hr_path, ref_images: dict) -> None:
    """Warn when a reference shows the field being scored: the score would be flattered."""
    from ..evaluation import find_overlaps

    hits = find_overlaps(hr, ref_images)
    for name, corr in hits:
        what = "is the ground truth" if corr > 0.9999 and ref_images[name].shape == np.shape(hr) else \
            "overlaps the ground truth"
        print(f"matrestore: warning: reference {name} {what} {Path(hr_path).name} (correlation {corr:.3f}): the "
              "network can copy the answer from it, so these figures flatter the model. Use references of "
              "other fields.", file=sys.stderr)


def _wants_store(args) -> bool:
    """The out-of-core path: an OME-Zarr output, a Zarr input, or a block/scheduler option."""
    from .._cli_store import wants_store

    return wants_store(args.out, args.lr, args.chunk, args.scheduler)


def enhance_store(args) -> Path:
    """``sr enhance`` into an OME-Zarr store, block by block (:func:`matrestore.sr.enhance_to_zarr_iter`)."""
    from .._cli_store import run_store, store_path
    from .lazy import enhance_to_zarr_iter

    if args.mode != "fast":
        raise InputError("--mode paper is not available for Zarr outputs (blocks need the fast mode's tile grid).")
    src = Path(args.lr)
    out = store_path(src, args.out, "sr")
    gen = enhance_to_zarr_iter(src, out, args.refs, args.model, chunk=args.chunk, scheduler=args.scheduler,
                               workers=args.workers, overwrite=args.overwrite, tile=args.tile, halo=args.halo,
                               batch=args.batch, top_k=args.top_k, device=args.device,
                               out_dtype="float32" if args.float else "input")
    return run_store(gen, src.name, threads=getattr(args, "threads", None))


def _cmd_enhance(args) -> int:
    if _wants_store(args):
        enhance_store(args)
    else:
        enhance_file(args)
    return 0


def _cmd_evaluate(args) -> int:
    from ..cli import report_compare

    outputs = Outputs(inputs=[args.hr, args.lr, args.refs, args.model], overwrite=args.overwrite)
    json_path = outputs.file(args.json, "--json file") if args.json else None
    report_compare(evaluate_files(args, outputs), json_path)
    return 0


def _cmd_train(args) -> int:
    from tqdm import tqdm

    from .train import train

    Outputs(inputs=[args.hr, args.lr, args.refs, args.init]).folder(args.out, "--out run folder")
    pairs = None
    hr = args.hr
    if args.lr:
        if len(args.lr) != len(args.hr):
            raise InputError(f"--lr needs one file per --hr file ({len(args.lr)} given for {len(args.hr)}).")
        pairs, hr = list(zip(args.lr, args.hr)), None
    opts = {k: v for k, v in {
        "preset": args.preset, "epochs": args.epochs, "steps_per_epoch": args.steps, "batch_size": args.batch,
        "patch": args.patch, "cell": args.cell, "lr_min": args.lr_min, "lr_max": args.lr_max, "seed": args.seed,
        "noise": args.noise, "adv_from": args.adv_from,
    }.items() if v is not None}
    if args.weights:
        parts = [float(x) for x in args.weights.split(",")]
        if len(parts) != 4:
            raise InputError("--weights takes four numbers: rec,per,tper,adv (e.g. 1,1e-2,1e-2,1e-3).")
        opts["weights"] = dict(zip(("rec", "per", "tper", "adv"), parts))
    bar = None
    result = None
    gen = train(hr, pairs, out_dir=args.out, references=args.refs, init=args.init, resume=args.resume, device=args.device,
                threads=args.threads, vgg_weights=args.vgg_weights, **opts)
    try:
        for rec in gen:
            kind = rec["kind"]
            if kind == "step":
                if bar is None:
                    bar = tqdm(total=rec["total"], initial=rec["step"] - 1, desc="training", unit="step", file=sys.stderr, disable=None)
                bar.update(1)
                bar.set_postfix({k: f"{v:.4f}" for k, v in rec["losses"].items() if k in ("rec", "total")})
            elif kind == "epoch" and rec["val"]:
                v = rec["val"]
                msg = (f"epoch {rec['epoch']}: PSNR {v['ttsr']['psnr']:.2f} dB (bicubic {v['bicubic']['psnr']:.2f}), "
                       f"SSIM {v['ttsr']['ssim']:.4f} ({v['bicubic']['ssim']:.4f}), ESSIM {v['ttsr']['essim']:.4f} "
                       f"({v['bicubic']['essim']:.4f}){' *best*' if rec['best'] else ''}")
                (bar.write if bar is not None else print)(msg)
            elif kind in ("setup",):
                print(rec["message"], file=sys.stderr)
            elif kind in ("done", "stopped"):
                result = rec
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        print(f"matrestore: stopped; resume with --resume (checkpoint in {args.out})", file=sys.stderr)
        return 130
    if bar is not None:
        bar.close()
    if result:
        print(f"best model: {result['best']}\nlast model: {result['last']}\ncheckpoint: {result['checkpoint']}")
    return 0


def _add_inference_options(p):
    p.add_argument("--refs", nargs="+", required=True, help="HR reference image files and/or folders")
    p.add_argument("--model", default="default", help="model file (.safetensors) or 'default'")
    p.add_argument("--mode", choices=["fast", "paper"], default="fast",
                   help="stitching: fast (large tiles + halo, equals whole-image inference) or paper (32 px tiles, central 62.5%%)")
    p.add_argument("--tile", type=int, default=None, help="tile side in LR px, margin included (default by mode/device)")
    p.add_argument("--halo", type=int, default=None, help="fast mode: discarded margin in LR px (default: receptive radius + 2)")
    p.add_argument("--batch", type=int, default=None, help="tiles per batch (halved automatically on out-of-memory)")
    p.add_argument("--top-k", type=int, default=None, help="references searched per image/tile (default: the model's)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: best available)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")


def add_subparser(subparsers) -> argparse.ArgumentParser:
    """Register ``sr`` with sub-commands ``train``, ``enhance`` and ``evaluate`` on an argparse sub-parser set."""
    sr = subparsers.add_parser("sr", help="reference-based super-resolution (TTSR): train, enhance, evaluate")
    ssub = sr.add_subparsers(dest="sr_command", required=True)

    t = ssub.add_parser("train", help="train or fine-tune a model on HR images (or LR/HR pairs)")
    t.add_argument("--hr", nargs="+", required=True, help="HR training images and/or folders")
    t.add_argument("--lr", nargs="+", help="matching real LR images (pairs, realigned per cell); default: made by area averaging")
    t.add_argument("--refs", nargs="+", help="reference images/folders (default: crops of the training cells)")
    t.add_argument("--out", default="runs/sr", help="output folder: best/last model, checkpoint, log (default runs/sr)")
    t.add_argument("--preset", choices=["tiny", "cpu", "paper"], default=None, help="architecture (default cpu)")
    t.add_argument("--init", help="model file to fine-tune")
    t.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    t.add_argument("--epochs", type=int, default=None)
    t.add_argument("--steps", type=int, default=None, help="steps per epoch")
    t.add_argument("--batch", type=int, default=None, help="patches per step (default 8)")
    t.add_argument("--patch", type=int, default=None, help="LR patch size (default 32; HR 128)")
    t.add_argument("--cell", type=int, default=None, help="LR size of the 80/10/10 split cells (default 64)")
    t.add_argument("--lr-min", type=float, default=None, help="cyclic learning rate: lower bound (default 1e-4)")
    t.add_argument("--lr-max", type=float, default=None, help="cyclic learning rate: upper bound (default 5e-4)")
    t.add_argument("--weights", help="loss weights rec,per,tper,adv (default 1,1e-2,1e-2,1e-3)")
    t.add_argument("--adv-from", type=float, default=None, help="fraction of epochs with reconstruction loss only (0.5)")
    t.add_argument("--noise", type=float, default=None, help="Gaussian noise added to made LR images (fraction of range)")
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--vgg-weights", help="local torchvision VGG19 ImageNet weights (vgg19-dcbb9e9d.pth)")
    t.add_argument("--device", default=None)
    t.add_argument("--threads", type=int, default=None)
    t.set_defaults(func=_cmd_train)

    e = ssub.add_parser("enhance", help="super-resolve an LR micrograph")
    e.add_argument("lr", help="LR image: a file (TIFF, PNG, JPEG) or a Zarr / OME-Zarr store folder")
    e.add_argument("--out", help="output TIFF (default <lr>_sr.tif), or an OME-Zarr store (a name ending in .zarr: "
                                 "computed block by block, out of core, resumable); pixel size divided by the scale")
    e.add_argument("--float", action="store_true", help="write float32 instead of the input's integer type")
    add_store_options(e, unit="LR px")
    _add_inference_options(e)
    add_overwrite_option(e)
    e.set_defaults(func=_cmd_enhance)

    v = ssub.add_parser("evaluate", help="compare the model with nearest/bicubic/Lanczos on HR ground truth")
    v.add_argument("--hr", nargs="+", required=True, help="HR ground-truth files")
    v.add_argument("--lr", nargs="+", help="matching LR files (default: made by area averaging)")
    v.add_argument("--json", help="write per-image metrics and the summary (compare schema) to this file")
    v.add_argument("--out-dir", help="write the SR images as calibrated TIFFs into this folder")
    _add_inference_options(v)
    add_overwrite_option(v)
    v.set_defaults(func=_cmd_evaluate)
    return sr
