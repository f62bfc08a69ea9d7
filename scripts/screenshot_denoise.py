"""Screenshots of the two denoising widgets on the NIST optical micrograph of etched steel, for docs/denoise.md.

Run under a (virtual) X server::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshot_denoise.py

1. ``docs/images/denoise_widget.png``: "Denoise: apply" on ``optical/nistgsat__grain_structures_steel.tif``
   of the shared data (NIST Software Licensing Statement: free use with acknowledgement of NIST;
   0.2252 µm/px, from the NIST repository's readme), denoised with the bundled default model and, beside
   it ("compare with"), with bilateral filtering — the best classical baseline of the default model's
   evaluation (docs/model_denoise_default.md) — calibrated on the image itself. Grid mode shows the
   input, the network's result and the baseline side by side.
2. ``docs/images/denoise_grains.png``: the grain measurement after a second run with the bundled
   etched-steel model ("use the bundled etched-steel model") — its result with the outlines of its grains
   (``steel_grains``) and the widget's grain table (input, network, bilateral; ASTM E112 numbers from the
   layer's 0.2252 µm pixels).
4. ``docs/images/denoise_store_grains.png``: a 2400 × 3200 px Zarr-backed mosaic of the same micrograph
   denoised into an OME-Zarr store, the grains of the input and of the result measured field by field
   (ASTM E112 fields of 1024 px, 95 % confidence interval).
3. ``docs/images/denoise_train_widget.png``: "Denoise: synthetic data and training" with a sample pair
   made from the same micrograph (its magnitude spectrum and histogram): the ground truth with its grain
   labels, and the noisy input with its artefact masks.

The widgets show their default options (a throw-away settings file, not the user's remembered ones).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _shot import isolate_settings, run_to_end, save, settle  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NIST = ROOT.parent / "shared" / "data" / "optical" / "nistgsat__grain_structures_steel.tif"
UM_PER_PX = 0.2252  # the NIST repository's readme: 222 px = 50 µm


def _viewer(title):
    import napari

    viewer = napari.Viewer(show=True, title=title)
    viewer.window._qt_window.resize(1560, 960)
    return viewer


def _add_micrograph(viewer, image: Path):
    from matrestore import io

    data, _ = io.read_image(image)
    layer = viewer.add_image(data, name="steel", scale=(UM_PER_PX, UM_PER_PX), colormap="gray")
    try:
        layer.units = ("um", "um")
    except Exception:  # noqa: BLE001 - the scale bar then says px
        pass
    return layer


def _save_small(viewer, out: Path) -> Path:
    """The window screenshot, re-encoded with a 256-colour palette (grey micrographs and a grey UI: no
    visible loss) to keep the docs light (< 400 KB)."""
    from PIL import Image

    save(viewer, out)
    Image.open(out).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KB)")
    return out


def apply_shot(image: Path, out: Path) -> Path:
    from matrestore._widgets.denoise import DenoiseWidget

    viewer = _viewer("matrestore - denoise")
    _add_micrograph(viewer, image)
    viewer.scale_bar.visible = True
    w = DenoiseWidget(viewer)
    viewer.window.add_dock_widget(w, name="Denoise: apply", area="right")
    w.input_combo.setCurrentText("steel")
    w.set_model("default")
    w.set_method("network", beside="bilateral")
    took = run_to_end(w, "denoising", 900)
    print(f"denoised in {took:.1f} s: {w.status.text()}")
    grains = viewer.layers["steel_grains"]
    grains.visible = False  # the grid shows the three images; the grains get their own shot
    viewer.grid.enabled = True  # left to right in layer-list order: steel, steel_denoised, steel_bilateral
    viewer.grid.shape = (2, 2)  # input and network on top, the baseline below: larger than one row of three
    viewer.layers.selection.active = viewer.layers["steel_denoised"]
    viewer.reset_view()
    settle()
    _save_small(viewer, out)
    # the grain measurement with the etched-steel model: its result under the outlines of its grains
    w.etched_button.click()
    took = run_to_end(w, "denoising with the etched-steel model", 900)
    print(f"denoised again in {took:.1f} s: {w.status.text()}")
    viewer.grid.enabled = False
    for name in ("steel", "steel_bilateral"):
        viewer.layers[name].visible = False
    grains.visible = True
    viewer.layers.selection.active = grains
    viewer.reset_view()
    settle()
    _save_small(viewer, out.with_name("denoise_grains.png"))
    viewer.close()
    return out


def store_shot(image: Path, out: Path) -> Path:
    """A mosaic-sized Zarr-backed layer (the micrograph mirrored 4 × 4: 2400 × 3200 px) denoised into a store,
    its grains measured field by field (ASTM E112 fields of 1024 px)."""
    import tempfile

    import numpy as np
    import zarr

    from matrestore import io
    from matrestore._widgets.denoise import DenoiseWidget

    data, _ = io.read_image(image)
    rows = np.concatenate([data, data[::-1]] * 2, 0)
    mosaic = np.concatenate([rows, rows[:, ::-1]] * 2, 1)
    tmp = Path(tempfile.mkdtemp())
    z = zarr.open(str(tmp / "mosaic.zarr"), mode="w", shape=mosaic.shape, chunks=(1024, 1024), dtype=mosaic.dtype)
    z[:] = mosaic
    viewer = _viewer("matrestore - denoise into a store")
    layer = viewer.add_image(z, name="mosaic", scale=(UM_PER_PX, UM_PER_PX), colormap="gray",
                             contrast_limits=(float(mosaic.min()), float(mosaic.max())))
    layer.units = ("um", "um")
    viewer.scale_bar.visible = True
    w = DenoiseWidget(viewer)
    viewer.window.add_dock_widget(w, name="Denoise: apply", area="right")
    w.input_combo.setCurrentText("mosaic")
    w.set_model("default")
    w.store_part.path.setText(str(tmp / "mosaic_denoised.zarr"))
    took = run_to_end(w, "denoising into a store", 900)
    print(f"denoised and measured in {took:.1f} s: {w.status.text()}")
    layer.visible = False
    viewer.reset_view()
    settle()
    _save_small(viewer, out)
    viewer.close()
    return out


def train_shot(image: Path, out: Path) -> Path:
    from matrestore._widgets.denoise_train import DenoiseTrainWidget

    viewer = _viewer("matrestore - denoise: synthetic data and training")
    _add_micrograph(viewer, image)
    viewer.scale_bar.visible = True
    w = DenoiseTrainWidget(viewer)
    viewer.window.add_dock_widget(w, name="Denoise: synthetic data and training", area="right")
    w.synth_form.set_value("size", 384)
    w.synth_form.set_value("n_grains", 120)
    w.synth_form.set_value("seed", 4)
    w.make_pair()
    from qtpy.QtWidgets import QApplication
    import time

    from matrestore._widgets._worker import State

    t0 = time.time()
    while w.runner.state is State.RUNNING and time.time() - t0 < 300:
        QApplication.processEvents()
        time.sleep(0.02)
    if w.runner.state is not State.DONE:
        raise SystemExit(f"sample pair failed: {w.status.text()}")
    print(w.status.text())
    viewer.layers["steel"].visible = False  # the pair fills the canvas; the micrograph is the texture source
    viewer.layers.selection.active = viewer.layers["synth_noisy"]
    viewer.reset_view()
    (y0, x0), (y1, x1) = w.pair_extent()
    viewer.camera.center = ((y0 + y1) / 2, (x0 + x1) / 2)
    viewer.camera.zoom = 0.92 * min(760 / (y1 - y0), 660 / (x1 - x0))  # canvas px per world unit
    settle()
    _save_small(viewer, out)
    viewer.close()
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", type=Path, default=NIST)
    ap.add_argument("--out-dir", type=Path, default=ROOT / "docs" / "images")
    ap.add_argument("--only", choices=["apply", "train", "store"], default=None)
    args = ap.parse_args(argv)
    if not args.image.is_file():
        raise SystemExit(f"micrograph not found: {args.image} (the shared data)")
    isolate_settings()
    import torch

    torch.set_num_threads(1)
    if args.only in (None, "apply"):
        apply_shot(args.image, args.out_dir / "denoise_widget.png")
    if args.only in (None, "train"):
        train_shot(args.image, args.out_dir / "denoise_train_widget.png")
    if args.only in (None, "store"):
        store_shot(args.image, args.out_dir / "denoise_store_grains.png")


if __name__ == "__main__":
    main()
