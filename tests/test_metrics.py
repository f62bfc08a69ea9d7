import math

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from matrestore import metrics
from matrestore._validate import InputError


def test_psnr_and_ssim_match_scikit_image(textured):
    noisy = np.clip(textured + np.random.default_rng(1).normal(0, 0.05, textured.shape), 0, 1)
    assert metrics.psnr(textured, noisy) == pytest.approx(peak_signal_noise_ratio(textured, noisy, data_range=1))
    assert metrics.ssim(textured, noisy) == pytest.approx(structural_similarity(textured, noisy, data_range=1), abs=1e-9)


def test_default_data_range_uses_dtype():
    cam = data.camera()
    other = np.clip(cam.astype(int) + 10, 0, 255).astype(np.uint8)
    assert metrics.psnr(cam, other) == pytest.approx(peak_signal_noise_ratio(cam, other, data_range=255))
    big = cam.astype(np.uint16)
    # uint16 container: the dtype range (65535) is the default, effective_data_range finds 8 bits
    assert metrics.default_data_range(big) == 65535
    assert metrics.effective_data_range(big) == 255
    assert metrics.effective_data_range((big * 16).astype(np.uint16)) == 4095
    assert metrics.effective_data_range(cam.astype(np.float32) / 255) == 1.0


def test_identical_images():
    cam = data.camera()
    assert metrics.psnr(cam, cam) == math.inf
    assert metrics.ssim(cam, cam) == pytest.approx(1.0)
    assert metrics.essim(cam, cam) == pytest.approx(1.0)


def test_essim_symmetric_and_bounded(textured):
    rng = np.random.default_rng(0)
    other = np.clip(textured[::-1] * 0.7 + rng.normal(0, 0.1, textured.shape), 0, 1)
    a, b = metrics.essim(textured, other), metrics.essim(other, textured)
    assert a == pytest.approx(b, abs=1e-12)
    value, emap = metrics.essim(textured, 1 - textured, full=True)
    assert -1 <= emap.min() and emap.max() <= 1
    assert value < 0.2  # inverted contrast: every edge points the opposite way
    assert -1 <= a <= 1


@pytest.mark.parametrize("sigma", [0.7, 1.0, 2.0, 4.0])
def test_essim_falls_further_than_ssim_under_blur(sigma):
    cam = data.camera().astype(np.float64) / 255
    blurred = ndi.gaussian_filter(cam, sigma)
    drop_ssim = 1 - metrics.ssim(cam, blurred)
    drop_essim = 1 - metrics.essim(cam, blurred)
    assert drop_essim > drop_ssim > 0


def test_essim_ranks_blur_monotonically(textured):
    values = [metrics.essim(textured, ndi.gaussian_filter(textured, s)) for s in (0.5, 1, 2, 3)]
    assert all(a > b for a, b in zip(values, values[1:]))


def test_essim_sensitive_to_edge_direction():
    # a vertical and a horizontal edge with the same luminance and contrast
    v = np.zeros((32, 32))
    v[:, 16:] = 1
    assert metrics.essim(v, v.T, data_range=1) < metrics.ssim(v, v.T, data_range=1)


def test_full_maps_have_image_shape(textured):
    _, smap = metrics.ssim(textured, textured * 0.9, full=True)
    _, emap = metrics.essim(textured, textured * 0.9, full=True)
    assert smap.shape == emap.shape == textured.shape


@pytest.mark.parametrize(
    "a,b,msg",
    [
        (np.zeros((10, 10)), np.zeros((10, 12)), "shape"),
        (np.zeros((10, 10, 3)), np.zeros((10, 10, 3)), "RGB"),
        (np.full((10, 10), np.nan), np.zeros((10, 10)), "NaN"),
        (np.zeros((0, 10)), np.zeros((0, 10)), "empty"),
        (np.zeros((5, 5)), np.zeros((5, 5)), "window"),
        (np.zeros((4, 10, 10)), np.zeros((4, 10, 10)), "2-D"),
    ],
)
def test_bad_input_messages(a, b, msg):
    with pytest.raises(InputError, match=msg):
        metrics.essim(a, b, data_range=1)


def test_inputs_not_modified(textured):
    a = textured.copy()
    b = ndi.gaussian_filter(textured, 1)
    b0 = b.copy()
    metrics.compute_all(a, b)
    np.testing.assert_array_equal(a, textured)
    np.testing.assert_array_equal(b, b0)


def test_summary_mean_and_standard_error():
    per_image = [{"bicubic": {"psnr": 20.0}}, {"bicubic": {"psnr": 22.0}}, {"bicubic": {"psnr": 24.0}}]
    s = metrics.summarize(per_image)["bicubic"]["psnr"]
    assert s["mean"] == pytest.approx(22.0)
    assert s["sem"] == pytest.approx(2.0 / math.sqrt(3))  # sample std 2, n = 3
    assert s["n"] == 3
    assert metrics.mean_sem([5.0]) == (5.0, 0.0)
