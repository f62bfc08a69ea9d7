"""The standard routine out of core: rolling-median blocks with a halo of window // 2 frames into an
OME-Zarr store, LoG masks from the stored frames, bit-identical to the in-memory routine."""

import numpy as np
import pytest
import tifffile
import zarr

from matrestore import ngff
from matrestore._validate import InputError
from matrestore.labdct import spot_table
from matrestore.labdct.lazy import routine_lazy, routine_to_zarr, routine_to_zarr_iter, store_masks, store_spot_table
from matrestore.labdct.routine import standard_routine, standard_routine_iter
from matrestore.progress import Kind, drive


def _stack(n=13, shape=(40, 44), seed=0):
    rng = np.random.default_rng(seed)
    s = rng.poisson(100, (n,) + shape).astype(np.float32)
    s += np.linspace(0, 30, n, dtype=np.float32)[:, None, None]  # a background drifting with ω
    for k in range(n):
        r, c = 4 + (5 * k) % 30, 5 + (7 * k) % 34
        s[k, r : r + 3, c : c + 3] += 300
    s[:, 16:26, 18:28] = 2.0  # a beam-stop shadow near the centre
    return s


def _corrected(stack, window, circular):
    out = {}
    drive(standard_routine_iter(stack, window=window, beamstop=None, circular=circular,
                                sink=lambda k, corr, m: out.__setitem__(k, corr)))
    return np.stack([out[k] for k in range(len(stack))])


@pytest.mark.parametrize("circular", [False, True])
def test_routine_store_equals_the_in_memory_routine(tmp_path, circular):
    stack = _stack()
    opts = dict(window=5, sigma=1.0, percent=50.0, min_size=3, beamstop="auto", circular=circular)
    ref = standard_routine(stack, **opts)
    recs = []
    path = routine_to_zarr(stack, tmp_path / "r.zarr", chunk=3, progress=recs.append, **opts)
    steps = [r for r in recs if r["kind"] == Kind.STEP and r.get("phase") == "blocks"]
    assert steps[-1]["total"] == 4  # 0-3, 3-6, 6-9, 9-13 (a last block of 1 frame merged)
    np.testing.assert_array_equal(store_masks(path).compute(), ref)
    assert ref[:, 18:24, 20:26].sum() == 0 and ref.sum() > 0  # the shadow excluded, spots found
    stored = ngff.read_store(path)["levels"][0].compute()
    np.testing.assert_array_equal(stored, _corrected(stack, 5, circular))
    np.testing.assert_array_equal(routine_lazy(stack, window=5, circular=circular, chunk=4).compute(), stored)
    assert store_spot_table(path, stack) == spot_table(ref, stack)


def test_new_log_options_redo_only_the_masks_and_another_stack_is_refused(tmp_path):
    stack = _stack()
    path = routine_to_zarr(stack, tmp_path / "r.zarr", window=5, chunk=4)
    recs = []
    routine_to_zarr(stack, path, window=5, chunk=4, sigma=1.5, percent=30.0, background=3.0, progress=recs.append)
    assert not [r for r in recs if r["kind"] == Kind.STEP and r.get("phase") == "blocks"]  # no block recomputed
    assert [r for r in recs if r.get("phase") == "masks"]
    ref = standard_routine(stack, window=5, sigma=1.5, percent=30.0, background=3.0)
    np.testing.assert_array_equal(store_masks(path).compute(), ref)
    info = zarr.open_group(str(path), mode="r").attrs["matrestore"]["masks"]
    assert info["method"] == "routine" and info["sigma"] == 1.5 and info["complete"]
    with pytest.raises(InputError, match="already exists"):
        routine_to_zarr(_stack(seed=1), path, window=5, chunk=4)
    with pytest.raises(InputError, match="already exists"):  # another window: other frames
        routine_to_zarr(stack, path, window=7, chunk=4)
    with pytest.raises(InputError, match="fewer than the rolling-median window"):
        routine_to_zarr(stack[:4], tmp_path / "s.zarr", window=5)


def test_cancel_then_resume_gives_the_same_masks(tmp_path):
    stack = _stack()
    ref = standard_routine(stack, window=5)
    stop = {"flag": False}
    path = tmp_path / "r.zarr"
    recs = []
    for r in routine_to_zarr_iter(stack, path, window=5, chunk=3, cancel=lambda: stop["flag"]):
        recs.append(r)
        if r["kind"] == Kind.STEP and r.get("phase") == "blocks" and r["step"] >= 1:
            stop["flag"] = True
    assert recs[-1]["kind"] == Kind.STOPPED
    recs = []
    routine_to_zarr(stack, path, window=5, chunk=3, progress=recs.append)
    setup = [r for r in recs if r["kind"] == Kind.SETUP and r.get("phase") == "blocks"][0]
    assert setup["resumed"] and 0 < setup["step"] < setup["total"]
    np.testing.assert_array_equal(store_masks(path).compute(), ref)


def test_cli_routine_into_a_store_equals_the_tiff_output(tmp_path):
    from matrestore.cli import main

    stack = _stack().astype(np.uint16)
    src = tmp_path / "stack.tif"
    tifffile.imwrite(src, stack)
    common = ["--window", "5", "--beamstop", "auto"]
    assert main(["labdct", "routine", str(src), "-o", str(tmp_path / "m.tif")] + common) == 0
    store = tmp_path / "r.zarr"
    assert main(["labdct", "routine", str(src), "--out", str(store), "--chunk", "4", "--table",
                 str(tmp_path / "spots.csv")] + common) == 0
    np.testing.assert_array_equal(store_masks(store).compute(), tifffile.imread(tmp_path / "m.tif") > 0)
    assert (tmp_path / "spots.csv").read_text().startswith("frame,label")
    assert main(["labdct", "routine", str(src), "--out", str(tmp_path / "x.zarr"), "--window", "21"]) == 2
