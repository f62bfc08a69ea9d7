"""Screenshot of the Train / fine-tune widget on a real SEM micrograph, for docs/train.md.

Run under a (virtual) X server::

    xvfb-run -a .venv/bin/python scripts/screenshot_train.py [--out docs/images/train.png]

The nanoporous-gold SEM sample (``matrestore._samples.sem_sample``, 691×1024 px of 0.543 nm) is the HR
training image; its LR version is made by the widget (4× area average). The bundled default model
(``src/matrestore/sr/models/default.safetensors``, when installed; else a new ``tiny`` network) is
fine-tuned for a few short epochs (cells of 64 LR px, 3 steps of 4 patches per epoch: about a minute on
one CPU thread), enough to show the epoch/step progress, the loss plot with the start of the second
phase, the validation table and the three preview layers. The run folder is temporary.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _shot import isolate_settings, run_to_end, save, settle  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "train.png")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    isolate_settings()

    import napari
    import torch

    from matrestore import _samples
    from matrestore._widgets.train import TrainWidget
    from matrestore.sr.modelio import DEFAULT_MODEL

    torch.set_num_threads(args.threads)
    (hr, kw, _), = _samples.sem_sample()
    px = float(kw["scale"][-1])
    unit = kw["metadata"]["unit"]

    viewer = napari.Viewer(show=True, title="matrestore - train / fine-tune")
    viewer.window._qt_window.resize(1600, 1180)
    layer = viewer.add_image(hr, name="sem_hr", scale=(px, px), metadata=dict(kw["metadata"]), colormap="gray")
    layer.units = (unit, unit)
    viewer.scale_bar.visible = True

    w = TrainWidget(viewer)
    viewer.window.add_dock_widget(w, name="Super-resolution: train / fine-tune", area="right")
    if DEFAULT_MODEL.is_file():
        w.set_base("default")
        print("base: the bundled default model")
    else:
        w.set_base("new", preset="tiny")
        print("base: NEW tiny network (no default model installed)")
    w.set_hr_layers(["sem_hr"])
    w.epochs_spin.setValue(args.epochs)
    w.steps_spin.setValue(args.steps)
    w.adv_toggle.setChecked(True)
    w.batch_spin.setValue(4)
    w.patch_spin.setValue(24)
    w.cell_spin.setValue(64)
    secs = run_to_end(w, "training", 900)
    w.adv_toggle.setChecked(False)
    viewer.reset_view()
    settle()
    save(viewer, args.out)
    print(f"wrote {args.out} after {secs:.0f} s of training")
    print(w.status.text())
    print(w.validation_text())
    viewer.close()
    return args.out


if __name__ == "__main__":
    main()
