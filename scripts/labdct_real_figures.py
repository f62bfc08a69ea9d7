"""The real-frame figures of issue 14 through the napari path: spot counts per frame for both methods and
the residual background in non-spot pixels before / after, on the 40 real iron frames.

    .venv/bin/python scripts/labdct_real_figures.py [--iron ../shared/data/xrd/labdct_pure_iron]
        [--json training/labdct_default/real_figures.json]

The frames are opened as napari would open the folder (``matrestore._reader.read_layers``: one stack
layer with ω per frame from ``input_main.m``) and cleaned by the widget's job
(``matrestore._widgets.labdct.clean_job``, no Qt): the shipped default model at 5/255, and the standard
routine with its defaults (window 11, automatic beam stop, LoG 0 / 1 px / 50 % / 3 px). Only numbers are
written; the frames have no licence and no image of them is published.

Definitions (as in ``labdct.evaluate.evaluate_real``, here over all 40 frames): *non-spot pixels* are the
pixels outside the beam-stop shadow (``labdct.routine.find_beamstop`` of the median of the first 11 frames)
and outside both methods' masks dilated by 2 px. *Before*: the input's mean there over the frame's 99.9th
percentile (a 0–1 scale, like an 8-bit image). *After*: the network output's mean there (it is in [0, 1]),
or for the routine the mean of its cleaned frame (frame − rolling median, clipped at 0) over the same
percentile. Spot counts are the 8-connected components of each frame's mask, and also those whose
centroid lies outside the beam stop (the network's masks are not cut at the beam stop by the widget).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
IRON = ROOT.parent / "shared" / "data" / "xrd" / "labdct_pure_iron"


def drive(gen):
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iron", type=Path, default=IRON)
    ap.add_argument("--json", type=Path, default=ROOT / "training" / "labdct_default" / "real_figures.json")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    import torch
    from scipy import ndimage as ndi

    from matrestore._paths import Outputs, atomic_write_text
    from matrestore._reader import read_layers
    from matrestore._widgets.labdct import clean_job
    from matrestore.labdct.routine import RoutineOptions, find_beamstop

    torch.set_num_threads(args.threads)
    out = Outputs(inputs=[args.iron]).file(args.json)
    (data, kw, _), = read_layers(args.iron)
    md = kw["metadata"]
    omegas = md.get("omegas")
    print(f"{data.shape[0]} frames {data.shape[1:]} {data.dtype}; ω from {md.get('omega_source')}")
    t0 = time.perf_counter()
    net = drive(clean_job(data, method="network", model="default", omegas=omegas, name="iron"))
    t_net = time.perf_counter() - t0
    t0 = time.perf_counter()
    rout = drive(clean_job(data, method="routine", routine=RoutineOptions(), omegas=omegas, name="iron"))
    t_rout = time.perf_counter() - t0
    print(f"network {t_net:.0f} s, routine {t_rout:.0f} s")
    bs = find_beamstop(np.median(data[:11].astype(np.float32), 0))
    rows = []
    for k in range(len(data)):
        x = data[k].astype(np.float32)
        mn, mr = net["labels"][k] > 0, rout["labels"][k] > 0
        excl = ndi.binary_dilation(mn | mr, iterations=2)
        if bs is not None:
            excl |= bs
        px = ~excl
        p999 = float(np.percentile(x, 99.9))

        def outside_bs(method):
            return sum(1 for r in method["rows"] if r["frame"] == k and (bs is None or not bs[
                int(round(r["centroid_row"])), int(round(r["centroid_col"]))]))

        rows.append({"frame": k + 1, "omega": None if omegas is None else omegas[k],
                     "spots_network": int(net["labels"][k].max()), "spots_routine": int(rout["labels"][k].max()),
                     "spots_network_outside_beamstop": outside_bs(net),
                     "spots_routine_outside_beamstop": outside_bs(rout),
                     "residual_before": float(x[px].mean() / p999),
                     "residual_network": float(net["cleaned"][k][px].mean()),
                     "residual_routine": float(rout["cleaned"][k][px].mean() / p999),
                     "non_spot_fraction": float(px.mean())})
    keys = [k for k in rows[0] if k not in ("frame", "omega")]
    doc = {"written_by": "matrestore", "script": "scripts/labdct_real_figures.py",
           "data": "40 real iron frames (labdct_pure_iron, no licence: numbers only)", "omega_source": md.get("omega_source"),
           "network": {"model": "default", "threshold": net["params"]["threshold"], "seconds": round(t_net, 1),
                       "device": net["device"]},
           "routine": {"params": rout["params"], "seconds": round(t_rout, 1)},
           "beamstop_px": int(bs.sum()) if bs is not None else 0,
           "per_frame": rows, "mean": {k: float(np.mean([r[k] for r in rows])) for k in keys},
           "median": {k: float(np.median([r[k] for r in rows])) for k in keys}}
    atomic_write_text(out, json.dumps(doc, indent=1))
    m = doc["mean"]
    print(f"spots per frame: network {m['spots_network']:.0f}, routine {m['spots_routine']:.0f}; residual background "
          f"before {m['residual_before']:.3f}, network {m['residual_network']:.2e}, routine {m['residual_routine']:.4f}")
    print(f"wrote {out}")
    return doc


if __name__ == "__main__":
    main()
