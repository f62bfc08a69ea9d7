"""Command line: ``matrestore compare | demo | sr ...`` — thin argument parsing over the engine."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__
from ._validate import InputError


def _json_number(v):
    v = float(v)
    return v if v == v and abs(v) != float("inf") else None  # NaN/inf are not JSON


def compare_files(hr_paths, lr_paths=None, scale=4, noise=None, seed=0, out_dir=None):
    """Run the baseline comparison on files; returns the compare JSON document (see README).

    With ``out_dir``, the LR input and every upsampled image are written there as calibrated TIFFs.
    """
    from . import io
    from .evaluation import evaluate_baselines
    from .metrics import summarize

    if lr_paths and len(lr_paths) != len(hr_paths):
        raise InputError(f"--lr needs one file per --hr file ({len(lr_paths)} given for {len(hr_paths)}).")
    images, per_image = [], []
    for i, hr_path in enumerate(hr_paths):
        hr, meta = io.read_image(hr_path)
        lr = io.read_image(lr_paths[i])[0] if lr_paths else None
        res = evaluate_baselines(hr, lr=lr, scale=scale, noise=noise, seed=seed)
        name = Path(hr_path).stem
        images.append(
            {
                "name": name,
                "path": str(hr_path),
                "shape": list(res["hr"].shape),
                "pixel_size_nm": meta.get("pixel_size"),
                "databar_rows": meta.get("databar_rows", 0),
                "data_range": res["data_range"],
                "metrics": {m: {k: _json_number(v) for k, v in d.items()} for m, d in res["metrics"].items()},
            }
        )
        per_image.append(res["metrics"])
        if out_dir is not None:
            out = Path(out_dir)
            out.mkdir(parents=True, exist_ok=True)
            px = meta.get("pixel_size")
            io.write_tiff(out / f"{name}_lr.tif", res["lr"], pixel_size_nm=None if px is None else px * scale)
            for method, img in res["images"].items():
                io.write_tiff(out / f"{name}_{method}.tif", img, pixel_size_nm=px)
    summary = summarize(per_image)
    summary = {m: {k: {kk: (_json_number(vv) if kk != "n" else vv) for kk, vv in d.items()} for k, d in s.items()} for m, s in summary.items()}
    return {"scale": scale, "images": images, "summary": summary}


def _cmd_compare(args) -> int:
    from .evaluation import format_summary, format_table

    doc = compare_files(args.hr, args.lr, scale=args.scale, noise=args.noise, seed=args.seed, out_dir=args.out_dir)
    for img in doc["images"]:
        print(f"\n{img['name']}  {img['shape'][0]}×{img['shape'][1]} px, scale {args.scale}, data range {img['data_range']:g}")
        print(format_table(img["metrics"]))
    if len(doc["images"]) > 1:
        print()
        print(format_summary(doc["summary"]))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(doc, indent=2))
        print(f"\nwrote {args.json}")
    return 0


def _cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(out_dir=args.out, scale=args.scale)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="matrestore", description="Restore microscopy images (matrestore engine).")
    p.add_argument("--version", action="version", version=f"matrestore {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compare", help="compare nearest/bicubic/Lanczos upsampling with a ground truth")
    c.add_argument("--hr", nargs="+", required=True, help="high-resolution ground-truth image file(s)")
    c.add_argument("--lr", nargs="+", help="matching low-resolution file(s); default: made by area averaging")
    c.add_argument("--scale", type=int, default=4, help="integer scale factor (default 4)")
    c.add_argument("--noise", type=float, default=None, help="Gaussian noise added to the made LR, fraction of range")
    c.add_argument("--seed", type=int, default=0, help="seed of the noise (default 0)")
    c.add_argument("--json", help="write per-image metrics and the summary as JSON to this file")
    c.add_argument("--out-dir", help="write the LR and upsampled images as calibrated TIFFs into this folder")
    c.set_defaults(func=_cmd_compare)

    d = sub.add_parser("demo", help="run the main job on the bundled SEM sample")
    d.add_argument("--out", default="demo_output", help="output folder (default ./demo_output)")
    d.add_argument("--scale", type=int, default=4, help="integer scale factor (default 4)")
    d.set_defaults(func=_cmd_demo)

    try:
        from .sr import cli as sr_cli
    except ImportError:  # the SR engine is optional while it is being built
        sr_cli = None
    if sr_cli is not None and hasattr(sr_cli, "add_subparser"):
        sr_cli.add_subparser(sub)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        print(f"matrestore: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("matrestore: stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
