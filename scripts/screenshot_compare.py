"""Screenshot of the Compare widget on a real SEM micrograph, for docs/compare.md.

Run under a (virtual) X server::

    xvfb-run -a python scripts/screenshot_compare.py [--out docs/images/compare_widget.png]

Loads the nanoporous-gold SEM image (data bar removed by ``matrestore.io.read_image``), makes a 4×
coarser scan of it with ``matrestore.degrade.downsample``, shows both in napari with their physical
scales, runs the widget in LR mode with an ESSIM map and saves the whole window.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _shot import isolate_settings, run_to_end, save, settle  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SEM = ROOT.parent / "shared" / "data" / "sem" / "aquami__Sample.tif"


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", type=Path, default=SEM if SEM.exists() else None,
                    help="SEM micrograph (default: the shared aquami sample, else the packaged one)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "compare_widget.png")
    ap.add_argument("--scale", type=int, default=4)
    args = ap.parse_args(argv)
    isolate_settings()

    import napari

    from matrestore import io
    from matrestore._layerdata import image_layer_tuple
    from matrestore._widgets.compare import CompareWidget
    from matrestore.degrade import downsample

    path = args.image or io.sample_path("sem")
    hr, meta = io.read_image(path)  # the instrument data bar is cropped here
    s = args.scale
    lr = downsample(hr, s)
    data, kw, _ = image_layer_tuple(hr, meta, "sem_hr")
    px = kw["scale"][-1]
    viewer = napari.Viewer(show=True, title="matrestore - compare")
    viewer.window._qt_window.resize(1500, 980)
    viewer.add_image(data, **kw)
    # an LR pixel covers s×s HR pixels: its centre sits (s - 1)/2 HR pixels in
    viewer.add_image(lr, name="sem_lr", scale=(px * s, px * s), translate=(px * (s - 1) / 2,) * 2,
                     metadata={"unit": kw["metadata"]["unit"]}, units=kw.get("units"))
    w = CompareWidget(viewer)
    viewer.window.add_dock_widget(w, name="Compare images", area="right")
    w.gt_combo.setCurrentText("sem_hr")
    w.lr_combo.setCurrentText("sem_lr")
    w.mode_lr.setChecked(True)
    w.map_combo.setCurrentText("ESSIM map")
    run_to_end(w, "comparison", 300)
    viewer.layers["sem_hr_essim_map"].opacity = 0.85
    viewer.layers.selection.active = viewer.layers["sem_hr_essim_map"]
    viewer.reset_view()
    settle(20)
    save(viewer, args.out)
    print(f"wrote {args.out}")
    print(w.last_results["metrics"])
    viewer.close()
    return args.out


if __name__ == "__main__":
    main()
