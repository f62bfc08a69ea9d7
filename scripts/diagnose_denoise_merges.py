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

    .venv/bin/python scripts/diagnose_denoise_merges.py [--model default] [--json out.json]
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from eval_denoise_default import validation_pairs

    from matrestore.denoise import denoise
    from matrestore.denoise.modelio import resolve_model

    net = resolve_model(args.model)
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
