"""Screenshots of the "LabDCT: clean spots" widget, for docs/labdct.md.

Run under a (virtual) X server::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshot_labdct.py [--which both]

Two pictures, neither from the iron frames (those have no licence and never appear in the docs):

- ``docs/images/labdct_clean_widget.png``: a **synthetic** stack (24 projections, 3° steps) made by
  ``labdct.simulate`` (Fe polycrystal, the iron frames' Laue-focusing geometry, a 512² window of the
  binned detector around the beam stop) on a **generated** background (smooth field, beam-stop shadow,
  eqs. 1–2 with Poisson noise), cleaned by the shipped default model: the cleaned frame, the spots
  (outlines) and the spot table, one spot selected with a click on its row.
- ``docs/images/labdct_clean_laue.png``: a second detector type, the MIT-licensed white-beam Laue
  pattern ``laue_lauetoolsnn/nw1_0000.tif`` (ESRF BM32; 2×2-binned here) as the middle frame of a
  three-frame stack between its neighbouring map point ``nw1_0001.tif`` on both sides (the default model
  looks at each frame's two neighbours; there are only two patterns), shown at frame 1.

The widget shows its default options (a throw-away settings file, not the user's remembered ones).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _shot import isolate_settings, run_to_end, save, settle  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LAUE = ROOT.parent / "shared" / "data" / "xrd" / "laue_lauetoolsnn"


def synthetic_stack(n=24, size=512, seed=3):
    """(frames, ω, truth): simulated Fe spots on a generated background (no real data)."""
    from dataclasses import replace

    import numpy as np

    from matrestore.labdct import IRON_GEOMETRY, SampleConfig, ground_truth, simulate, synthesize
    from matrestore.labdct.background import spot_scale

    g = IRON_GEOMETRY
    cz, cy = g.beam_centre
    h = size // 2
    r0, r1, c0, c1 = g.beamstop
    geo = replace(g, shape=(size, size), centre=(cz - (512 - h), cy - (512 - h)),
                  beamstop=(r0 - (512 - h), r1 - (512 - h), c0 - (512 - h), c1 - (512 - h)))
    sim = simulate(n, step_deg=3.0, start_deg=180.0, geometry=geo,
                   sample=SampleConfig(material="Fe", grain_size_mm=0.1, diameter_mm=1.0, height_mm=1.0, seed=seed))
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    bg = 0.75 + 0.15 * np.cos(2.2 * (xx - 0.4)) * np.cos(1.7 * (yy - 0.6)) - 0.2 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2)
    b0, b1, b2, b3 = geo.beamstop
    bg[b0:b1, b2:b3] *= 0.08  # the beam-stop shadow
    from scipy import ndimage as ndi

    bg = ndi.gaussian_filter(bg, 2.0)
    bg = (bg / bg.max()).astype(np.float32)
    s = spot_scale(sim.spots, 1.0, 110.0)
    frames = np.stack([synthesize(sim.spots[k] * s, bg, i0=110.0, rng=rng) for k in range(n)])
    truth = np.stack([ground_truth(sim.spots[k] * s) for k in range(n)])
    return frames, [float(w) for w in sim.omegas], truth


def laue_stack():
    import numpy as np
    import tifffile

    def bin2(x):
        h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
        return x[:h, :w].reshape(h // 2, 2, w // 2, 2).mean((1, 3)).astype(np.float32)

    a = bin2(tifffile.imread(LAUE / "nw1_0000.tif").astype(np.float32))
    b = bin2(tifffile.imread(LAUE / "nw1_0001.tif").astype(np.float32))
    return np.stack([b, a, b])


def shoot(which: str, out: Path, limit_s: float = 900.0) -> Path:
    import napari
    import numpy as np

    from matrestore._widgets.labdct import CleanWidget

    viewer = napari.Viewer(show=True, title="matrestore - LabDCT spot cleaning")
    viewer.window._qt_window.resize(1560, 1000)
    if which == "synthetic":
        frames, omegas, truth = synthetic_stack()
        name = "synthetic_stack"
        viewer.add_image(frames, name=name, metadata={"omegas": omegas}, colormap="gray",
                         contrast_limits=(0.0, float(np.percentile(frames, 99.9))))
        from scipy import ndimage as ndi

        n_true = [ndi.label(t, np.ones((3, 3)))[1] for t in truth]
        print(f"synthetic stack {frames.shape}: {np.mean(n_true):.0f} true spots per frame")
    else:
        frames = laue_stack()
        name = "laue_nw1"
        viewer.add_image(frames, name=name, colormap="gray", scale=(1.0, 1.0, 1.0),
                         contrast_limits=(float(np.percentile(frames, 1)), float(np.percentile(frames, 99.8))))
    viewer.dims.axis_labels = ("frame", "row", "col")
    w = CleanWidget(viewer)
    viewer.window.add_dock_widget(w, name="LabDCT: clean spots", area="right")
    w.input_combo.setCurrentText(name)
    w.set_method("network")
    w.set_model("default")
    secs = run_to_end(w, "cleaning", limit_s)
    print(f"cleaned in {secs:.0f} s: {w.summary.text()}")
    cl = viewer.layers[f"{name}_cleaned"]
    sp = viewer.layers[f"{name}_spots"]
    sp.contour = 1
    sp.opacity = 1.0
    rows = w.spot_rows()
    frame = 12 if which == "synthetic" else 1
    hh, ww = frames.shape[1:]
    pick = [r for r in rows if r["frame"] == frame and 16 < r["centroid_row"] < hh - 16 and 16 < r["centroid_col"] < ww - 16]
    pick = max(pick, key=lambda r: r["area"]) if pick else rows[0]
    m = w.table_model
    for r in range(m.rowCount()):
        if m.spot(r) is pick:
            w.table.selectRow(r)
            w.table.scrollTo(m.index(r, 0))
            w.go_to_row(r)
            break
    # the input above, the cleaned frame with the spot outlines below (moved for the picture only)
    h = frames.shape[1] + max(8, frames.shape[1] // 40)
    for lyr in (cl, sp):
        lyr.translate = (0.0, float(h), 0.0)
    cl.visible = True
    cl.contrast_limits = (0.0, 0.6)  # the network output is in [0, 1]: weak spots visible too
    viewer.layers[name].visible = True
    viewer.reset_view()
    settle(60)
    out = save(viewer, out)
    viewer.close()
    return shrink(out)


def shrink(path: Path, limit: int = 400_000) -> Path:
    """A PNG over ``limit`` bytes re-saved with a 256-colour palette (the docs' size limit)."""
    from PIL import Image

    if path.stat().st_size > limit:
        with Image.open(path) as im:
            q = im.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
        q.save(path, optimize=True)
    return path


def main(argv=None) -> list:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--which", choices=["synthetic", "laue", "both"], default="both")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "docs" / "images")
    args = ap.parse_args(argv)
    isolate_settings()
    import torch

    torch.set_num_threads(2)
    outs = []
    if args.which in ("synthetic", "both"):
        outs.append(shoot("synthetic", args.out_dir / "labdct_clean_widget.png"))
    if args.which in ("laue", "both"):
        outs.append(shoot("laue", args.out_dir / "labdct_clean_laue.png"))
    for o in outs:
        print(f"wrote {o}")
    return outs


if __name__ == "__main__":
    main()
