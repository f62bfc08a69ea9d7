"""The shipped default model: loads, says what it was trained on, never saw the test backgrounds."""

import numpy as np

from matrestore.labdct import clean, load_model
from matrestore.labdct.modelio import DEFAULT_MODEL


def test_default_model_is_shipped_and_self_describing():
    assert DEFAULT_MODEL.is_file() and DEFAULT_MODEL.stat().st_size < 8e6
    m = load_model("default")
    assert m.meta["task"] == "labdct" and m.cfg.preset == "cpu" and m.cfg.neighbours == 1
    assert "0001-0028" in m.meta["backgrounds"]["training"] and "0029-0040" in m.meta["backgrounds"]["test (never seen)"]
    held = m.meta["metrics"]["held_out"]
    assert held["network"]["f1"] > held["routine_tuned"]["f1"]
    assert m.meta["calibration_source"]["stack"].startswith("tuning stack")


def test_default_model_cleans_a_flat_noisy_stack_to_nearly_nothing():
    rng = np.random.default_rng(0)
    stack = rng.poisson(300, (3, 64, 64)).astype(np.uint16)
    stack[1, 30:33, 30:33] += 400  # one bright spot
    out = clean(stack, "default")
    assert out[1, 31, 31] > 0.5
    assert np.mean(out[1] > 5 / 255) < 0.05
