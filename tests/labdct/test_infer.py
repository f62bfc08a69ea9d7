"""clean / segment / spot_table and the input checks of stacks."""

import numpy as np
import pytest
import tifffile
import torch

from matrestore._validate import InputError
from matrestore.labdct import FrameStack, build_model, clean, segment, spot_table
from matrestore.labdct.infer import neighbour_indices
from matrestore.labdct.stack import is_full_turn, omegas_from_names


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model("tiny").eval()


def test_clean_shape_dtype_and_any_intensity_scale(tiny):
    rng = np.random.default_rng(0)
    stack = rng.poisson(100, (4, 40, 48)).astype(np.uint16)
    before = stack.copy()
    a = clean(stack, tiny)
    assert a.shape == stack.shape and a.dtype == np.float32
    assert np.array_equal(stack, before)
    assert 0 <= a.min() and a.max() <= 1
    b = clean(stack.astype(np.float32) * 37.5, tiny)  # rescaled stack: same output
    assert np.abs(a - b).max() < 1e-5
    c = clean(stack.astype(np.float64) / 1000.0, tiny)
    assert np.abs(a - c).max() < 1e-5


def test_clean_rejects_single_frame_for_a_neighbour_model(tiny):
    with pytest.raises(InputError, match="neighbours"):
        clean(np.ones((32, 32), np.float32), tiny)
    single = build_model("tiny", neighbours=0).eval()
    out = clean(np.random.default_rng(1).uniform(1, 2, (32, 32)).astype(np.float32), single)
    assert out.shape == (32, 32)


def test_neighbour_indices():
    assert neighbour_indices(0, 5, 1, False) == [1, 0, 1]
    assert neighbour_indices(4, 5, 1, False) == [3, 4, 3]
    assert neighbour_indices(0, 5, 1, True) == [4, 0, 1]


@pytest.mark.parametrize("bad,msg", [
    (np.full((3, 16, 16), np.nan, np.float32), "NaN"),
    (np.zeros((3, 16, 16), np.uint16), "all zero"),
    ([np.ones((16, 16)), np.ones((16, 18)), np.ones((16, 16))], "different shapes"),
    (np.ones((3, 16, 16), complex), "data type"),
    (np.ones((2, 3, 16, 16)), "shape"),
])
def test_bad_stacks(tiny, bad, msg):
    with pytest.raises(InputError, match=msg):
        clean(bad, tiny)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
def test_dtypes_accepted(tiny, dtype):
    stack = (np.random.default_rng(2).uniform(10, 200, (3, 24, 24))).astype(dtype)
    assert clean(stack, tiny).shape == (3, 24, 24)


def test_segment_and_spot_table():
    cleaned = np.zeros((2, 20, 20), np.float32)
    cleaned[0, 3:5, 3:5] = 0.9
    cleaned[1, 10, 10:13] = 0.5
    cleaned[1, 15, 15] = 0.01  # below 5/255
    masks = segment(cleaned)
    assert masks.dtype == bool and masks.sum() == 4 + 3
    stack = np.ones((2, 20, 20), np.float32)
    stack[0, 3:5, 3:5] = [[10, 20], [30, 40]]
    stack[1, 10, 10:13] = 5
    rows = spot_table(masks, stack, omegas=[180.0, 177.0])
    assert len(rows) == 2
    r0 = rows[0]
    assert r0["frame"] == 0 and r0["area"] == 4 and r0["max_intensity"] == 40 and r0["mean_intensity"] == 25
    assert r0["centroid_row"] == pytest.approx((10 * 3 + 20 * 3 + 30 * 4 + 40 * 4) / 100)
    assert rows[1]["omega"] == 177.0 and rows[1]["centroid_col"] == pytest.approx(11.0)
    assert not segment(cleaned, beamstop=(0, 10, 0, 10))[0].any()
    with pytest.raises(InputError):
        segment(cleaned, threshold=5)
    with pytest.raises(InputError):
        spot_table(masks[:1], stack)


def test_frame_stack_from_folder_lazily_with_omegas(tmp_path):
    for k in range(1, 5):
        tifffile.imwrite(tmp_path / f"scan_{k:04d}.tiff", np.full((8, 8), k, np.uint16))
    geo = tmp_path / "input_main.m"
    geo.write_text("Lsam2det = 100\nLsam2sou = [-100 0 0]\nrot_start = 180;\nrot_step = -3;\n"
                   "pixelysize = 0.034\ndetysize = 16\n")
    st = FrameStack(tmp_path, geometry_file=geo)
    assert len(st) == 4 and st.shape == (8, 8)
    assert st.omegas == [180.0, 177.0, 174.0, 171.0]
    assert st[2][0, 0] == 3 and st[2].dtype == np.float32
    assert len(st._cache) <= 4
    tifffile.imwrite(tmp_path / "scan_0005.tiff", np.ones((9, 8), np.uint16))
    st2 = FrameStack(tmp_path)
    with pytest.raises(InputError, match="shape"):
        st2[4]


def test_omegas_from_names_and_full_turn():
    assert omegas_from_names(["a_omega-3.0.tif", "a_omega0.tif", "a_omega3p5.tif"]) == [-3.0, 0.0, 3.5]
    assert omegas_from_names(["frame1.tif"]) is None
    assert is_full_turn(np.arange(0, 360, 2.0)) and not is_full_turn(180 - 3 * np.arange(40))


def test_single_frame_tiff_is_not_a_stack(tmp_path):
    p = tmp_path / "one.tif"
    tifffile.imwrite(p, np.ones((8, 8), np.uint16))
    with pytest.raises(InputError, match="single 2-D frame"):
        FrameStack(p)
