"""Standard routine: rolling median + LoG; tuning; bad inputs."""

import numpy as np
import pytest

from matrestore._validate import InputError
from matrestore.labdct.metrics import match_spots, prf, score_stack, spot_counts
from matrestore.labdct.routine import (find_beamstop, log_segment, rolling_median_iter, standard_routine, tune_routine,
                                       window_indices)
from matrestore.labdct.stack import FrameStack

from labdct_helpers import moving_spot_stack


def test_window_indices():
    assert window_indices(0, 20, 5, True) == [18, 19, 0, 1, 2]
    assert window_indices(0, 20, 5, False) == [0, 1, 2, 3, 4]
    assert window_indices(19, 20, 5, False) == [15, 16, 17, 18, 19]
    assert window_indices(10, 20, 11, False) == list(range(5, 16))


def test_routine_finds_planted_spots():
    stack, truth, _ = moving_spot_stack(n=12, amp=40.0)
    before = stack.copy()
    masks = standard_routine(stack, window=5, background=10.0, sigma=1.0, percent=30.0, min_size=3, beamstop=None)
    assert np.array_equal(stack, before)
    assert masks.shape == stack.shape and masks.dtype == bool
    tp = fp = fn = 0
    for k in range(len(masks)):
        c = spot_counts(masks[k], truth[k])
        tp, fp, fn = tp + c[0], fp + c[1], fn + c[2]
    s = prf(tp, fp, fn)
    assert s["recall"] > 0.9 and s["precision"] > 0.9


def test_beamstop_excluded_and_found():
    stack, truth, _ = moving_spot_stack(n=6)
    stack[:, 40:56, 40:56] = 3.0  # a dark beam-stop shadow
    bs = find_beamstop(np.median(stack, 0))
    assert bs is not None and bs[48, 48] and not bs[5, 5]
    masks = standard_routine(stack, window=5, background=5.0, percent=30.0, beamstop=(40, 56, 40, 56))
    assert not masks[:, 40:56, 40:56].any()
    masks_auto = standard_routine(stack, window=5, background=5.0, percent=30.0, beamstop="auto")
    assert not masks_auto[:, 44:52, 44:52].any()
    with pytest.raises(InputError, match="outside"):
        standard_routine(stack, window=5, beamstop=(0, 500, 0, 10))


def test_log_segment_percent_and_min_size():
    im = np.zeros((40, 40), np.float32)
    im[10, 10] = 100  # one bright pixel
    im[25:29, 25:29] = 30
    a = log_segment(im, 0, 1.0, 50, 1)
    b = log_segment(im, 0, 1.0, 50, 10)
    assert a[10, 10] and a[26, 26]
    assert not b[10, 10] or b.sum() < a.sum()
    with pytest.raises(InputError):
        log_segment(im, 0, -1, 50, 1)
    with pytest.raises(InputError):
        log_segment(im, 0, 1, 150, 1)


def test_rolling_median_memory_is_the_window():
    stack, _, _ = moving_spot_stack(n=15)

    class Counting(FrameStack):
        reads = 0

        def _read(self, k):
            Counting.reads += 1
            return super()._read(k)

    st = Counting(stack, cache=1)
    for k, f, med in rolling_median_iter(st, 5, False):
        assert med.shape == stack.shape[1:]
    assert Counting.reads <= 2 * len(stack)  # each frame read about once, not window times


def test_tuning_beats_defaults_on_the_tuning_stack():
    stack, truth, _ = moving_spot_stack(n=8, amp=25.0, jitter=0.05)
    grid = {"background": (0.0, 3.0), "sigma": (1.0,), "percent": (30.0, 60.0), "min_size": (1, 4)}
    best = tune_routine(stack, truth, window=5, beamstop=None, grid=grid)
    assert len(best["table"]) == 8
    assert best["score"] == max(s for _, s in best["table"])
    tuned = standard_routine(stack, beamstop=None, **best["params"])
    default = standard_routine(stack, window=5, beamstop=None)
    f = lambda m: prf(*np.sum([spot_counts(m[k], truth[k]) for k in range(len(m))], 0))["f1"]  # noqa: E731
    assert f(tuned) == pytest.approx(best["score"])
    assert f(tuned) >= f(default)


@pytest.mark.parametrize("bad,msg", [
    (np.ones((32, 32), np.float32), "single 2-D frame"),
    (np.ones((3, 32, 32), np.float32), "fewer than the rolling-median window"),
])
def test_routine_bad_inputs(bad, msg):
    with pytest.raises(InputError, match=msg):
        standard_routine(bad, window=5, beamstop=None)


def test_matching_rule_counts_merged_neighbours_as_a_miss():
    truth = np.zeros((20, 20), bool)
    truth[5, 5:7] = True
    truth[5, 8:10] = True  # two spots, a gap between
    pred = np.zeros_like(truth)
    pred[5, 4:11] = True  # one blob covering both
    assert spot_counts(pred, truth) == (1, 0, 1)
    pred2 = np.zeros_like(truth)
    pred2[15, 15] = True
    assert spot_counts(pred2, truth) == (0, 1, 2)
    pairs, *_ = match_spots(truth, truth)
    assert len(pairs) == 2


def test_terciles_put_noise_detections_in_the_weak_tercile():
    clean = np.zeros((1, 30, 30), np.float32)
    truth = np.zeros((1, 30, 30), bool)
    for j, v in enumerate([1, 2, 3, 10, 20, 30, 100, 200, 300]):
        clean[0, 3 * j + 1, 5] = v
        truth[0, 3 * j + 1, 5] = True
    pred = truth.copy()
    pred[0, 1, 5] = False  # miss the weakest
    pred[0, 25, 25] = True  # a noise detection
    r = score_stack(pred, truth, clean)
    assert r["terciles"]["weak"]["fn"] == 1 and r["terciles"]["weak"]["fp"] == 1
    assert r["terciles"]["strong"]["f1"] == 1.0
    assert r["spots"]["tp"] == 8 and r["n_true_spots"] == 9


def test_fast_greedy_matching_equals_plain_greedy():
    from scipy import ndimage as ndi

    from matrestore.labdct.metrics import candidates, greedy_pairs

    rng = np.random.default_rng(3)
    for _ in range(5):
        pred = ndi.binary_dilation(rng.uniform(size=(60, 60)) > 0.97, iterations=int(rng.integers(1, 3)))
        truth = ndi.binary_dilation(rng.uniform(size=(60, 60)) > 0.97)
        lp, npred = ndi.label(pred, np.ones((3, 3)))
        lt, ntrue = ndi.label(truth, np.ones((3, 3)))
        pa, pb, inter, iou = candidates(lp, npred, lt, ntrue)
        fast = sorted(greedy_pairs(pa, pb, inter, iou, npred, ntrue))
        order = np.lexsort((-inter, -iou))
        used_p, used_t, plain = set(), set(), []
        for i in order:
            if pa[i] not in used_p and pb[i] not in used_t:
                used_p.add(pa[i])
                used_t.add(pb[i])
                plain.append((int(pa[i]), int(pb[i])))
        assert fast == sorted(plain)


def test_missing_beamstop_region_is_said():
    from matrestore.labdct.routine import beamstop_mask, standard_routine_iter
    from matrestore.progress import Kind, drive

    stack, _, _ = moving_spot_stack(n=6)  # no dark shadow anywhere
    recs = []
    masks = drive(standard_routine_iter(stack, window=5, background=10.0, beamstop="auto"), recs.append)
    assert masks.shape == stack.shape
    assert any(r["kind"] == Kind.WARNING and "no beam-stop shadow" in r["message"] for r in recs)
    with pytest.raises(InputError, match="no beam-stop shadow"):
        beamstop_mask("auto", stack.shape[1:], np.median(stack, 0), required=True)
    with pytest.raises(InputError, match="empty"):
        beamstop_mask(np.zeros(stack.shape[1:], bool), stack.shape[1:])
    with pytest.raises(InputError, match="box"):
        beamstop_mask("somewhere", stack.shape[1:])
