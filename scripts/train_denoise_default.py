"""Train the default denoising model (docs/model_denoise_default.md).

Texture source: ONLY the NIST etched-steel micrograph (free licence); the two MLography micrographs
are kept for the held-out test (scripts/eval_denoise_default.py). One CPU thread, checkpoints every
50 steps and every epoch in training/denoise_default/ (resume with --resume).

    OMP_NUM_THREADS=1 nohup .venv/bin/python scripts/train_denoise_default.py > training/denoise_default/train.out 2>&1 &
    .venv/bin/python scripts/train_denoise_default.py --resume      # continue after an interruption
    # run 3 (RECIPE_V3, fine-tuned from the then shipped run-2 model):
    OMP_NUM_THREADS=1 nohup .venv/bin/python scripts/train_denoise_default.py --recipe v3 --init default \
        --out training/denoise_default/run3 > training/denoise_default/run3/train.out 2>&1 &
    # run 4 (RECIPE_V4, fine-tuned from run 3's chosen epoch 16):
    OMP_NUM_THREADS=1 nohup .venv/bin/python scripts/train_denoise_default.py --recipe v4 --keep-epochs \
        --init training/denoise_default/run3/chosen_epoch16.safetensors --out training/denoise_default/run4 \
        > training/denoise_default/run4/train.out 2>&1 &
    # run 5 (RECIPE_V5, run 3's recipe continued from its epoch 16 at a tenth of the learning rate):
    OMP_NUM_THREADS=1 nohup .venv/bin/python scripts/train_denoise_default.py --recipe v5 --keep-epochs \
        --init training/denoise_default/run3/chosen_epoch16.safetensors --out training/denoise_default/run5 \
        > training/denoise_default/run5/train.out 2>&1 &
    # run 6 (RECIPE_V6, from run 5's chosen epoch 11, pure-recipe pairs only):
    OMP_NUM_THREADS=1 nohup .venv/bin/python scripts/train_denoise_default.py --recipe v6 --keep-epochs \
        --init training/denoise_default/run5/chosen_epoch11.safetensors --out training/denoise_default/run6 \
        > training/denoise_default/run6/train.out 2>&1 &
    # run 7 (RECIPE_V7, from run 6's chosen epoch 9, + the sign-blind edge-magnitude loss):
    OMP_NUM_THREADS=2 nohup .venv/bin/python scripts/train_denoise_default.py --recipe v7 --keep-epochs --threads 2 \
        --init default --out training/denoise_default/run7 \
        > training/denoise_default/run7/train.out 2>&1 &
    # run 8 (RECIPE_V8, run 6's recipe + a quarter of uniform bright-grain pairs, from the shipped default):
    OMP_NUM_THREADS=2 nohup .venv/bin/python scripts/train_denoise_default.py --recipe v8 --keep-epochs --threads 2 \
        --init default --out training/denoise_default/run8 > training/denoise_default/run8/train.out 2>&1 &
    # run 9 (RECIPE_V9 = run 8's recipe, seed 9, 8 epochs; chosen on the NIST highlighted-boundary check):
    OMP_NUM_THREADS=2 nohup .venv/bin/python scripts/train_denoise_default.py --recipe v9 --keep-epochs --threads 2 \
        --init default --out training/denoise_default/run9 > training/denoise_default/run9/train.out 2>&1 &
    # run 10 (RECIPE_V10: the shipped default deepened to 12 blocks, preset cpu-deep, run 6's data recipe):
    OMP_NUM_THREADS=2 nohup .venv/bin/python scripts/train_denoise_default.py --recipe v10 --keep-epochs --threads 2 \
        --init default --out training/denoise_default/run10 > training/denoise_default/run10/train.out 2>&1 &
    # run 11 (RECIPE_V11: run 10's recipe from the shipped default + the one-sided boundary-step loss):
    OMP_NUM_THREADS=2 nohup .venv/bin/python scripts/train_denoise_default.py --recipe v11 --keep-epochs --threads 2 \
        --init default --out training/denoise_default/run11 > training/denoise_default/run11/train.out 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
TRAIN_REAL = Path("/work/shared/data/optical/nistgsat__grain_structures_steel.tif")

RECIPE = dict(
    preset="cpu", epochs=12, steps_per_epoch=100, batch_size=10, patch=160, structures=64, val_structures=6,
    structure_size=256, grains=(30, 140), pf_steps=(100, 800), boundary_widths=(0, 0, 2), mix=(0.7, 1.0),
    real_gamma=(0.5, 2.0), val_pairs=12, lr=5e-4, lr_min=1e-5, schedule="cosine", weight_decay=1e-6,
    boundary_weight=2.0, seed=0, checkpoint_every=50,
)
# run 2 (shipped candidate): half of the pairs take a procedural texture as magnitude/histogram source
# (domain randomisation), fine-tuned from run 1 (NIST texture only, which did not generalise to unseen
# micrographs: docs/model_denoise_default.md)
RECIPE_V2 = dict(RECIPE, epochs=11, procedural=0.5, lr=3e-4, seed=1)
# run 3: fine-tuned from run 2 (the shipped default up to then) with a wider grain-size range — 384² structures
# with 8–320 Voronoi grains (mean starting grain 21–136 px across; run 2: 22–47 px), 192² crops so the large
# grains appear whole — against the invented small grains on coarse real micrographs; and a stronger boundary
# weight (4) against the missing faint boundaries (merged grains: run 2 found 44 of 88, 77 of 127 grains on
# seen-texture test images, precision 0.92, recall 0.84). New structure pool (seed 3).
RECIPE_V3 = dict(RECIPE_V2, epochs=24, batch_size=8, patch=192, structure_size=384, grains=(8, 320),
                 pf_steps=(100, 1000), boundary_weight=4.0, lr=2e-4, lr_min=1e-5, seed=3)
# run 4: fine-tuned from run 3's chosen epoch 16 (chosen on the fixed validation set) against the merged
# grains that remain its main error (validation recall 0.83 vs precision 0.95): an L1 loss on the image
# gradient (MSE barely sees a faint step between similar grains; L1 of the step's error does), neighbours
# as little as 0.06 apart in the ground truth (the test keeps 0.12), and more test-like pairs (magnitude
# blend 0.85–1; the test is 1). New structure pool (seed 4); every epoch kept for the validation choice.
RECIPE_V4 = dict(RECIPE_V3, epochs=15, grad_weight=1.0, min_contrast=(0.06, 0.12), mix=(0.85, 1.0), lr=1.5e-4,
                 seed=4)
# run 5: run 4 made validation worse on every figure (gradient L1 and fainter steps: more invented grains on
# coarse structures), so back to the run-3 recipe, continued from its chosen epoch 16 at a tenth of the
# learning rate (5e-5 cosine to 5e-6) on a new structure pool (seed 5): does a longer, gentler run-3 schedule
# still gain? Every epoch kept for the validation choice.
RECIPE_V5 = dict(RECIPE_V3, epochs=12, lr=5e-5, lr_min=5e-6, seed=5)
# run 6: from run 5's chosen epoch 11, every pair made by the paper's pure recipe (magnitude blend 1, as the
# validation and test pairs are), same gentle schedule, new structure pool (seed 6). Rule set before its
# held-out test: the epoch with the best validation F1 over all 16 pairs; shipped if better than run 2 on
# validation (all F1 and count error) and, held out, F1 above run 2's and count error no more than one
# standard error of run 2's (0.053) above it.
RECIPE_V6 = dict(RECIPE_V5, mix=(1.0, 1.0), seed=6)
# run 7: from run 6's chosen epoch 9 (the shipped default, its float16 copy). Its count error is all merged grains on images WITHOUT etched
# boundaries (validation: 30–50 % too few grains there, 1–9 % with etching): the real magnitude spectrum hides
# which neighbour is brighter, and MSE then prefers no step to a step of the wrong sign. An L1 loss on the
# Sobel gradient MAGNITUDE (edge_weight 1; blind to the sign of a step) pays for a step of either sign at a
# true boundary, and charges for edges where the ground truth has none (texture, scratches). Adam 1e-4 cosine
# to 5e-6 (a new loss term), new structure pool (seed 7), 12 epochs × 100 steps, every epoch kept.
# Rule set before its held-out test: on the fixed validation set, the epoch with the lowest all-pair count
# error among those with all-pair F1 >= 0.846 (run 6's 0.851 - 0.005; none: the best all-pair F1); shipped if,
# held out, grain-count error <= 0.172 (run 6's 0.220 less one standard error, 0.048), boundary F1 >= 0.884
# (run 6's 0.895 less one standard error, 0.011) and scratch residual <= 0.134.
RECIPE_V7 = dict(RECIPE_V6, edge_weight=1.0, lr=1e-4, lr_min=5e-6, seed=7)
# run 8: run 7 did not help (validation epochs 1–4: fine recall 0.81–0.82, no fewer merges, and coarse
# structures gained invented grains, count +0.6…+0.7; stopped after epoch 5). Back to run 6's recipe, against
# the other failure: the grey blotches on the real NIST micrograph (bright-field etched steel), where the
# network gives each uniform bright grain a grey of its own because every training ground truth has one.
# A quarter of the pairs get ground truths of nearly one bright grey with dark etched boundaries (uniform
# 0.25); from the shipped default (run 6 epoch 9), Adam 5e-5 cosine to 5e-6, new pool (seed 8), 12 × 100.
# Rule set before training: among the epochs whose NIST bright-interior deviation (--real-check) is <= 0.025
# (run 6: 0.0363), the one with the best all-pair validation F1 (none: not shipped); shipped if, held out,
# boundary F1 >= 0.884, grain-count error <= 0.268 (run 6's 0.220 + one standard error) and scratch
# residual <= 0.134.
RECIPE_V8 = dict(RECIPE_V6, uniform=0.25, seed=8)
# run 9: run 8's epochs, scored afterwards against NIST's hand-highlighted boundaries of the real micrograph
# (--real-reference; training/denoise_default/reference), found real etched-rule grain boundaries far better
# than the shipped model's (F1 0.85-0.92 vs 0.71; the raw input: 0.84), which run 8's own proxy rule (the
# bright-interior deviation) did not see. Choosing among run 8's epochs on that now would be choosing after
# the fact, so: run 8's recipe again on a new structure pool (seed 9), 8 epochs × 100 steps. Rule set before
# training: the epoch with the best --real-reference boundary F1 among those with fixed-validation fine F1 >=
# 0.860; shipped if that F1 >= 0.838 (the raw input's: the network must not make a clean etched micrograph
# harder to measure) and, held out (once), boundary F1 >= 0.884, grain-count error <= 0.268 and scratch
# residual <= 0.134. (Its NIST F1 is then a selection figure, not an unbiased one.)
RECIPE_V9 = dict(RECIPE_V8, epochs=8, seed=9)
# run 10: five fine-tuning recipes of the 145 k-parameter cpu preset (runs 3-9) left the validation count error
# within 0.22-0.30: is it the network's capacity? The shipped default (run 6 epoch 9) deepened to 12 blocks
# (model.deepen: its 6 blocks kept, 6 near-identity blocks between them; the "cpu-deep" preset, 260 k
# parameters, receptive radius 227 px instead of 119), trained on run 6's data recipe (pure recipe, no uniform
# pairs), Adam 1e-4 cosine to 5e-6 (new blocks start from zero), new structure pool (seed 10), 40 epochs x 100
# steps, every epoch kept. Rule set before training: on the fixed validation set, the epoch with the best
# all-pair F1 (run 6's rule); it replaces the default only if, held out (once), boundary F1 > 0.895 AND
# grain-count error < 0.220 (both better than the shipped default's) AND scratch residual <= 0.134, and it
# denoises 1024² in <= 2 s on two cores (benchmarks/bench_denoise.py).
RECIPE_V10 = dict(RECIPE_V6, epochs=40, lr=1e-4, lr_min=5e-6, seed=10, deepen=12)
# run 11: the shape-oracle check (scripts/diagnose_denoise_merges.py --oracle) found that the shipped default's own
# grain grey levels, painted on the TRUE grain shapes, would give a held-out count error of 0.096 (its output:
# 0.222; the input's levels on true shapes: 0.111): most of the count error is boundaries the output does not
# draw sharply enough for the segmentation, not levels. So a one-sided, sign-blind loss at the true boundaries
# (train.step_floor: the shortfall of the prediction's smoothed edge below half the ground truth's; weight 0.5,
# about the size of the MSE terms at the start) on run 10's recipe, from the shipped default (run 10 epoch 20,
# 12 blocks), Adam 5e-5 cosine to 5e-6, new structure pool (seed 11), 30 epochs x 100 steps, every epoch kept.
# Rule set before training: stop after epoch 5 unless one of epochs 1-5 has a fixed-validation all-pair count
# error below 0.270 (run 10 epoch 20: 0.289); the epoch with the lowest all-pair validation count error among those
# with all-pair F1 >= 0.856 (run 10's 0.861 - 0.005); it replaces the default only if, held out (once), boundary
# F1 >= 0.900 AND grain-count error < 0.219 AND scratch residual <= 0.134 (same architecture: same speed).
RECIPE_V11 = dict(RECIPE_V10, deepen=0, step_weight=0.5, epochs=30, lr=5e-5, lr_min=5e-6, seed=11)
# run 12: run 11 was stopped after epoch 5 by its rule: the floor made the network draw boundaries everywhere
# (validation recall 0.92-0.94, precision 0.65-0.71; coarse structures +640 % to +1 030 % grains; all-pair count
# error 1.8-2.9). The same recipe with a tenth of the weight (0.05, about a fifth of the MSE terms at the start),
# seed 12. Rule set before training: a pilot of 3 epochs, continued (to 30, with --resume --epochs 30) only if one
# of them has a fixed-validation all-pair count error below 0.270 AND all-pair F1 >= 0.856; then run 11's rule.
RECIPE_V12 = dict(RECIPE_V11, step_weight=0.05, epochs=3, seed=12)
# run 13: run 12's pilot (validation, 3 epochs) gained a little on fine structures (epoch 3: fine F1 0.886, count
# 0.211; the default 0.884 / 0.214) and lost on coarse ones (count 0.73-0.77 vs 0.52: more invented grains): all-pair
# count 0.342-0.358 > 0.270, not continued. The floor's other side: train.interior_edges, the prediction's smoothed
# edges inside the grains (> 2 px beyond the boundary band, where the truth is flat), weight 0.02 (about a third of
# the MSE terms at the start), with run 12's floor (0.05), seed 13. Same pilot rule as run 12 (3 epochs; continued
# only if one has all-pair validation count error < 0.270 AND all-pair F1 >= 0.856; then run 11's rule).
RECIPE_V13 = dict(RECIPE_V12, interior_weight=0.02, seed=13)
RECIPES = {"v1": RECIPE, "v2": RECIPE_V2, "v3": RECIPE_V3, "v4": RECIPE_V4, "v5": RECIPE_V5, "v6": RECIPE_V6,
           "v7": RECIPE_V7, "v8": RECIPE_V8, "v9": RECIPE_V9, "v10": RECIPE_V10, "v11": RECIPE_V11, "v12": RECIPE_V12, "v13": RECIPE_V13}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "training" / "denoise_default"))
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--real", default=str(TRAIN_REAL), help="texture source (default: the NIST steel micrograph)")
    ap.add_argument("--v1", action="store_true", help="the first recipe (NIST texture only, from scratch); = --recipe v1")
    ap.add_argument("--recipe", choices=sorted(RECIPES), default="v3",
                    help="v1: run 1, v2: run 2, v3 (default): run 3, v4: run 4 (ignored with --resume: the checkpoint's recipe)")
    ap.add_argument("--init", default=None, help="fine-tune this model file (run 2: run 1's best; run 3: 'default' = run 2)")
    ap.add_argument("--keep-epochs", action="store_true", help="keep every epoch's model (OUT/epochs/)")
    args = ap.parse_args(argv)
    import torch

    from matrestore.denoise.train import train
    from matrestore.progress import Kind

    torch.set_num_threads(args.threads)
    opts = dict(RECIPES["v1" if args.v1 else args.recipe])
    if args.epochs:
        opts["epochs"] = args.epochs
    t0 = time.time()
    init = None if args.resume else args.init
    for rec in train([args.real], args.out, resume=args.resume, init=init, threads=args.threads,
                     keep_epochs=args.keep_epochs, **opts):
        k = rec["kind"]
        if k == Kind.STEP and rec["step"] % 25:
            continue
        short = {key: rec[key] for key in ("step", "total", "epoch", "losses", "val", "best", "message") if key in rec}
        print(f"[{time.time() - t0:7.0f} s] {k}: {json.dumps(short)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
