"""The synthetic test set and the evaluation of the network against every classical baseline.

Test structures use seeds far from the training pool's (``TEST_SEED``), the paper's pure recipe
(real magnitude ``mix = 1``, no gamma), and — for a fair test — real micrographs the model never saw.
``evaluate_iter`` yields progress records and returns the table (``summary``) and every figure
(``per_image``) as one JSON-able document.
"""

from __future__ import annotations

import time

import numpy as np

from .._validate import InputError
from ..progress import Kind, drive, record
from .scoring import evaluate_methods, format_table
from .phasefield import phase_field
from .synth import synthesize, texture_source

__all__ = ["TEST_SEED", "make_test_set", "evaluate_iter", "evaluate", "TEST_RECIPE"]

TEST_SEED = 10_000_000
TEST_RECIPE = dict(shape=256, grains=(30, 140), pf_steps=(100, 800), boundary_widths=(0, 2))


def make_test_set(reals, n_per_real: int = 6, seed: int = TEST_SEED, shape: int = TEST_RECIPE["shape"],
                  grains=TEST_RECIPE["grains"], pf_steps=TEST_RECIPE["pf_steps"],
                  boundary_widths=TEST_RECIPE["boundary_widths"]) -> list:
    """``n_per_real`` synthetic pairs per real micrograph (each with its own phase-field structure,
    grain count and coarsening drawn from ``grains`` / ``pf_steps``, etched-boundary width cycling
    through ``boundary_widths``); deterministic from ``seed``."""
    if isinstance(reals, (str, np.ndarray)) or not hasattr(reals, "__len__"):
        reals = [reals]
    if not reals:
        raise InputError("the test set needs at least one real micrograph.")
    if int(n_per_real) < 1:
        raise InputError(f"n_per_real must be >= 1, got {n_per_real}.")
    pairs = []
    for j, r in enumerate(reals):
        src, name = texture_source(r, f"real micrograph {j}")
        if min(src.shape) < shape:
            raise InputError(f"{name} of shape {src.shape} is smaller than the test images ({shape} px); use --shape {min(src.shape)} or less.")
        for k in range(int(n_per_real)):
            rng = np.random.default_rng([int(seed), j, k])
            pf = phase_field((shape, shape), int(rng.integers(grains[0], grains[1] + 1)), int(rng.integers(pf_steps[0], pf_steps[1] + 1)),
                             seed=int(seed) + 1000 * j + k)
            bw = int(boundary_widths[k % len(boundary_widths)])
            pairs.append(synthesize(pf, src, seed=int(seed) + 1000 * j + k, boundary_width=bw, mix=1.0, real_name=name))
    return pairs


def evaluate_iter(pairs, model="default", baselines="all", *, calibrate: bool = True, include_input: bool = True,
                  no_histogram_row: bool = True, device=None, tile: int | None = 1024):
    """Generator: the network (with and without the histogram post-processing), the noisy input itself and
    every baseline on every pair; returns ``{"summary", "per_image", "table", "methods", "n_images"}``."""
    from .apply import denoise
    from .baselines import available_baselines, run_baseline
    from .modelio import resolve_model

    methods = {}
    if model is not None:
        net = resolve_model(model)
        methods["network"] = lambda im: denoise(im, net, device=device, tile=tile)
        if no_histogram_row:
            methods["network (no histogram matching)"] = lambda im: denoise(im, net, device=device, tile=tile, histogram=False)
    if include_input:
        methods["input (not denoised)"] = lambda im: np.asarray(im, np.float32)
    names = available_baselines() if baselines in ("all", None) else list(baselines)
    for b in names:
        methods[b] = (lambda name: (lambda im: run_baseline(im, name, calibrate=calibrate)))(b)
    yield record(Kind.SETUP, message=f"{len(pairs)} test images × {len(methods)} methods", total=len(pairs) * len(methods))
    t0 = time.perf_counter()
    res = yield from evaluate_methods(pairs, methods)
    res["table"] = format_table(res["summary"])
    res["methods"] = list(methods)
    res["n_images"] = len(pairs)
    res["recipes"] = [p.recipe for p in pairs]
    res["elapsed_s"] = time.perf_counter() - t0
    yield record(Kind.DONE, message="done", step=len(pairs) * len(methods), total=len(pairs) * len(methods))
    return res


def evaluate(pairs, model="default", baselines="all", progress=None, **options) -> dict:
    """:func:`evaluate_iter` run to the end."""
    return drive(evaluate_iter(pairs, model, baselines, **options), progress)
