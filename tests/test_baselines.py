import numpy as np
import pytest

from matrestore import baselines
from matrestore._validate import InputError
from matrestore.degrade import downsample


@pytest.mark.parametrize("method", ["bicubic", "lanczos"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_linear_ramp_reproduced_in_interior(method, scale):
    n = 24
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    lr = 0.3 * xx - 0.2 * yy + 5.0
    up = baselines.upsample(lr, scale, method)
    j = np.arange(n * scale)
    coord = (j + 0.5) / scale - 0.5  # LR coordinate of each HR pixel centre
    expected = 0.3 * coord[None, :] - 0.2 * coord[:, None] + 5.0
    m = 4 * scale  # away from the replicated borders
    tol = 1e-9 if method == "bicubic" else 2e-2  # Lanczos-3 is not exactly linear-preserving
    np.testing.assert_allclose(up[m:-m, m:-m], expected[m:-m, m:-m], atol=tol)


@pytest.mark.parametrize("method", baselines.METHODS)
def test_shape_dtype_and_constant(method):
    lr = np.full((7, 9), 100, dtype=np.uint8)
    up = baselines.upsample(lr, 4, method)
    assert up.shape == (28, 36) and up.dtype == np.uint8
    assert np.all(up == 100)


def test_nearest_is_block_replication():
    lr = np.arange(6, dtype=np.float32).reshape(2, 3)
    up = baselines.upsample(lr, 2, "nearest")
    np.testing.assert_array_equal(up[:2, :2], 0)
    np.testing.assert_array_equal(up[2:, 4:], 5)


def test_area_average_roundtrip_is_consistent():
    # downsampling the upsampled image by area averaging gives back (nearly) the LR image
    rng = np.random.default_rng(0)
    lr = rng.random((16, 16))
    for method in baselines.METHODS:
        back = downsample(baselines.upsample(lr, 4, method), 4)
        err = np.abs(back - lr)[2:-2, 2:-2].mean()
        assert err < (1e-12 if method == "nearest" else 0.1)


def test_integer_output_clipped():
    lr = np.zeros((8, 8), dtype=np.uint8)
    lr[:, 4:] = 255
    up = baselines.upsample(lr, 4, "lanczos")  # overshoots, must clip not wrap
    assert up.dtype == np.uint8 and up[:, -1].min() == 255 and up[:, 0].max() == 0


def test_bad_inputs():
    with pytest.raises(InputError, match="method"):
        baselines.upsample(np.zeros((4, 4)), 4, "spline")
    with pytest.raises(InputError, match="scale"):
        baselines.upsample(np.zeros((4, 4)), 2.5, "bicubic")
    with pytest.raises(InputError, match="RGB"):
        baselines.upsample(np.zeros((4, 4, 3)), 2, "bicubic")


def test_upsampled_geometry_overlays_input():
    scale_hr, translate_hr = baselines.upsampled_geometry((8.0, 8.0), (100.0, 0.0), 4)
    assert scale_hr == (2.0, 2.0)
    # the mean position of the 4 HR pixel centres covering LR pixel 0 is the LR pixel centre
    centres = translate_hr[0] + np.arange(4) * scale_hr[0]
    assert centres.mean() == pytest.approx(100.0)
