import numpy as np
import pytest

from matrestore import InputError
from matrestore.denoise import available_baselines, boundary_f1, evaluate_output, grain_stats, run_baseline, segment
from matrestore.denoise.scoring import affine_fit, format_table, summarise
from matrestore.denoise.synth import boundary_map


def test_segmentation_of_ground_truth_is_perfect(small_pair):
    m = evaluate_output(small_pair.clean, small_pair.clean, small_pair.labels, small_pair.masks)
    assert m["f1"] > 0.99 and m["count_err"] <= 0.05  # grains below the rule's 30 px minimum merge
    assert m["scratch"] < 1e-9


def test_rule_does_not_depend_on_the_grey_scale(small_pair):
    c = small_pair.clean.astype(np.float64)
    a = segment(c)
    for t in (c * 250 + 17, -3 * c + 2, (c * 65535).astype(np.uint16), np.sqrt(c), np.exp(4 * c)):
        np.testing.assert_array_equal(boundary_map(segment(t)), boundary_map(a))


def test_noisy_input_scores_below_ground_truth(small_pair):
    m = evaluate_output(small_pair.noisy, small_pair.clean, small_pair.labels, small_pair.masks)
    assert m["f1"] < 0.95
    assert m["scratch"] > 0 or not small_pair.masks["scratch"].any()


def test_boundary_f1_tolerance():
    t = np.zeros((20, 20), bool)
    t[:, 10] = True
    p = np.zeros_like(t)
    p[:, 12] = True
    assert boundary_f1(p, t, tol=2)["f1"] == 1.0
    assert boundary_f1(p, t, tol=1)["f1"] == 0.0
    half = np.zeros_like(t)
    half[:10, 10] = True
    r = boundary_f1(half, t)
    assert r["precision"] == 1.0 and r["recall"] == 0.6  # 10 covered + 2 within the tolerance
    with pytest.raises(InputError):
        boundary_f1(p[:5], t)


def test_grain_stats_counts_and_inner_area():
    lab = np.ones((30, 30), int)
    lab[10:20, 10:20] = 2
    s = grain_stats(lab)
    assert s["count"] == 2 and s["mean_area"] == 100


def test_affine_fit_recovers_scale():
    rng = np.random.default_rng(0)
    g = rng.random((16, 16))
    np.testing.assert_allclose(affine_fit(3 * g - 5, g), g, atol=1e-12)


@pytest.mark.parametrize("name", [b for b in available_baselines() if b != "bm3d"])
def test_baselines_run_without_ground_truth(small_pair, name):
    img = small_pair.noisy
    keep = img.copy()
    out, params = run_baseline(img, name, return_params=True)
    np.testing.assert_array_equal(img, keep)
    assert out.shape == img.shape and out.dtype == np.float32
    assert np.isfinite(out).all()
    assert params["method"] == name and params["sigma_est"] > 0
    # the result is smoother than the input (lower high-frequency energy), in the input's scale
    hf = lambda a: np.abs(np.diff(a.astype(float), axis=1)).mean()  # noqa: E731
    assert hf(out) < hf(img)
    assert abs(np.median(out) - np.median(img)) < 0.25 * np.ptp(img)


def test_bm3d_only_when_installed(small_pair):
    if "bm3d" in available_baselines():
        assert run_baseline(small_pair.noisy, "bm3d").shape == small_pair.noisy.shape
    else:
        with pytest.raises(InputError, match="optional 'bm3d'"):
            run_baseline(small_pair.noisy, "bm3d")
    with pytest.raises(InputError, match="unknown baseline"):
        run_baseline(small_pair.noisy, "magic")


def test_table_and_summary():
    s = summarise({"a": [{"f1": 0.5, "psnr": 10.0}, {"f1": 0.7, "psnr": 12.0}]})
    assert abs(s["a"]["f1"] - 0.6) < 1e-12 and s["a"]["n"] == 2
    t = format_table(s)
    assert "| a |" in t and "0.600" in t and "boundary F1" in t
