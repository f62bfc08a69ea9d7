"""Which grain boundaries does a denoising model merge, and were they visible in its input?

On the fixed VALIDATION pairs of ``scripts/eval_denoise_default.py`` (never the held-out test), for every pair of
neighbouring true grains (i, j) of the fine images without etched boundaries:

* the input contrast: |mean(noisy) on i − mean(noisy) on j| over the bands of i and j within ``BAND`` px of
  each other, in units of the pooled standard deviation of the noisy input in those bands (a signal-to-noise
  ratio of the step, as a filter looking at both sides would see it);
* the same contrast of the model's output (normalised by the output's own band standard deviation), and of
  the ground truth's step |clean_i − clean_j| in grey levels;
* whether the model's output merges them: the evaluation's segmentation (``scoring.segment``) of the output
  gives both true grains the same majority label.

It prints the merge share in bins of the input contrast. If the merged boundaries are those with no step in the
input, the count error is a limit of the test recipe (information the input does not hold), not of the network.

``--oracle`` instead asks how far the grain-count error can fall at all: the evaluation's segmentation is run on
*shape-oracle* images — every true grain painted with one grey, the median over that grain of the input (what a
denoiser that found every boundary exactly but kept the input's grain grey levels would give) or of the model's
output (the model's levels with perfect shapes); on images with etched boundaries the true boundary band keeps
the input's median there too. No model is chosen or tuned with it, so it may also run on the held-out test
images (``--test``): it is a property of the test recipe and the segmentation rule.

    .venv/bin/python scripts/diagnose_denoise_merges.py [--model default] [--json out.json]
    .venv/bin/python scripts/diagnose_denoise_merges.py --oracle [--test] [--model default] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
BAND = 4  # px on each side of a boundary


def pair_stats(noisy, clean, out, labels):
    from scipy import ndimage as ndi

    from matrestore.denoise.scoring import segment

    seg = segment(out)
    ids = np.unique(labels)
    major = {}
    for i in ids:
        vals, cnt = np.unique(seg[labels == i], return_counts=True)
        major[int(i)] = int(vals[np.argmax(cnt)])
    # neighbour pairs from 4-adjacency
    pairs = set()
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
        m = a != b
        for u, v in zip(a[m].tolist(), b[m].tolist()):
            pairs.add((min(u, v), max(u, v)))
    rows = []
    dil = {int(i): ndi.binary_dilation(labels == i, iterations=BAND) for i in ids}
    for u, v in pairs:
        bu = (labels == u) & dil[v]
        bv = (labels == v) & dil[u]
        if bu.sum() < 10 or bv.sum() < 10:
            continue

        def snr(img):
            a, b = img[bu], img[bv]
            s = np.sqrt(0.5 * (a.var() + b.var())) + 1e-9
            return abs(a.mean() - b.mean()) / s

        rows.append({"snr_in": float(snr(noisy)), "snr_out": float(snr(out)),
                     "step_true": float(abs(clean[labels == u].mean() - clean[labels == v].mean())),
                     "length": int(min(bu.sum(), bv.sum()) // BAND), "merged": major[u] == major[v]})
    return rows


def shape_oracle(image, labels, boundary=None) -> np.ndarray:
    """Every true grain (and the etched ``boundary`` band, when given) painted with the median of ``image`` there."""
    from scipy import ndimage as ndi

    lab = np.asarray(labels).astype(np.int64)
    if boundary is not None and np.any(boundary):
        lab = np.where(boundary, lab.max() + 1, lab)
    ids = np.unique(lab)
    lut = np.zeros(int(lab.max()) + 1)
    lut[ids] = ndi.median(np.asarray(image, np.float64), lab, ids)
    return lut[lab]


def oracle(pairs, net, json_path=None) -> dict:
    """Signed and absolute grain-count errors of the segmentation of: the ground truth, the shape-oracle images
    of the input and of the model's output, and the model's output itself, by etching."""
    from matrestore.denoise import denoise
    from matrestore.denoise.scoring import grain_stats, segment

    rows = []
    for group, p in pairs:
        etched = bool(p.recipe.get("boundary_width"))
        band = p.masks.get("boundary") if etched else None
        out = denoise(p.noisy, net).astype(np.float64)
        imgs = {"ground truth": p.clean, "true shapes, input's grain levels": shape_oracle(p.noisy, p.labels, band),
                "true shapes, model's grain levels": shape_oracle(out, p.labels, band), "model output": out}
        n_true = grain_stats(p.labels)["count"]
        row = {"group": group, "etched": etched, "n_true": n_true}
        for name, img in imgs.items():
            row[name] = (grain_stats(segment(img))["count"] - n_true) / n_true
        rows.append(row)
    names = [k for k in rows[0] if k not in ("group", "etched", "n_true")]
    print("| images | n | " + " | ".join(names) + " |\n|---|---:|" + "---:|" * len(names))
    summary = {}
    for sel_name, sel in (("without etched boundaries", lambda r: not r["etched"]), ("with etched boundaries", lambda r: r["etched"]),
                          ("all", lambda r: True)):
        for group in sorted({r["group"] for r in rows}):
            rr = [r for r in rows if sel(r) and r["group"] == group]
            if not rr:
                continue
            cells = {k: (float(np.mean([abs(r[k]) for r in rr])), float(np.mean([r[k] for r in rr]))) for k in names}
            summary[f"{group}, {sel_name}"] = {"n": len(rr), **{k: {"abs": a, "signed": s} for k, (a, s) in cells.items()}}
            print(f"| {group}, {sel_name} | {len(rr)} | " + " | ".join(f"{a:.3f} ({s:+.3f})" for a, s in cells.values()) + " |")
    if json_path:
        Path(json_path).write_text(json.dumps({"summary": summary, "images": rows}, indent=1))
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--json", default=None)
    ap.add_argument("--oracle", action="store_true", help="grain-count errors of shape-oracle images (module docstring)")
    ap.add_argument("--test", action="store_true", help="with --oracle: the held-out test images instead of validation")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from eval_denoise_default import validation_pairs

    from matrestore.denoise import denoise
    from matrestore.denoise.modelio import resolve_model

    net = resolve_model(args.model)
    if args.oracle:
        if args.test:
            from eval_denoise_default import HELD_OUT, N_PER_REAL

            from matrestore.denoise.testset import make_test_set

            pairs = [("test", p) for p in make_test_set([str(h) for h in HELD_OUT], n_per_real=N_PER_REAL)]
        else:
            pairs = validation_pairs()
        print(f"{len(pairs)} {'held-out test' if args.test else 'validation'} images; grain-count error (signed) of the "
              f"evaluation's segmentation (scoring.segment) of:")
        oracle(pairs, net, args.json)
        return 0
    rows = []
    for regime, p in validation_pairs():
        if regime != "fine" or p.recipe.get("boundary_width"):
            continue
        out = denoise(p.noisy, net)
        rows += pair_stats(p.noisy.astype(np.float64), p.clean, out.astype(np.float64), p.labels)
    snr = np.array([r["snr_in"] for r in rows])
    merged = np.array([r["merged"] for r in rows])
    print(f"{len(rows)} neighbour pairs on the unetched fine validation images; merged by the model's output: "
          f"{merged.mean():.1%}")
    print("| input step / noise | pairs | merged | output step / noise (median) |\n|---|---:|---:|---:|")
    edges = [0, 0.25, 0.5, 1, 2, 4, np.inf]
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (snr >= lo) & (snr < hi)
        if sel.any():
            so = np.median([r["snr_out"] for r, s in zip(rows, sel) if s])
            print(f"| {lo:g}–{hi:g} | {sel.sum()} | {merged[sel].mean():.1%} | {so:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "band_px": BAND, "pairs": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
