"""Spot-level and pixel-level scores of predicted spot masks against ground-truth masks.

**Matching rule** (one-to-one, by overlap). Spots are the 8-connected components of each frame's mask.
A predicted spot and a true spot are a *candidate pair* when they share at least one pixel. Candidate
pairs are taken in order of decreasing IoU (intersection over union, ties: larger overlap first), and a
pair is accepted when neither spot is matched yet. Accepted pairs are true positives (TP); predicted
spots left over are false positives (FP); true spots left over are false negatives (FN) — so one
predicted blob covering two true spots scores one TP and one FN (merged neighbours are an error).
``precision = TP / (TP + FP)``, ``recall = TP / (TP + FN)``, ``F1 = 2 TP / (2 TP + FP + FN)``.

**Pixel Dice** = ``2 |P ∩ T| / (|P| + |T|)`` over all pixels of all frames.

**Terciles.** Each true spot's intensity is its peak in the noise-free simulated frame; the terciles'
edges are the 1/3 and 2/3 quantiles over all true spots of the test stack. A TP or FN counts in its true
spot's tercile. An FP counts in the tercile of the largest noise-free intensity it covers (a detection of
pure noise covers 0 and counts in the weakest tercile: it is what a weak spot looks like).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["candidates", "greedy_pairs", "match_spots", "spot_counts", "pixel_dice", "prf", "score_stack"]

_EIGHT = np.ones((3, 3), bool)


def candidates(lp, npred, lt, ntrue):
    """Candidate pairs of two label images: ``(pred_label, true_label, intersection, iou)`` arrays."""
    if npred == 0 or ntrue == 0:
        z = np.zeros(0, np.int64)
        return z, z, z, np.zeros(0)
    both = (lp > 0) & (lt > 0)
    a, b = lp[both].astype(np.int64), lt[both].astype(np.int64)
    key = a * (ntrue + 1) + b
    uk, inter = np.unique(key, return_counts=True)
    pa, pb = uk // (ntrue + 1), uk % (ntrue + 1)
    sp = np.bincount(lp.ravel(), minlength=npred + 1)
    stt = np.bincount(lt.ravel(), minlength=ntrue + 1)
    iou = inter / (sp[pa] + stt[pb] - inter)
    return pa, pb, inter, iou


def greedy_pairs(pa, pb, inter, iou, npred, ntrue, allowed=None):
    """One-to-one pairs by decreasing IoU (ties: larger overlap); ``allowed``: bool per pred label."""
    if allowed is not None and len(pa):
        ok = allowed[pa]
        pa, pb, inter, iou = pa[ok], pb[ok], inter[ok], iou[ok]
    pairs = []
    if len(pa) == 0:
        return pairs
    # pairs whose two spots have no other candidate are accepted whatever the order: take them at once
    cp = np.bincount(pa, minlength=npred + 1)
    ct = np.bincount(pb, minlength=ntrue + 1)
    lone = (cp[pa] == 1) & (ct[pb] == 1)
    pairs = list(zip(pa[lone].tolist(), pb[lone].tolist()))
    rest = ~lone
    if rest.any():
        pa, pb, inter, iou = pa[rest], pb[rest], inter[rest], iou[rest]
        order = np.lexsort((-inter, -iou))
        used_p = np.zeros(npred + 1, bool)
        used_t = np.zeros(ntrue + 1, bool)
        for i in order:
            if not used_p[pa[i]] and not used_t[pb[i]]:
                used_p[pa[i]] = used_t[pb[i]] = True
                pairs.append((int(pa[i]), int(pb[i])))
    return pairs


def match_spots(pred: np.ndarray, truth: np.ndarray):
    """``(pairs, lab_pred, n_pred, lab_true, n_true)`` with ``pairs``: list of (pred_label, true_label)."""
    lp, npred = ndi.label(np.asarray(pred, bool), _EIGHT)
    lt, ntrue = ndi.label(np.asarray(truth, bool), _EIGHT)
    pa, pb, inter, iou = candidates(lp, npred, lt, ntrue)
    return greedy_pairs(pa, pb, inter, iou, npred, ntrue), lp, npred, lt, ntrue


def spot_counts(pred, truth) -> tuple[int, int, int]:
    """(TP, FP, FN) of one frame under the matching rule."""
    pairs, _, npred, _, ntrue = match_spots(pred, truth)
    return len(pairs), npred - len(pairs), ntrue - len(pairs)


def prf(tp, fp, fn) -> dict:
    return {"precision": tp / (tp + fp) if tp + fp else 0.0, "recall": tp / (tp + fn) if tp + fn else 0.0,
            "f1": 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 0.0, "tp": int(tp), "fp": int(fp), "fn": int(fn)}


def pixel_dice(pred, truth) -> float:
    p, t = np.asarray(pred, bool), np.asarray(truth, bool)
    s = p.sum() + t.sum()
    return float(2 * (p & t).sum() / s) if s else 1.0


def score_stack(pred: np.ndarray, truth: np.ndarray, clean_spots: np.ndarray, edges=None) -> dict:
    """Scores of a predicted mask stack; ``clean_spots``: the noise-free spot frames (for the terciles).
    ``edges``: tercile edges (default: from this stack's true spots)."""
    peaks_all = []
    per = []
    for k in range(len(truth)):
        pairs, lp, npred, lt, ntrue = match_spots(pred[k], truth[k])
        pk_t = ndi.maximum(clean_spots[k], lt, np.arange(1, ntrue + 1)) if ntrue else np.zeros(0)
        pk_p = ndi.maximum(clean_spots[k], lp, np.arange(1, npred + 1)) if npred else np.zeros(0)
        per.append((pairs, npred, ntrue, np.asarray(pk_t, float), np.asarray(pk_p, float)))
        peaks_all.append(np.asarray(pk_t, float))
    peaks_all = np.concatenate(peaks_all) if peaks_all else np.zeros(0)
    if edges is None:
        edges = list(np.quantile(peaks_all, [1 / 3, 2 / 3])) if peaks_all.size else [0.0, 0.0]
    e = np.asarray(edges, float)
    T = np.zeros((3, 3), int)  # tercile x (tp, fp, fn)
    for pairs, npred, ntrue, pk_t, pk_p in per:
        matched_t = np.zeros(ntrue + 1, bool)
        matched_p = np.zeros(npred + 1, bool)
        for a, b in pairs:
            matched_t[b] = matched_p[a] = True
        tt = np.digitize(pk_t, e)
        tp_ = np.digitize(pk_p, e)
        for q in range(3):
            T[q, 0] += int(np.sum(matched_t[1:] & (tt == q)))
            T[q, 2] += int(np.sum(~matched_t[1:] & (tt == q)))
            T[q, 1] += int(np.sum(~matched_p[1:] & (tp_ == q)))
    tot = T.sum(0)
    return {"spots": prf(*tot), "pixel_dice": pixel_dice(pred, truth),
            "terciles": {name: prf(*T[q]) for q, name in enumerate(("weak", "medium", "strong"))},
            "tercile_edges": [float(x) for x in e], "n_true_spots": int(tot[0] + tot[2])}
