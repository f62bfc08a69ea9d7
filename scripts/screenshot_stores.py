"""Screenshots of "Denoise: apply" and "LabDCT: clean spots" writing OME-Zarr stores (out of core), for
docs/big_images.md.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshot_stores.py [--which both]

- ``docs/images/denoise_store.png``: the NIST etched-steel micrograph (free licence) mirrored to 2048², given
  to napari as a two-level multiscale layer (so the widget must write a store), denoised by the shipped
  model into ``<tmp>/steel_big_denoised.zarr`` in blocks of 512 px; taken while the store fills in.
- ``docs/images/labdct_store.png``: the synthetic Fe stack of ``screenshot_labdct.py`` (generated, no real
  data), cleaned by the shipped model into ``<tmp>/synthetic_stack_cleaned.zarr`` four frames per block, with
  the spot labels read back from the store; taken after the run, at frame 12.

The widgets show their default options (a throw-away settings file, not the user's remembered ones).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _shot import isolate_settings, save, settle, shoot_while_filling  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STEEL = ROOT.parent / "shared" / "data" / "optical" / "nistgsat__grain_structures_steel.tif"
IMAGES = ROOT / "docs" / "images"


def _tmp_store(name: str) -> Path:
    return Path(tempfile.mkdtemp(prefix="matrestore_shot_")) / name


def denoise_shot(out: Path) -> Path:
    import napari
    import numpy as np

    from matrestore._widgets.denoise import DenoiseWidget
    from matrestore.io import read_image

    a, _ = read_image(STEEL)
    a = np.asarray(a)
    while min(a.shape[:2]) < 2048:
        a = np.concatenate([a, a[::-1]], 0)
        a = np.concatenate([a, a[:, ::-1]], 1)
    a = np.ascontiguousarray(a[:2048, :2048])
    viewer = napari.Viewer(show=True, title="matrestore - denoising into a Zarr store")
    viewer.window._qt_window.resize(1500, 1000)
    viewer.add_image([a, a[::2, ::2], a[::4, ::4]], name="steel_big", multiscale=True, colormap="gray",
                     contrast_limits=(float(a.min()), float(a.max())))
    w = DenoiseWidget(viewer)
    viewer.window.add_dock_widget(w, name="Denoise: apply", area="right")
    w.input_combo.setCurrentText("steel_big")
    w.store_part.path.setText(str(_tmp_store("steel_big_denoised.zarr")))
    w.store_part.chunk.setValue(512)
    settle()

    def touch(v):  # the left half: input, the right half: the store as it fills in
        v.layers["steel_big"].visible = True

    return shoot_while_filling(w, viewer, "steel_big_denoised", out, at=0.4, before_shot=touch)


def labdct_shot(out: Path) -> Path:
    import napari
    import numpy as np

    from matrestore._widgets._worker import State
    from matrestore._widgets.labdct import CleanWidget
    from screenshot_labdct import synthetic_stack

    frames, omegas, _ = synthetic_stack()
    name = "synthetic_stack"
    viewer = napari.Viewer(show=True, title="matrestore - LabDCT spot cleaning into a Zarr store")
    viewer.window._qt_window.resize(1560, 1000)
    viewer.add_image(frames, name=name, metadata={"omegas": omegas}, colormap="gray",
                     contrast_limits=(0.0, float(np.percentile(frames, 99.9))))
    w = CleanWidget(viewer)
    viewer.window.add_dock_widget(w, name="LabDCT: clean spots", area="right")
    w.input_combo.setCurrentText(name)
    w.set_method("network")
    w.set_model("default")
    w.store_part.use.setChecked(True)
    w.store_part.path.setText(str(_tmp_store(f"{name}_cleaned.zarr")))
    w.store_part.chunk.setValue(4)
    settle()
    from _shot import run_to_end

    secs = run_to_end(w, "cleaning", 900)
    assert w.runner.state is State.DONE
    print(f"cleaned into a store in {secs:.0f} s: {w.status.text()} | {w.summary.text()}")
    viewer.dims.set_point(0, 12)
    h = frames.shape[1] + 12
    for lyr in (f"{name}_cleaned", f"{name}_spots"):
        if lyr in viewer.layers:
            viewer.layers[lyr].translate = (0.0, float(h), 0.0)
    if f"{name}_spots" in viewer.layers:
        viewer.layers[f"{name}_spots"].contour = 1
    viewer.reset_view()
    settle(60)
    return save(viewer, out)


def main(argv=None) -> list:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--which", choices=["denoise", "labdct", "both"], default="both")
    args = ap.parse_args(argv)
    isolate_settings()
    done = []
    if args.which in ("denoise", "both"):
        done.append(denoise_shot(IMAGES / "denoise_store.png"))
    if args.which in ("labdct", "both"):
        done.append(labdct_shot(IMAGES / "labdct_store.png"))
    return done


if __name__ == "__main__":
    print(main())
