"""Screenshot of the Enhance (super-resolution) widget on a real SEM micrograph, for docs/enhance.md.

Run under a (virtual) X server::

    xvfb-run -a .venv/bin/python scripts/screenshot_enhance.py [--out docs/images/enhance_widget.png]

The micrograph is ``--image`` (default: ``openecci__steel_SEM_003.tif`` of the shared SEM data, one of
the images held out of the default model's training, see ``scripts/train_default.py``; without the
shared data: the packaged nanoporous-gold sample, which *was* among the training images, and the script
says so). It is split in two parts that do not overlap: a 384×384 crop on the left is degraded 4× with
``matrestore.degrade.downsample`` (the LR input, shown with its ×4 pixel size) and kept as the ground
truth; the right part of the image is the HR reference. So the network never sees the ground truth
through its references. The model is ``src/matrestore/sr/models/default.safetensors`` when it is
installed; otherwise an *untrained* tiny model (``sr.build_model("tiny", seed=0)``) is used and the
script says so (the numbers in the table are then those of an untrained network, close to bicubic).
The widget shows its default options (a throw-away settings file, not the user's remembered ones).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _shot import isolate_settings, run_to_end, save, settle  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HELD_OUT = ROOT.parent / "shared" / "data" / "sem" / "openecci__steel_SEM_003.tif"


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "enhance_widget.png")
    ap.add_argument("--image", type=Path, default=HELD_OUT if HELD_OUT.exists() else None,
                    help="SEM micrograph, at least 424 px high and 700 px wide (default: the held-out "
                         "openecci__steel_SEM_003.tif of the shared data, else the packaged sample)")
    args = ap.parse_args(argv)
    isolate_settings()

    import napari
    import numpy as np

    from matrestore import _samples, io
    from matrestore._layerdata import image_layer_tuple
    from matrestore._widgets.enhance import EnhanceWidget
    from matrestore._widgets.rescan import ROLE_KEY
    from matrestore.degrade import downsample
    from matrestore.sr.modelio import DEFAULT_MODEL

    s = 4
    if args.image is not None:
        data, meta = io.read_image(args.image)  # the instrument data bar is cropped here
        (hr, kw, _) = image_layer_tuple(data, meta, args.image.stem)
        print(f"image: {args.image.name} (held out of the default model's training)")
    else:
        (hr, kw, _), = _samples.sem_sample()  # 691×1024, 0.543 nm/px, data bar removed
        print("image: the packaged nanoporous-gold sample, one of the default model's TRAINING images")
    px = float(kw["scale"][-1])
    unit = kw["metadata"].get("unit", "px")
    n, x0 = 384, 40  # the crop to enhance (left part)
    y0 = max(0, min(150, hr.shape[0] - n))
    gt = np.ascontiguousarray(hr[y0 : y0 + n, x0 : x0 + n])
    lr = downsample(gt, s)  # 96×96, a 4× coarser scan of the crop
    rx0 = 560  # references: the right part only, no overlap with the crop (x0 + n = 424 < 560)
    ref = np.ascontiguousarray(hr[:, rx0:])

    model_path = "default"  # the bundled model (package data)
    print(f"model: bundled default ({DEFAULT_MODEL.name})")

    viewer = napari.Viewer(show=True, title="matrestore - super-resolution")
    viewer.window._qt_window.resize(1500, 1000)
    px_nm = kw["metadata"].get("pixel_size_nm")  # None for an uncalibrated image
    md = {"unit": unit, "pixel_size_nm": px_nm}
    viewer.add_image(ref, name="sem_reference", scale=(px, px), translate=(0.0, rx0 * px),
                     metadata={**md, ROLE_KEY: "reference"}, colormap="gray")
    viewer.add_image(gt, name="sem_ground_truth", scale=(px, px), translate=(y0 * px, x0 * px), metadata=dict(md),
                     colormap="gray", visible=False)
    # an LR pixel covers s×s HR pixels: its centre sits (s - 1)/2 HR pixels in
    viewer.add_image(lr, name="sem_lr", scale=(px * s, px * s),
                     translate=(y0 * px + px * (s - 1) / 2, x0 * px + px * (s - 1) / 2),
                     metadata={"unit": unit, "pixel_size_nm": None if px_nm is None else px_nm * s}, colormap="gray")
    for layer in viewer.layers:
        if unit != "px":
            layer.units = (unit, unit)
    viewer.scale_bar.visible = True

    w = EnhanceWidget(viewer)
    viewer.window.add_dock_widget(w, name="Super-resolution: enhance", area="right")
    w.input_combo.setCurrentText("sem_lr")
    w.gt_combo.setCurrentText("sem_ground_truth")
    w.set_model(model_path)
    w.adv_toggle.setChecked(True)
    run_to_end(w, "enhancing", 600)
    viewer.layers.selection.active = viewer.layers["sem_lr_sr"]
    viewer.reset_view()
    settle()
    save(viewer, args.out)
    print(f"wrote {args.out}")
    for name, vals in w.last_results["metrics"].items():
        print(f"{name:8s} " + "  ".join(f"{k}={v:.4f}" for k, v in vals.items()))
    viewer.close()
    return args.out


if __name__ == "__main__":
    main()
