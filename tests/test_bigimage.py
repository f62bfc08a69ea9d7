"""The block engine (matrestore.bigimage) and OME-Zarr stores (matrestore.ngff) with a cheap kernel."""

import errno
import json

import dask.array as da
import numpy as np
import pytest
import zarr

from matrestore import bigimage, ngff
from matrestore._validate import InputError
from matrestore.bigimage import SmoothUpKernel
from matrestore.io import open_lazy
from matrestore.progress import Kind, drive


def _image(shape=(70, 90), seed=0):
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def test_block_grid_rounds_to_the_tile_grid_and_merges_thin_last_blocks():
    g = bigimage.block_grid((100, 75), chunk=30, grid=8, halo=5)
    assert g.rows == (0, 32, 64, 100)  # 32 = 30 rounded to the grid of 8; last 4 rows merged (thinner than 5)
    assert g.cols == (0, 32, 64, 75)  # 64..75 is 11 px: kept
    assert g.notes and "rounded to 32" in g.notes[0]
    # a chunk below the halo grows past it (dask's overlap needs it)
    g2 = bigimage.block_grid((100, 100), chunk=4, grid=4, halo=9)
    assert all(c > 9 for c in g2.chunks[0][:-1])
    with pytest.raises(InputError, match="chunk"):
        bigimage.block_grid((10, 10), chunk=0, grid=4, halo=1)


def test_lazy_map_equals_the_whole_image_exactly_whatever_the_input_chunks():
    img = _image()
    k = SmoothUpKernel(scale=2, grid=8, halo=2)
    x = da.from_array(img, chunks=(13, 17))  # input chunks unrelated to the blocks
    out, grid = bigimage.lazy_map(x, k, chunk=16)
    assert out.shape == (140, 180) and out.chunks[0][0] == 32
    assert grid.shape[0] > 2 and grid.shape[1] > 2
    np.testing.assert_array_equal(out.compute(), k.whole(img))


def test_input_chunks_smaller_than_the_halo_are_rechunked_and_said(tmp_path):
    img = _image((40, 40))
    k = SmoothUpKernel(scale=2, grid=8, halo=3)
    recs = []
    path = bigimage.store(da.from_array(img, chunks=(2, 2)), k, tmp_path / "o.zarr", chunk=16, progress=recs.append)
    notes = [r["message"] for r in recs if r["kind"] == Kind.WARNING]
    assert any("smaller than the 3 px halo" in n and "rechunked" in n for n in notes)
    np.testing.assert_array_equal(ngff.read_store(path)["levels"][0].compute(), k.whole(img))


def test_store_writes_ngff_with_pyramid_and_pixel_size(tmp_path, monkeypatch):
    monkeypatch.setattr(ngff, "MIN_LEVEL_SIDE", 40)
    img = _image((60, 50))
    k = SmoothUpKernel(scale=2, grid=8, halo=1)
    recs = []
    path = bigimage.store(da.from_array(img), k, tmp_path / "out.zarr", chunk=16, pixel_size_nm=500.0,
                          translate=(1000.0, 2000.0), progress=recs.append)
    assert recs[-1]["kind"] == Kind.DONE
    steps = [r for r in recs if r["kind"] == Kind.STEP]
    assert steps[-1]["step"] == steps[-1]["total"] == 4 * 4
    doc = ngff.read_store(path)
    assert doc["complete"] is True
    np.testing.assert_array_equal(doc["levels"][0].compute(), k.whole(img))
    assert [lv.shape for lv in doc["levels"]] == [(120, 100), (60, 50), (30, 25)]
    np.testing.assert_allclose(doc["levels"][1].compute(), k.whole(img).reshape(60, 2, 50, 2).mean((1, 3)), rtol=1e-6)
    assert doc["pixel_size_nm"] == pytest.approx(250.0)  # the input's 500 nm / scale 2
    assert doc["translate_nm"] == pytest.approx((1000.0, 2000.0))
    meta = json.loads((path / "zarr.json").read_text())["attributes"]["ome"]
    assert meta["version"] == "0.5"
    ms = meta["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["y", "x"] and ms["axes"][0]["unit"] == "nanometer"
    assert ms["datasets"][1]["coordinateTransformations"][0]["scale"] == [500.0, 500.0]
    # open_lazy reads it back like any image (level 0, pixel size)
    lz = open_lazy(path)
    assert lz.data.shape == (120, 100) and lz.pixel_size_nm == pytest.approx(250.0)


def test_cancel_leaves_a_resumable_store_and_a_rerun_skips_written_blocks(tmp_path):
    img = _image((64, 64))
    k = SmoothUpKernel(scale=2, grid=8, halo=1)
    path = tmp_path / "out.zarr"
    seen = {"n": 0}

    def cancel():
        return seen["n"] >= 3

    gen = bigimage.store_iter(da.from_array(img), k, path, chunk=16, cancel=cancel)
    recs = []
    while True:
        try:
            r = next(gen)
        except StopIteration as stop:
            result = stop.value
            break
        recs.append(r)
        if r["kind"] == Kind.STEP:
            seen["n"] = r["step"]
    assert result is None and recs[-1]["kind"] == Kind.STOPPED
    assert ngff.read_store(path)["complete"] is False  # nothing that looks complete
    done_first = len(list((path / bigimage.MARKERS).iterdir()))
    assert 3 <= done_first < 16
    k2 = SmoothUpKernel(scale=2, grid=8, halo=1)  # same computation (same token): resumes
    recs2 = []
    bigimage.store(da.from_array(img), k2, path, chunk=16, progress=recs2.append)
    assert k2.calls == 16 - done_first  # only the missing blocks were computed
    assert any("resuming" in (r.get("message") or "") for r in recs2)
    doc = ngff.read_store(path)
    assert doc["complete"] is True
    np.testing.assert_array_equal(doc["levels"][0].compute(), k.whole(img))


def test_a_block_without_its_completion_record_is_redone(tmp_path):
    img = _image((48, 48))
    k = SmoothUpKernel(scale=2, grid=8, halo=1)
    path = bigimage.store(da.from_array(img), k, tmp_path / "o.zarr", chunk=16)
    arr = zarr.open_array(str(path / "0"), mode="r+")
    arr[0:32, 0:32] = -1.0  # a crash in the middle of writing block (0, 0): garbage and no record
    (path / bigimage.MARKERS / "0.0").unlink()
    k2 = SmoothUpKernel(scale=2, grid=8, halo=1)
    bigimage.store(da.from_array(img), k2, path, chunk=16)
    assert k2.calls == 1
    np.testing.assert_array_equal(ngff.read_store(path)["levels"][0].compute(), k.whole(img))


def test_existing_stores_of_another_shape_or_foreign_are_refused_unless_overwrite(tmp_path):
    k = SmoothUpKernel(scale=2, grid=8, halo=1)
    path = bigimage.store(da.from_array(_image((32, 32))), k, tmp_path / "o.zarr", chunk=16)
    with pytest.raises(InputError, match="another shape"):
        bigimage.store(da.from_array(_image((40, 32))), k, path, chunk=16)
    assert ngff.read_store(path)["levels"][0].shape == (64, 64)  # untouched
    bigimage.store(da.from_array(_image((40, 32))), k, path, chunk=16, overwrite=True)
    assert ngff.read_store(path)["levels"][0].shape == (80, 64)
    foreign = tmp_path / "foreign.zarr"
    zarr.open_group(str(foreign), mode="w").create_array("0", shape=(4, 4), dtype="f4")
    with pytest.raises(InputError, match="not written by matrestore"):
        bigimage.store(da.from_array(_image((32, 32))), k, foreign, chunk=16)
    assert zarr.open_group(str(foreign), mode="r")["0"].shape == (4, 4)
    afile = tmp_path / "a.zarr"
    afile.write_text("not a store")
    with pytest.raises(InputError, match="is a file"):
        bigimage.store(da.from_array(_image((32, 32))), k, afile)
    assert afile.read_text() == "not a store"


def test_unwritable_output_place_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="does not exist"):
        bigimage.store(da.from_array(_image((16, 16))), SmoothUpKernel(), blocker / "o.zarr")


def test_disk_full_while_writing_is_a_clear_error_and_the_store_never_looks_complete(tmp_path, monkeypatch):
    img = _image((48, 48))
    k = SmoothUpKernel(scale=2, grid=8, halo=1)
    real = zarr.Array.__setitem__
    calls = {"n": 0}

    def full(self, key, value):
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, key, value)

    monkeypatch.setattr(zarr.Array, "__setitem__", full)
    path = tmp_path / "o.zarr"
    with pytest.raises(InputError, match="disk full"):
        bigimage.store(da.from_array(img), k, path, chunk=16)
    assert ngff.read_store(path)["complete"] is False
    assert len(list((path / bigimage.MARKERS).iterdir())) == 3
    monkeypatch.setattr(zarr.Array, "__setitem__", real)
    bigimage.store(da.from_array(img), SmoothUpKernel(scale=2, grid=8, halo=1), path, chunk=16)  # space freed: resume
    np.testing.assert_array_equal(ngff.read_store(path)["levels"][0].compute(), k.whole(img))


def test_two_local_workers_write_the_same_store(tmp_path):
    img = _image((64, 64))
    k = SmoothUpKernel(scale=2, grid=8, halo=1)
    bigimage.store(da.from_array(img), k, tmp_path / "a.zarr", chunk=16, workers=2)
    np.testing.assert_array_equal(ngff.read_store(tmp_path / "a.zarr")["levels"][0].compute(), k.whole(img))


def test_open_lazy_reads_arrays_stores_and_tiffs(tmp_path):
    import tifffile

    img = _image((40, 30))
    assert open_lazy(img).data.shape == (40, 30)
    assert open_lazy([da.from_array(img), da.from_array(img[::2, ::2])]).data.shape == (40, 30)  # multiscale
    z = zarr.open_array(str(tmp_path / "plain.zarr"), mode="w", shape=(40, 30), dtype="f4")
    z[:] = img
    np.testing.assert_array_equal(open_lazy(tmp_path / "plain.zarr").data.compute(), img)
    tifffile.imwrite(tmp_path / "t.tif", (img * 255).astype(np.uint8), tile=(16, 16))
    lz = open_lazy(tmp_path / "t.tif")
    assert lz.data.shape == (40, 30) and lz.data.dtype == np.uint8
    with pytest.raises(InputError, match="not found"):
        open_lazy(tmp_path / "missing.tif")
    with pytest.raises(InputError, match="not a Zarr store"):
        open_lazy(tmp_path)


def test_large_tiffs_are_read_tile_by_tile(tmp_path, monkeypatch):
    import tifffile

    from matrestore import io

    img = (_image((64, 48)) * 60000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "big.tif", img, tile=(16, 16))
    monkeypatch.setattr(io, "LAZY_READ_BYTES", 100)  # "large" for this test
    lz = io.open_lazy(tmp_path / "big.tif")
    assert lz.meta.get("lazy_tiff") is True
    assert lz.data.chunksize[0] < 64  # tiles, not the whole file
    np.testing.assert_array_equal(lz.data.compute(), img)
    assert drive(iter(())) is None


def test_the_plugin_reader_opens_a_store_as_a_multiscale_layer(tmp_path, monkeypatch, request):
    import os
    import sys

    from matrestore._reader import get_reader

    monkeypatch.setattr(ngff, "MIN_LEVEL_SIDE", 40)
    img = _image((60, 50))
    path = bigimage.store(da.from_array(img), SmoothUpKernel(scale=2, grid=8, halo=1), tmp_path / "o.zarr",
                          chunk=16, pixel_size_nm=3000.0, translate=(1500.0, 0.0))
    reader = get_reader(str(path))
    assert reader is not None
    (data, kw, kind), = reader(str(path))
    assert kind == "image" and kw["multiscale"] is True and len(data) == 3
    assert kw["scale"] == pytest.approx([1.5, 1.5]) and kw["units"] == ["µm", "µm"]  # 3 µm / 2
    assert kw["translate"] == pytest.approx([1.5, 0.0])
    lo, hi = kw["contrast_limits"]
    assert 0 <= lo < hi <= 1
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        return
    viewer = request.getfixturevalue("make_napari_viewer")()
    layers = viewer.open(str(path), plugin="napari-matrestore")
    assert layers[0].multiscale and tuple(layers[0].scale) == pytest.approx((1.5, 1.5))
