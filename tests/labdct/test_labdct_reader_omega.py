"""ω per frame in the napari reader (labdct.stack.layer_metadata), the routine's options dataclass and
its single-frame preview."""

import numpy as np
import pytest
import tifffile

from matrestore._reader import read_layers
from matrestore._validate import InputError
from matrestore.labdct.routine import RoutineOptions, routine_preview, standard_routine
from matrestore.labdct.stack import OMEGA_KEY, layer_metadata, omegas_from_names


GEOMETRY = "Lsam2det = 100\nLsam2sou = [-100 0 0]\nbinning = 2\npixelysize = 0.034\ndetysize = 2048\n"


def _frames(folder, names, shape=(16, 16)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for n in names:
        tifffile.imwrite(folder / n, (100 + rng.integers(0, 20, shape)).astype(np.uint16))


def test_reader_takes_omega_from_file_names(tmp_path):
    _frames(tmp_path / "st", [f"scan_omega{w}.tif" for w in (0, 3, 6, 9)])
    (data, kw, kind), = read_layers(tmp_path / "st")
    assert kind == "image" and data.shape == (4, 16, 16)
    assert kw["metadata"][OMEGA_KEY] == [0.0, 3.0, 6.0, 9.0]
    assert kw["metadata"]["omega_source"] == "file names"


def test_reader_takes_omega_from_input_main_m(tmp_path):
    _frames(tmp_path / "st", [f"Iron_Export{k:04d}.tiff" for k in (1, 2, 3, 10)])
    (tmp_path / "st" / "input_main.m").write_text(GEOMETRY + "rot_start = 180;\nrot_step = -3;\n")
    (_, kw, _), = read_layers(tmp_path / "st")
    assert kw["metadata"][OMEGA_KEY] == [180.0, 177.0, 174.0, 153.0]  # from the frame numbers, not the order
    assert "input_main.m" in kw["metadata"]["omega_source"]


def test_reader_without_omega_and_with_a_multipage_tiff(tmp_path):
    _frames(tmp_path / "st", ["nw1_0000.tif", "nw1_0001.tif"])  # "w1" is not an ω
    (_, kw, _), = read_layers(tmp_path / "st")
    assert OMEGA_KEY not in kw["metadata"]
    stack = np.full((3, 8, 8), 5, np.uint16)
    tifffile.imwrite(tmp_path / "multi.tif", stack)
    (tmp_path / "input_main.m").write_text(GEOMETRY + "rot_start = 0;\nrot_step = 120;\n")
    assert layer_metadata(tmp_path / "multi.tif")[OMEGA_KEY] == [0.0, 120.0, 240.0]
    assert layer_metadata(tmp_path / "multi.tif")["full_turn"] is True
    assert omegas_from_names(["nw1_0000.tif"]) is None and omegas_from_names(["a_w12.tif"]) == [12.0]


def test_routine_options_check_and_preview_equals_the_full_run(spot_stack):
    stack, truth, _ = spot_stack
    with pytest.raises(InputError, match="σ"):
        RoutineOptions(sigma=0).check()
    with pytest.raises(InputError, match="window"):
        RoutineOptions(window=0).check()
    o = RoutineOptions(window=5, beamstop=None, sigma=1.0, percent=40.0, min_size=3)
    masks = standard_routine(stack, **o.kwargs())
    for k in (0, 6, 11):
        corr, m = routine_preview(stack, k, o)
        np.testing.assert_array_equal(m, masks[k])
        assert corr.dtype == np.float32 and m[truth[k]].mean() > 0.5
    with pytest.raises(InputError, match="single 2-D frame"):
        routine_preview(stack[0], 0, o)
    with pytest.raises(InputError, match="fewer than the rolling-median window"):
        routine_preview(stack[:3], 0, o)
