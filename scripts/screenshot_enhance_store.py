"""Screenshot of the Enhance widget writing a Zarr store (out of core), for docs/big_images.md.

    xvfb-run -a .venv/bin/python scripts/screenshot_enhance_store.py [--out docs/images/enhance_store.png]

The input is the packaged nanoporous-gold SEM sample (MIT; one of the default model's training images,
which does not matter here: the picture shows the out-of-core workflow, not the model's quality), given
to napari as a two-level multiscale layer, degraded 4× first (as a coarse scan). The widget is forced to
the store output, writes ``<tmp>/gold_scan_sr.zarr`` block by block with small tiles (so that there are
several blocks), and the screenshot is taken while the store fills in (about half of the blocks done).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _shot import isolate_settings, settle, shoot_while_filling  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "enhance_store.png")
    args = ap.parse_args(argv)
    isolate_settings()

    import napari
    import numpy as np

    from matrestore import _samples
    from matrestore._widgets.enhance import EnhanceWidget
    from matrestore._widgets.rescan import ROLE_KEY
    from matrestore.degrade import downsample

    (hr, kw, _), = _samples.sem_sample()  # 691×1024, 0.543 nm/px
    px = float(kw["scale"][-1])
    lr = np.clip(downsample(hr[:, :640].astype(np.float32), 4), 0, 255).astype(np.uint8)  # 172×160 coarse scan
    ref = np.ascontiguousarray(hr[:, 700:])
    viewer = napari.Viewer(show=True, title="matrestore - super-resolution into a Zarr store")
    viewer.window._qt_window.resize(1500, 1000)
    md = {"unit": "nm", "pixel_size_nm": px}
    viewer.add_image(ref, name="gold_reference", scale=(px, px), translate=(0.0, 700 * px),
                     metadata={**md, ROLE_KEY: "reference"}, colormap="gray", units=("nm", "nm"))
    viewer.add_image([lr, lr[::2, ::2]], name="gold_scan", multiscale=True, scale=(4 * px, 4 * px),
                     translate=(1.5 * px, 1.5 * px), metadata=dict(md), colormap="gray", units=("nm", "nm"),
                     contrast_limits=(0, 255))
    w = EnhanceWidget(viewer)
    viewer.window.add_dock_widget(w, name="Super-resolution: enhance", area="right")
    w.input_combo.setCurrentText("gold_scan")
    out = Path(tempfile.mkdtemp(prefix="matrestore_shot_")) / "gold_scan_sr.zarr"
    w.store_part.path.setText(str(out))
    w.options.control("tile").setValue(128)  # small tiles (kept 58 px) and blocks of 116 LR px: several blocks
    w.store_part.chunk.setValue(116)
    settle()
    shoot_while_filling(w, viewer, "gold_scan_sr", args.out, hide=("gold_scan",))
    return args.out


if __name__ == "__main__":
    print(main())
