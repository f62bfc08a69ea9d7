"""The Enhance widget's path against the engine's, on the same micrograph in the same run, plus how fast
cancel takes effect in each phase.

    xvfb-run -a python benchmarks/bench_enhance_widget.py            # 884x1024 steel micrograph as-is
    xvfb-run -a python benchmarks/bench_enhance_widget.py --crop 256 # quicker

Rows (all with the bundled default model, references = four other micrographs (256 crops)):
  engine       ``sr.enhance`` with its reference features computed beforehand (what benchmarks/bench_sr.py
               times), split into features and tiles;
  widget 1st   the Enhance dock widget in a napari viewer (worker thread, progress records every 0.5 s),
               first run: model load, reference reading, features, tiles;
  widget 2nd   the same widget again: features come from the cache (keyed by weights and pixels);
  cancel       seconds from Cancel to the widget's STOPPED state, pressed in the feature phase and in the
               middle of a tile.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("MATRESTORE_SHARED_DATA", "/work/shared/data")) / "sem"
REFS = ("openecci__steel_SEM_001.tif", "sem2surface__P33_scale1_detectorA.tif", "sem2surface__P33_scale2s3_detectorA.tif",
        "stabix__cpTi_post_polishing.tif")  # 4 x 64 crops


def _wait(app, w, timeout=3600):
    from matrestore._widgets._worker import State

    t0 = time.perf_counter()
    while w.runner.state not in (State.DONE, State.FAILED, State.STOPPED):
        app.processEvents()
        time.sleep(0.01)
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError
    return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--crop", type=int, default=0, help="crop the LR image to N x N (0: as-is)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from matrestore import io, sr
    from matrestore.sr.references import RefFeatures, clear_feature_cache, load_references

    lr = io.read_image(DATA / "openecci__steel_SEM_003.tif")[0]
    if args.crop:
        lr = np.ascontiguousarray(lr[: args.crop, : args.crop])
    refs = [io.read_image(DATA / n)[0] for n in REFS]
    print(f"LR {lr.shape[0]}×{lr.shape[1]} -> {4 * lr.shape[0]}×{4 * lr.shape[1]}, {args.threads} thread(s), "
          f"load average {os.getloadavg()[0]:.1f}")
    rows = []

    # engine, as bench_sr.py runs it (after a warm-up: torch's first calls pick their kernels)
    model = sr.load_model("default")
    sr.enhance(lr[:64, :64], [refs[0][:256, :256]], model)
    t0 = time.perf_counter()
    bank = load_references(refs, crop=model.cfg.ref_crop, scale=model.scale)
    feats = RefFeatures(model, bank, "cpu")
    t_feat = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = sr.enhance(lr, bank, model, ref_features=feats)
    t_tiles = time.perf_counter() - t0
    mp = out.size / 1e6
    rows.append(("engine (sr.enhance)", t_feat, t_tiles, t_feat + t_tiles))

    # the widget in napari
    import napari
    from qtpy.QtWidgets import QApplication

    clear_feature_cache()
    viewer = napari.Viewer(show=False)
    app = QApplication.instance()
    viewer.add_image(lr, name="lr", scale=(77.08, 77.08))
    for i, r in enumerate(refs):
        viewer.add_image(r, name=f"ref{i}", metadata={"matrestore_role": "reference"})
    _, w = viewer.window.add_plugin_dock_widget("napari-matrestore", "Super-resolution: enhance")
    w.input_combo.setCurrentText("lr")
    for run in ("widget 1st run", "widget 2nd run (cached features)"):
        phases: dict = {}
        t_start = time.perf_counter()

        def seen(rec, phases=phases, t_start=t_start):
            ph = rec.get("phase") if isinstance(rec, dict) else None
            if ph:
                phases.setdefault(ph, [time.perf_counter() - t_start, 0.0])[1] = time.perf_counter() - t_start

        w.run()
        w.runner.worker.yielded.connect(seen)
        total = _wait(app, w)
        f = phases.get("reference features", [0.0, 0.0])
        rows.append((run, f[1], total - f[1], total))
        assert np.allclose(np.asarray(viewer.layers["lr_sr"].data), out, atol=1e-3), "widget result differs"

    # cancel latency in each phase
    lat = {}
    for phase in ("reference features", "tiles"):
        clear_feature_cache()
        w.run()
        state = {"t": None}

        def on(rec, phase=phase, state=state):
            if isinstance(rec, dict) and rec.get("phase") == phase and state["t"] is None:
                if phase == "tiles" and not rec.get("fraction"):
                    return
                state["t"] = time.perf_counter()
                w.cancel()

        w.runner.worker.yielded.connect(on)
        _wait(app, w)
        lat[phase] = time.perf_counter() - state["t"] if state["t"] else float("nan")
    viewer.close()

    print(f"\n{'path':36s} {'features s':>10s} {'tiles s':>9s} {'total s':>9s} {'MP/s':>6s}")
    for name, a, b, c in rows:
        print(f"{name:36s} {a:10.1f} {b:9.1f} {c:9.1f} {mp / c:6.3f}")
    print(f"\ncancel → stopped: {lat['reference features']:.2f} s in the feature phase, "
          f"{lat['tiles']:.2f} s inside a tile")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
