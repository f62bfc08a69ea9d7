import numpy as np
import pytest

from matrestore._validate import InputError
from matrestore.degrade import downsample


def test_area_average_and_crop():
    hr = np.arange(10 * 9, dtype=np.float64).reshape(10, 9)
    lr = downsample(hr, 4)
    assert lr.shape == (2, 2)
    assert lr[0, 0] == pytest.approx(hr[:4, :4].mean())
    assert lr[1, 1] == pytest.approx(hr[4:8, 4:8].mean())


def test_integer_dtype_rounded():
    hr = np.array([[0, 1], [1, 1]], dtype=np.uint8)
    lr = downsample(hr, 2)
    assert lr.dtype == np.uint8 and lr[0, 0] == 1  # 0.75 rounds to 1


def test_noise_is_seeded():
    hr = np.full((64, 64), 0.5)
    a = downsample(hr, 4, noise=0.05, seed=3)
    b = downsample(hr, 4, noise=0.05, seed=3)
    c = downsample(hr, 4, noise=0.05, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.std() == pytest.approx(0.05, rel=0.3)
    np.testing.assert_array_equal(downsample(hr, 4), 0.5)


def test_input_untouched_and_errors():
    hr = np.random.default_rng(0).random((16, 16))
    hr0 = hr.copy()
    downsample(hr, 4, noise=0.1)
    np.testing.assert_array_equal(hr, hr0)
    with pytest.raises(InputError, match="smaller"):
        downsample(np.zeros((3, 8)), 4)
    with pytest.raises(InputError, match="noise"):
        downsample(hr, 4, noise=-1)
