"""Command line: ``matrestore compare | demo | sr ...`` — thin argument parsing over the engine."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__
from ._paths import MARK, WRITTEN_BY, Outputs, add_overwrite_option, atomic_write_text
from .io import read_single_image
from ._validate import InputError


def _json_number(v):
    v = float(v)
    return v if v == v and abs(v) != float("inf") else None  # NaN/inf are not JSON


def compare_files(hr_paths, lr_paths=None, scale=4, noise=None, seed=0, out_dir=None, outputs: Outputs | None = None):
    """Run the baseline comparison on files; returns the compare JSON document (see README).

    With ``out_dir``, the LR input and every upsampled image are written there as calibrated TIFFs
    (never over an input, nor over a file matrestore did not write unless ``outputs`` allows it).
    """
    from . import io
    from .evaluation import evaluate_baselines
    from .metrics import summarize

    if lr_paths and len(lr_paths) != len(hr_paths):
        raise InputError(f"--lr needs one file per --hr file ({len(lr_paths)} given for {len(hr_paths)}).")
    outputs = outputs or Outputs(inputs=[hr_paths, lr_paths])
    folder = outputs.folder(out_dir) if out_dir is not None else None
    images, per_image = [], []
    for i, hr_path in enumerate(hr_paths):
        hr, meta = read_single_image(hr_path)
        lr = read_single_image(lr_paths[i])[0] if lr_paths else None
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
        if folder is not None:
            px = meta.get("pixel_size")
            io.write_tiff(outputs.in_folder(folder, f"{name}_lr.tif"), res["lr"],
                          pixel_size_nm=None if px is None else px * scale)
            for method, img in res["images"].items():
                io.write_tiff(outputs.in_folder(folder, f"{name}_{method}.tif"), img, pixel_size_nm=px)
    summary = summarize(per_image)
    summary = {m: {k: {kk: (_json_number(vv) if kk != "n" else vv) for kk, vv in d.items()} for k, d in s.items()} for m, s in summary.items()}
    return {"scale": scale, "images": images, "summary": summary}


def _cmd_compare(args) -> int:
    outputs = Outputs(inputs=[args.hr, args.lr], overwrite=args.overwrite)
    json_path = outputs.file(args.json, "--json file") if args.json else None
    doc = compare_files(args.hr, args.lr, scale=args.scale, noise=args.noise, seed=args.seed, out_dir=args.out_dir,
                        outputs=outputs)
    report_compare(doc, json_path)
    return 0


def report_compare(doc: dict, json_path=None) -> None:
    """Print a compare document (per-image tables, then the set summary) and write it as JSON
    (``json_path`` already checked by :class:`~matrestore._paths.Outputs`)."""
    from .evaluation import format_summary, format_table

    for img in doc["images"]:
        print(f"\n{img['name']}  {img['shape'][0]}×{img['shape'][1]} px, scale {doc['scale']}, data range {img['data_range']:g}")
        print(format_table(img["metrics"]))
    if len(doc["images"]) > 1:
        print()
        print(format_summary(doc["summary"]))
    if json_path:
        atomic_write_text(json_path, json.dumps({**doc, WRITTEN_BY: MARK}, indent=2))
        print(f"\nwrote {json_path}")


def _cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(out_dir=args.out, scale=args.scale, model=None if args.no_model else args.model, overwrite=args.overwrite)
    return 0


def _unit_and_scale(meta):
    px = meta.get("pixel_size")
    return ("nm", (px, px)) if px else ("px", (1.0, 1.0))


def _cmd_ser(args) -> int:
    from . import ser

    if args.ser_command == "propose":
        outputs = Outputs(inputs=[args.image], overwrite=args.overwrite)
        out = args.out or str(Path(args.image).with_suffix("")) + "_rois"
        json_out, csv_out = outputs.file(out + ".json"), outputs.file(out + ".csv")
        img, meta = read_single_image(args.image)
        rois = ser.propose_rois(img, percentile=args.percentile, min_size=args.min_size, margin=args.margin,
                                mode=args.mode, max_rois=args.max_rois)
        unit, scale = _unit_and_scale(meta)
        recs = ser.rois_to_records(rois, scale=scale, unit=unit, stage_origin_um=tuple(args.stage_origin))
        frac = ser.area_fraction(rois, img.shape)
        print(f"{len(rois)} region(s) of interest covering {100 * frac:.1f} % of the field; "
              f"t_SER/t_HR = {ser.time_ratio(frac, args.scale):.3f} at scale {args.scale}")
        for r in recs:
            print(f"  #{r['id']}: rows {r['row0']}-{r['row1']}, cols {r['col0']}-{r['col1']}")
        ser.write_rois_json(json_out, recs, image=str(args.image), area_fraction=frac, unit="um")
        ser.write_rois_csv(csv_out, recs)
        print(f"wrote {out}.json and {out}.csv")
    elif args.ser_command == "export":
        out = Outputs(inputs=[args.rois], overwrite=args.overwrite).file(args.out)
        rois = ser.read_rois_json(args.rois)
        recs = ser.rois_to_records(rois, scale=(args.pixel_size, args.pixel_size), unit=args.unit,
                                   stage_origin_um=tuple(args.stage_origin))
        ser.write_rois_csv(out, recs)
        print(f"wrote {len(recs)} ROI(s) to {args.out}")
    elif args.ser_command == "register":
        img, _ = read_single_image(args.image)
        patch, _ = read_single_image(args.rescan)
        reg = ser.register(img, patch, search=args.search, guess=tuple(args.guess))
        print(json.dumps({"row": reg.row, "col": reg.col, "ssim": reg.ssim, "correlation": reg.correlation,
                          "confident": reg.confident}))
        if not reg.confident:
            print(f"matrestore: warning: {reg.describe()}.", file=sys.stderr)
    return 0


def _cmd_prefer_reader(args) -> int:
    from ._reader import PATTERNS, prefer_matrestore_reader

    prefs = prefer_matrestore_reader(undo=args.undo)
    if args.undo:
        print("napari no longer prefers matrestore for " + ", ".join(PATTERNS) + "; remaining preferences: "
              + (", ".join(f"{k} → {v}" for k, v in prefs.items()) or "none"))
    else:
        print("napari now opens " + ", ".join(PATTERNS) + " with matrestore (drag-and-drop, File > Open and "
              "viewer.open). Undo with `matrestore prefer-reader --undo`, or in napari's Preferences > Plugins.")
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
    add_overwrite_option(c)
    c.set_defaults(func=_cmd_compare)

    d = sub.add_parser("demo", help="run the main job on the bundled SEM sample")
    d.add_argument("--out", default="demo_output", help="output folder (default ./demo_output)")
    d.add_argument("--scale", type=int, default=4, help="integer scale factor (default 4)")
    d.add_argument("--model", default="default", help="SR model file (default: the bundled model)")
    d.add_argument("--no-model", action="store_true", help="baselines only (nearest, bicubic, Lanczos)")
    add_overwrite_option(d)
    d.set_defaults(func=_cmd_demo)

    pr = sub.add_parser("prefer-reader", help="make matrestore napari's reader for TIFF/PNG/JPEG micrographs")
    pr.add_argument("--undo", action="store_true", help="remove that preference again")
    pr.set_defaults(func=_cmd_prefer_reader)

    e = sub.add_parser("ser", help="scan-enhance-rescan: propose, export and register regions of interest")
    esub = e.add_subparsers(dest="ser_command", required=True)
    ep = esub.add_parser("propose", help="propose ROIs on a score image (uncertainty map, or image with dark voids)")
    ep.add_argument("image", help="score image: an uncertainty map (--mode high) or the enhanced image (--mode low)")
    ep.add_argument("--mode", choices=["high", "low"], default="high", help="ROIs where the score is high or low")
    ep.add_argument("--percentile", type=float, default=95.0, help="threshold percentile (default 95)")
    ep.add_argument("--min-size", type=int, default=16, help="minimum region side in px (default 16)")
    ep.add_argument("--margin", type=int, default=8, help="margin added around each region in px (default 8)")
    ep.add_argument("--max-rois", type=int, default=50, help="at most this many ROIs (default 50)")
    ep.add_argument("--scale", type=int, default=4, help="scale factor LR -> HR for the time estimate")
    ep.add_argument("--stage-origin", type=float, nargs=2, default=(0.0, 0.0), metavar=("X_UM", "Y_UM"))
    ep.add_argument("--out", help="output path without extension (default <image>_rois)")
    add_overwrite_option(ep)
    ex = esub.add_parser("export", help="ROI JSON -> CSV with physical coordinates")
    ex.add_argument("rois", help="ROI JSON written by 'propose' (or the widget)")
    ex.add_argument("--pixel-size", type=float, required=True, help="pixel size of the image the ROIs refer to")
    ex.add_argument("--unit", default="nm", choices=["nm", "um", "mm"], help="unit of --pixel-size")
    ex.add_argument("--stage-origin", type=float, nargs=2, default=(0.0, 0.0), metavar=("X_UM", "Y_UM"))
    ex.add_argument("--out", required=True, help="CSV file to write")
    add_overwrite_option(ex)
    er = esub.add_parser("register", help="find where an HR rescan lies in the enhanced image")
    er.add_argument("image", help="enhanced image")
    er.add_argument("rescan", help="HR rescan of a region (same pixel size)")
    er.add_argument("--search", type=int, default=None, help="search ±px around --guess (default: whole image)")
    er.add_argument("--guess", type=int, nargs=2, default=(0, 0), metavar=("ROW", "COL"))
    e.set_defaults(func=_cmd_ser)

    import importlib

    for task in ("sr", "denoise", "labdct"):  # each workflow registers its own sub-command
        try:
            task_cli = importlib.import_module(f".{task}.cli", __package__)
        except ModuleNotFoundError as exc:  # a workflow that is not built (yet)
            if exc.name not in (f"{__package__}.{task}", f"{__package__}.{task}.cli"):
                raise
            continue
        task_cli.add_subparser(sub)
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
