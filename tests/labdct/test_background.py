"""Appendix A background extraction and eqs. 1-2."""

import numpy as np
import pytest

from matrestore._validate import InputError
from matrestore.labdct.background import extract_background, ground_truth, spot_mask_for_background, synthesize

from labdct_helpers import moving_spot_stack


def test_extraction_removes_moving_spots():
    stack, truth, bg = moving_spot_stack(n=12, shape=(96, 96), level=100.0, amp=80.0)
    before = stack.copy()
    out = extract_background(stack, window=60)
    assert np.array_equal(stack, before)  # input untouched
    assert out.shape == stack.shape and out.dtype == np.float32
    assert out.max() <= 1.0 + 1e-6 and out.min() >= 0
    ref = bg / bg.max()
    for k in range(len(out)):
        # where the spots were, the background is back (the spots, +80 on ~100, are gone)
        err_spots = np.abs(out[k] - ref)[truth[k]].mean()
        raw_spots = np.abs(stack[k] / stack[k].max() - ref)[truth[k]].mean()
        assert err_spots < 0.03 < raw_spots
        assert np.abs(out[k] - ref)[8:-8, 8:-8].max() < 0.08


def test_spot_mask_finds_spots():
    stack, truth, _ = moving_spot_stack(n=2)
    m = spot_mask_for_background(stack[0])
    assert m[truth[0]].mean() > 0.95
    assert m.mean() < 0.5


def test_eq1_eq2_statistics():
    rng = np.random.default_rng(0)
    spots = np.zeros((200, 200), np.float32)
    spots[50:60, 50:60] = 40.0
    bg = np.full((200, 200), 0.5, np.float32)
    i0, tau = 110.0, 1.0
    xs = np.stack([synthesize(spots, bg, i0, tau, rng) for _ in range(30)])
    # per frame R_BG in [I0 - sqrt(I0), I0 + sqrt(I0)]; mean of x = (1 + tau/2) x0, var = tau² x0 / 2
    flat = xs[:, 100:, 100:]
    r_est = flat.mean(axis=(1, 2)) / (1 + tau / 2) / 0.5
    assert np.all(r_est > i0 - np.sqrt(i0) - 1) and np.all(r_est < i0 + np.sqrt(i0) + 1)
    assert r_est.std() > 2.0  # the level changes from frame to frame
    x0 = r_est[:, None, None] * 0.5
    var = ((flat - (1 + tau / 2) * x0) ** 2).mean()
    assert var == pytest.approx(tau**2 * float(x0.mean()) / 2, rel=0.05)
    spot_gain = xs[:, 50:60, 50:60].mean() - xs[:, 100:110, 100:110].mean()
    assert spot_gain == pytest.approx(40.0 * (1 + tau / 2), rel=0.1)
    with pytest.raises(InputError):
        synthesize(spots, bg[:10], i0, tau, rng)


def test_ground_truth_is_the_spots():
    spots = np.zeros((64, 64), np.float32)
    spots[10:13, 10:13] = 50.0
    spots[40:42, 30:35] = 5.0
    gt = ground_truth(spots, gt_level=1.0)
    assert gt[11, 11] and gt[40, 32] and not gt[0:5, 0:5].any()
    assert gt.sum() < 40
