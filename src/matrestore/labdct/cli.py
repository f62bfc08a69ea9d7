"""``matrestore labdct simulate | background | train | clean | routine | evaluate``.

Thin argument parsing over the engine. Outputs follow :class:`matrestore._paths.Outputs`: never an
input, never a file matrestore did not write unless ``--overwrite``, always written to a temporary file
and renamed. Stacks are read lazily (a folder of numbered TIFFs or a multi-page TIFF) and written frame
by frame, so peak memory stays at a few frames for ``clean`` and ``routine``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from .._paths import Outputs, add_overwrite_option, atomic_write_text
from .._validate import InputError

__all__ = ["add_subparser", "StackWriter"]


class StackWriter:
    """Multi-page TIFF written frame by frame to a temporary file, renamed into place on ``close()``;
    the first page carries matrestore's mark (so a rerun may replace it)."""

    def __init__(self, path: Path, metadata: dict | None = None):
        import tifffile

        from ..io import MATRESTORE_TAG

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.part{os.getpid()}")
        self._w = tifffile.TiffWriter(str(self.tmp), bigtiff=False)
        self._tag = (MATRESTORE_TAG, "s", 0, json.dumps({"writer": "matrestore", "metadata": metadata or {}}), True)
        self._first = True
        self.n = 0

    def write(self, frame: np.ndarray):
        # one series (every page alike, the mark on each): tifffile.imread / io.read_stack read all frames
        self._w.write(np.asarray(frame), photometric="minisblack", contiguous=True, extratags=[self._tag])
        self._first = False
        self.n += 1

    def close(self):
        self._w.close()
        os.replace(self.tmp, self.path)

    def abort(self):
        try:
            self._w.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def _drive(gen, desc="frames"):
    """Run a generator of progress records with a tqdm bar (:func:`matrestore._cli_progress.drive_with_bar`)."""
    from .._cli_progress import drive_with_bar

    return drive_with_bar(gen, desc, "frame")


def _stack(path, args, min_frames=1):
    from .stack import FrameStack

    omegas = None
    if getattr(args, "omega_start", None) is not None:
        omegas = "range"
    st = FrameStack(path, geometry_file=getattr(args, "geometry", None))
    if omegas == "range":
        st.omegas = [args.omega_start + args.omega_step * k for k in range(len(st))]
    if len(st) < min_frames:
        raise InputError(f"{path}: {len(st)} frame(s), at least {min_frames} needed.")
    return st


def _beamstop_arg(text):
    if text is None or text == "auto":
        return "auto"
    if text.lower() in ("none", "no", "off"):
        return None
    try:
        vals = [int(v) for v in text.split(",")]
    except ValueError:
        raise InputError(f"--beamstop must be 'auto', 'none' or row0,row1,col0,col1; got {text!r}.") from None
    if len(vals) != 4:
        raise InputError(f"--beamstop must be 'auto', 'none' or row0,row1,col0,col1; got {text!r}.")
    return tuple(vals)


# ------------------------------------------------------------------------------------------ commands
def _cmd_simulate(args) -> int:
    from .background import extract_background, ground_truth
    from .data import GT_FRAC
    from .geometry import IRON_GEOMETRY, read_geometry_m
    from .simulate import SampleConfig, simulate_iter

    outs = Outputs(inputs=[args.background, args.geometry], overwrite=args.overwrite)
    out = outs.file(args.output)
    if args.geometry:
        geo, _ = read_geometry_m(args.geometry)
    else:
        geo = IRON_GEOMETRY
    from dataclasses import replace

    changes = {k: v for k, v in (("lss", args.lss), ("lsd", args.lsd), ("pixel_mm", args.pixel)) if v is not None}
    if args.size:
        changes.update(shape=(args.size, args.size), centre=None, beamstop=None)
    if args.no_beamstop:
        changes["beamstop"] = None
    geo = replace(geo, **changes) if changes else geo
    geo.check()
    smp = SampleConfig(material=args.material, grain_size_mm=args.grain_size / 1000.0, diameter_mm=args.diameter,
                       height_mm=args.height, seed=args.seed)
    res = _drive(simulate_iter(args.frames, step_deg=args.step, start_deg=args.start, geometry=geo, sample=smp), "projections")
    spots = res.spots
    peaks = spots[spots > 0]
    rng = np.random.default_rng(args.seed)
    scale = args.brightness * args.i0 / max(float(np.quantile(peaks, 0.999)) if peaks.size else 1.0, 1e-12)
    spots = spots * scale
    if args.background:
        from .stack import FrameStack

        bg = extract_background(FrameStack(args.background))
        if bg.shape[1:] != spots.shape[1:]:
            raise InputError(f"background frames are {bg.shape[1:]}, the simulated detector {spots.shape[1:]}; "
                             "use --geometry/--size to match them.")
    else:
        bg = np.ones((1,) + spots.shape[1:], np.float32)
    from .background import synthesize

    truth_path = out.with_name(out.stem + "_truth.tif")
    clean_path = out.with_name(out.stem + "_spots.tif")
    outs.file(truth_path)
    outs.file(clean_path)
    meta = {"omegas": [float(w) for w in res.omegas], "geometry": geo.to_dict(), "sample": res.sample,
            "i0": args.i0, "tau": args.tau, "brightness": args.brightness}
    w_in, w_tr, w_sp = StackWriter(out, meta), StackWriter(truth_path, meta), StackWriter(clean_path, meta)
    try:
        for k in range(len(spots)):
            w_in.write(synthesize(spots[k], bg[k % len(bg)], args.i0, args.tau, rng))
            w_tr.write(ground_truth(spots[k], GT_FRAC * args.i0).astype(np.uint8) * 255)
            w_sp.write(spots[k].astype(np.float32))
    except BaseException:
        for w in (w_in, w_tr, w_sp):
            w.abort()
        raise
    for w in (w_in, w_tr, w_sp):
        w.close()
    print(f"wrote {out} (inputs), {truth_path} (ground truth 0/255), {clean_path} (noise-free spots); "
          f"{res.sample['grains']} grains, {len(spots)} projections")
    return 0


def _cmd_background(args) -> int:
    from .background import extract_background_iter

    outs = Outputs(inputs=[args.stack], overwrite=args.overwrite)
    out = outs.file(args.output)
    st = _stack(args.stack, args)
    bg = _drive(extract_background_iter(st, window=args.window, grow=args.grow), "frames")
    w = StackWriter(out, {"what": "normalised background I_BG (appendix A)", "window": args.window})
    try:
        for f in bg:
            w.write(f.astype(np.float32))
    except BaseException:
        w.abort()
        raise
    w.close()
    print(f"wrote {out}: {len(bg)} background frames in [0, 1]")
    return 0


def _read_backgrounds(path, args):
    """I_BG frames: a stack already in [0, 1] (from ``labdct background``) is used as it is; any other
    stack is treated as real projections and its background extracted."""
    from .background import extract_background
    from .stack import FrameStack

    st = FrameStack(path)
    first = st[0]
    if float(first.max()) <= 1.0 + 1e-6 and float(first.min()) >= 0:
        return np.stack([st[k] for k in range(len(st))])
    print(f"matrestore: extracting backgrounds from the {len(st)} frames of {path}", file=sys.stderr)
    return extract_background(st)


def _cmd_train(args) -> int:
    import torch

    from .train import TrainConfig, train

    if args.threads:
        torch.set_num_threads(args.threads)
    outs = Outputs(inputs=[args.backgrounds], overwrite=args.overwrite)
    out_dir = outs.folder(args.out)
    ck = out_dir / "checkpoint.pt"
    if ck.exists() and not args.resume and not args.overwrite:
        raise InputError(f"{out_dir} already holds a training run (checkpoint.pt); pass --resume to continue it, "
                         "--overwrite to start over, or choose another --out.")
    bg = _read_backgrounds(args.backgrounds, args)
    cfg = TrainConfig(preset=args.preset, steps=args.steps, batch=args.batch, lr=args.lr, val_every=args.val_every,
                      scenes=args.scenes, scene_frames=args.scene_frames, seed=args.seed, threads=args.threads,
                      vgg16_weights=args.vgg16_weights, encoder_weights=args.encoder_weights)
    overrides = {}
    if args.neighbours is not None:
        overrides["neighbours"] = args.neighbours
    if args.loss:
        overrides["loss"] = args.loss
    gen = train(bg, out_dir, config=cfg, resume=args.resume, model_overrides=overrides)
    last = 0.0
    try:
        while True:
            try:
                rec = next(gen)
            except StopIteration as stop:
                print(f"best model: {stop.value}")
                return 0
            k = str(rec["kind"])
            if k in ("setup", "phase", "done", "stopped"):
                print(f"matrestore: {rec.get('message', '')}", file=sys.stderr)
            elif k == "epoch":
                v = rec["val"]
                print(f"step {rec['step']}/{rec['total']}: validation loss {v['loss']:.4f}, spot F1 {v['f1']:.3f} "
                      f"(threshold {v['best_threshold']:.3g}){' best' if rec.get('best') else ''}", file=sys.stderr)
            elif k == "step" and time.time() - last > 30:
                last = time.time()
                print(f"step {rec['step']}/{rec['total']} loss {rec['losses']['loss']:.4f}", file=sys.stderr)
    except KeyboardInterrupt:
        print("matrestore: interrupted; the last checkpoint (every --val-every steps) resumes with --resume", file=sys.stderr)
        return 130


def _cmd_clean(args) -> int:
    import torch

    from .infer import clean_iter, segment, spot_table, write_spot_csv
    from .modelio import resolve_model
    from .routine import stack_beamstop

    if args.threads:
        torch.set_num_threads(args.threads)
    from .._cli_store import is_store_name

    if is_store_name(args.output) or args.chunk or args.scheduler:
        return _clean_to_store(args)
    outs = Outputs(inputs=[args.stack, args.model if args.model != "default" else None], overwrite=args.overwrite)
    out = outs.file(args.output)
    masks_path = outs.file(args.masks) if args.masks else None
    table_path = outs.file(args.table) if args.table else None
    model = resolve_model(args.model)
    st = _stack(args.stack, args)
    w = StackWriter(out, {"what": "cleaned LabDCT frames (network output in [0, 1])", "model": str(args.model)})
    wm = StackWriter(masks_path, {"what": f"spot masks (cleaned >= {args.threshold:.4g}), 0/255"}) if masks_path else None
    rows = []
    bs = _beamstop_arg(args.beamstop) if args.beamstop else None
    bs_mask = stack_beamstop(st, bs) if bs is not None else None
    if isinstance(bs, str) and bs_mask is None:
        print("matrestore: warning: no beam-stop shadow found in the stack; nothing is excluded from the masks",
              file=sys.stderr)

    def sink(k, frame):
        w.write(frame.astype(np.float32))
        if wm is not None or table_path is not None:
            m = segment(frame, args.threshold, beamstop=bs_mask)
            if wm is not None:
                wm.write(m.astype(np.uint8) * 255)
            if table_path is not None:
                for r in spot_table(m[None], st[k][None], omegas=None if st.omegas is None else [st.omegas[k]]):
                    r["frame"] = k
                    rows.append(r)

    try:
        _drive(clean_iter(st, model, tile=args.tile, margin=args.margin, device=args.device, sink=sink), "frames")
    except BaseException:
        w.abort()
        if wm is not None:
            wm.abort()
        raise
    w.close()
    if wm is not None:
        wm.close()
    if table_path is not None:
        import io

        buf = io.StringIO()
        write_spot_csv(rows, buf)
        atomic_write_text(table_path, buf.getvalue())
    print(f"wrote {out}" + (f", {masks_path}" if masks_path else "") + (f", {table_path} ({len(rows)} spots)" if table_path else ""))
    return 0


def _store_table(table_path, store, st) -> None:
    """The spot table (CSV at ``table_path``, if any) of a store's masks against the raw stack ``st``."""
    if table_path is None:
        return
    import io

    from .infer import write_spot_csv
    from .lazy import store_spot_table

    rows = store_spot_table(store, st)
    buf = io.StringIO()
    write_spot_csv(rows, buf)
    atomic_write_text(table_path, buf.getvalue())
    print(f"wrote {table_path} ({len(rows)} spots)")


def _clean_to_store(args) -> int:
    """``labdct clean STACK --out cleaned.zarr [--chunk FRAMES] [--scheduler ADDR]``: frame blocks into a
    resumable OME-Zarr store (cleaned frames at ``0``, spot masks at ``labels/spots``)."""
    from .._cli_store import run_store, store_path
    from .lazy import clean_to_zarr_iter

    if args.masks:
        raise InputError("--masks: with a Zarr output the spot masks are written into the store (labels/spots); "
                         "leave --masks out.")
    path = store_path(args.stack, args.output, "cleaned")
    outs = Outputs(inputs=[args.stack, args.model if args.model != "default" else None], overwrite=args.overwrite)
    table_path = outs.file(args.table) if args.table else None
    st = _stack(args.stack, args)
    gen = clean_to_zarr_iter(st, path, args.model, chunk=args.chunk, threshold=args.threshold, scheduler=args.scheduler,
                             workers=args.workers, overwrite=args.overwrite, tile=args.tile, margin=args.margin,
                             device=args.device, beamstop=_beamstop_arg(args.beamstop) if args.beamstop else None)
    result = run_store(gen, "blocks")
    _store_table(table_path, result, st)
    return 0


def _cmd_routine(args) -> int:
    from .infer import spot_table, write_spot_csv
    from .routine import RoutineOptions, standard_routine_iter

    opts = RoutineOptions(window=args.window, beamstop=_beamstop_arg(args.beamstop), background=args.background,
                          background_in_sigma=args.background_in_sigma, sigma=args.sigma, percent=args.percent,
                          min_size=args.min_size).check()
    from .._cli_store import is_store_name

    if is_store_name(args.output) or args.chunk or args.scheduler:
        return _routine_to_store(args, opts)
    outs = Outputs(inputs=[args.stack], overwrite=args.overwrite)
    out = outs.file(args.output)
    table_path = outs.file(args.table) if args.table else None
    st = _stack(args.stack, args)
    if len(st) < args.window:
        raise InputError(f"{args.stack}: {len(st)} frame(s), fewer than the rolling-median window of {args.window}; "
                         "use a smaller --window or more frames.")

    masks = np.zeros((len(st),) + st.shape, bool)  # 1 byte per pixel (a 181 x 1024² stack: 190 MB)
    _drive(standard_routine_iter(st, **opts.kwargs(), out=masks), "frames")
    w = StackWriter(out, {"what": "spot masks of the standard routine, 0/255",
                          "params": {"window": args.window, "background": args.background, "sigma": args.sigma,
                                     "percent": args.percent, "min_size": args.min_size}})
    try:
        for m in masks:
            w.write(m.astype(np.uint8) * 255)
    except BaseException:
        w.abort()
        raise
    w.close()
    if table_path is not None:
        import io

        buf = io.StringIO()
        write_spot_csv(spot_table(masks, st), buf)
        atomic_write_text(table_path, buf.getvalue())
    print(f"wrote {out}" + (f" and {table_path}" if table_path else "") + f": {int(masks.any(axis=(1, 2)).sum())} frames with spots")
    return 0


def _routine_to_store(args, opts) -> int:
    """``labdct routine STACK --out routine.zarr [--chunk FRAMES] [--scheduler ADDR]``: the median-subtracted
    frames block by block into a resumable OME-Zarr store, the LoG masks inside at ``labels/spots``."""
    from .._cli_store import run_store, store_path
    from .lazy import routine_to_zarr_iter

    path = store_path(args.stack, args.output, "routine")
    outs = Outputs(inputs=[args.stack], overwrite=args.overwrite)
    table_path = outs.file(args.table) if args.table else None
    st = _stack(args.stack, args)
    gen = routine_to_zarr_iter(st, path, **opts.kwargs(), chunk=args.chunk, scheduler=args.scheduler,
                               workers=args.workers, overwrite=args.overwrite)
    result = run_store(gen, "blocks")
    _store_table(table_path, result, st)
    return 0


def _cmd_evaluate(args) -> int:
    import torch

    from .evaluate import evaluate_real, evaluate_synthetic, format_report

    if args.threads:
        torch.set_num_threads(args.threads)
    outs = Outputs(inputs=[args.iron, args.model if args.model not in ("default", "none") else None], overwrite=args.overwrite)
    json_path = outs.file(args.json) if args.json else None
    iron = Path(args.iron)
    if not iron.is_dir():
        raise InputError(f"--iron {iron}: not a folder of the 40 iron frames.")
    model = None if args.model == "none" else args.model
    if model is not None:
        from .modelio import resolve_model

        model = resolve_model(model)
    say = lambda m: print(f"matrestore: {m}", file=sys.stderr)  # noqa: E731
    doc = {"written_by": "matrestore", "command": "labdct evaluate"}
    doc["synthetic"] = evaluate_synthetic(model, iron_folder=iron, n_frames=args.frames, tune_frames=args.tune_frames, tune_use=args.tune_use,
                                          seed=args.seed, i0=args.i0, brightness=args.brightness, tune=not args.no_tune,
                                          progress=say)
    if model is not None and not args.no_real:
        say("real iron frames 29-40")
        tuned = doc["synthetic"]["methods"].get("routine_tuned", {}).get("params")
        doc["real"] = evaluate_real(model, iron)
        if tuned:
            doc["real_tuned_routine"] = evaluate_real(model, iron, routine_params=tuned)["mean"]
    print(format_report(doc))
    if json_path:
        atomic_write_text(json_path, json.dumps(doc, indent=2, default=float))
        print(f"wrote {json_path}")
    return 0


# ------------------------------------------------------------------------------------------ parser
def _stack_options(p):
    p.add_argument("--geometry", help="LabDCT input_main.m: rotation angles from rot_start/rot_step and the frame numbers")
    p.add_argument("--omega-start", type=float, default=None, help="ω of the first frame (degrees), with --omega-step")
    p.add_argument("--omega-step", type=float, default=-3.0, help="ω step between frames (degrees; default -3)")


def add_subparser(subparsers) -> None:
    p = subparsers.add_parser("labdct", help="LabDCT spot cleaning: simulate, background, train, clean, routine, evaluate")
    sub = p.add_subparsers(dest="labdct_command", required=True)

    s = sub.add_parser("simulate", help="forward-simulate a projection stack (inputs, ground truth, noise-free spots)")
    s.add_argument("-o", "--output", required=True, help="multi-page TIFF of the inputs (+ _truth.tif, _spots.tif)")
    s.add_argument("--frames", type=int, default=36)
    s.add_argument("--step", type=float, default=3.0, help="ω step in degrees (default 3)")
    s.add_argument("--start", type=float, default=0.0)
    s.add_argument("--material", choices=["Fe", "Al"], default="Fe")
    s.add_argument("--grain-size", type=float, default=120.0, help="mean grain size in µm (default 120)")
    s.add_argument("--diameter", type=float, default=1.0, help="sample diameter in mm")
    s.add_argument("--height", type=float, default=1.0, help="sample height in mm")
    s.add_argument("--geometry", help="input_main.m geometry (default: the iron frames' geometry)")
    s.add_argument("--lss", type=float, help="source-sample distance (mm)")
    s.add_argument("--lsd", type=float, help="sample-detector distance (mm)")
    s.add_argument("--pixel", type=float, help="effective (binned) pixel size in mm")
    s.add_argument("--size", type=int, help="square detector of this many pixels (no beam stop)")
    s.add_argument("--no-beamstop", action="store_true")
    s.add_argument("--background", help="real stack whose extracted background is added (eqs. 1-2); default flat")
    s.add_argument("--i0", type=float, default=110.0, help="background level I0 (default 110, the paper's)")
    s.add_argument("--tau", type=float, default=1.0, help="Poisson noise factor τ (default 1)")
    s.add_argument("--brightness", type=float, default=1.0, help="brightest spots' level in units of I0")
    s.add_argument("--seed", type=int, default=0)
    add_overwrite_option(s)
    s.set_defaults(func=_cmd_simulate)

    b = sub.add_parser("background", help="normalised background I_BG of a real stack (appendix A)")
    b.add_argument("stack", help="folder of numbered TIFFs or a multi-page TIFF")
    b.add_argument("-o", "--output", required=True)
    b.add_argument("--window", type=int, default=60, help="rolling-median window (default 60; all frames if fewer)")
    b.add_argument("--grow", type=int, default=4, help="spot-mask growth in px (default 4)")
    _stack_options(b)
    add_overwrite_option(b)
    b.set_defaults(func=_cmd_background)

    t = sub.add_parser("train", help="train a spot-cleaning network on simulated spots + real backgrounds")
    t.add_argument("--backgrounds", required=True, help="real training frames (or their I_BG from 'labdct background')")
    t.add_argument("--out", default="runs/labdct", help="output folder (models, checkpoint.pt)")
    t.add_argument("--preset", choices=["tiny", "cpu", "paper"], default="cpu")
    t.add_argument("--steps", type=int, default=7000)
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--val-every", type=int, default=500)
    t.add_argument("--scenes", type=int, default=12)
    t.add_argument("--scene-frames", type=int, default=10)
    t.add_argument("--neighbours", type=int, choices=[0, 1], default=None, help="0: the frame alone; 1: with its two neighbours")
    t.add_argument("--loss", choices=["bce_dice", "perceptual"], default=None)
    t.add_argument("--vgg16-weights", help="local torchvision VGG16 file for the perceptual loss")
    t.add_argument("--encoder-weights", help="local torchvision ResNet34 file (preset paper)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=None)
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    add_overwrite_option(t)
    t.set_defaults(func=_cmd_train)

    c = sub.add_parser("clean", help="clean a stack with the network (+ spot masks and table)")
    c.add_argument("stack", help="folder of numbered TIFFs or a multi-page TIFF")
    c.add_argument("-o", "--output", "--out", dest="output", required=True,
                   help="multi-page TIFF of the cleaned frames (float32, 0-1), or an OME-Zarr store (a name ending in "
                        ".zarr: frame blocks, resumable, spot masks inside at labels/spots)")
    c.add_argument("--model", default="default")
    c.add_argument("--masks", help="also write the spot masks (0/255 multi-page TIFF)")
    c.add_argument("--table", help="also write the spot table (CSV)")
    c.add_argument("--threshold", type=float, default=5.0 / 255.0, help="segmentation threshold (default 5/255)")
    c.add_argument("--beamstop", default=None,
                   help="exclude from the masks and table: row0,row1,col0,col1, or 'auto' (the shadow in the median of "
                        "11 evenly spread frames, as the routine finds it); default: nothing")
    c.add_argument("--tile", type=int, default=1024)
    c.add_argument("--margin", type=int, default=128)
    c.add_argument("--device", default=None)
    c.add_argument("--threads", type=int, default=None)
    from .._cli_store import add_store_options

    add_store_options(c, unit="frames")
    for a in c._actions:
        if a.dest == "chunk":
            a.help = "Zarr output: frames per block (default 8; each block also reads its neighbour frames)"
    _stack_options(c)
    add_overwrite_option(c)
    c.set_defaults(func=_cmd_clean)

    r = sub.add_parser("routine", help="standard routine: rolling median + LoG segmentation -> spot masks")
    r.add_argument("stack", help="folder of numbered TIFFs or a multi-page TIFF")
    r.add_argument("-o", "--output", "--out", dest="output", required=True,
                   help="multi-page TIFF of the masks (0/255), or an OME-Zarr store (a name ending in .zarr: the "
                        "median-subtracted frames block by block, resumable, the masks inside at labels/spots)")
    r.add_argument("--table", help="also write the spot table (CSV)")
    r.add_argument("--window", type=int, default=11, help="rolling-median window in projections (default 11)")
    r.add_argument("--background", type=float, default=0.0, help="background value subtracted before the LoG")
    r.add_argument("--background-in-sigma", action="store_true", help="--background in units of each frame's noise σ")
    r.add_argument("--sigma", type=float, default=1.0, help="Gaussian σ in px (default 1)")
    r.add_argument("--percent", type=float, default=50.0, help="percent of each component's maximum (default 50)")
    r.add_argument("--min-size", type=int, default=3, help="minimum spot size in px (default 3)")
    r.add_argument("--beamstop", default="auto", help="'auto' (find the shadow), 'none' or row0,row1,col0,col1")
    add_store_options(r, unit="frames")
    for a in r._actions:
        if a.dest == "chunk":
            a.help = "Zarr output: frames per block (default 8; each block also reads window//2 frames either side)"
    _stack_options(r)
    add_overwrite_option(r)
    r.set_defaults(func=_cmd_routine)

    e = sub.add_parser("evaluate", help="network vs standard routine on synthetic stacks with known spots + real frames")
    e.add_argument("--iron", required=True, help="folder of the 40 real iron frames (backgrounds: 1-28 train, 29-40 test)")
    e.add_argument("--model", default="default", help="model file, 'default', or 'none' (routine only)")
    e.add_argument("--frames", type=int, default=24, help="test-stack frames (default 24)")
    e.add_argument("--tune-frames", type=int, default=12, help="tuning-stack frames (default 12, at least the window)")
    e.add_argument("--tune-use", type=int, default=6, help="tuning frames scored in the grid search (default 6)")
    e.add_argument("--seed", type=int, default=1234)
    e.add_argument("--i0", type=float, default=110.0)
    e.add_argument("--brightness", type=float, default=1.0)
    e.add_argument("--no-tune", action="store_true")
    e.add_argument("--no-real", action="store_true")
    e.add_argument("--json", help="write the full results as JSON")
    e.add_argument("--threads", type=int, default=None)
    add_overwrite_option(e)
    e.set_defaults(func=_cmd_evaluate)
