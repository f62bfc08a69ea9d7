"""Out-of-core denoising: block-wise results equal the in-memory engine's, bit for bit (histogram
matching off); the sampled histogram look-up approximates the in-memory rank matching; stores and CLI."""

import dask.array as da
import numpy as np
import pytest

from matrestore import ngff
from matrestore._validate import InputError
from matrestore.denoise import denoise, denoise_lazy, denoise_to_zarr
from matrestore.denoise.lazy import prepare_iter, sample_windows
from matrestore.progress import drive


@pytest.fixture(scope="module")
def odd_image():
    from skimage import data

    return np.ascontiguousarray(data.camera()[100:201, 150:281])  # uint8, 101 × 131: odd sides (reflect-padded)


def test_denoise_lazy_is_bit_identical_to_denoise(tiny_model, odd_image):
    whole = denoise(odd_image, tiny_model, tile=100, histogram=False)
    x = da.from_array(odd_image, chunks=(23, 37))  # dask chunks unrelated to the blocks
    lazy = denoise_lazy(x, tiny_model, tile=100, histogram=False, chunk=40)
    # tiny model: halo 28, kept 44 → blocks of 44 px; rows 44|57 (the 13 px remainder merged), cols 44|44|43
    assert lazy.chunks == ((44, 57), (44, 44, 43))
    out = lazy.compute(scheduler="sync")
    assert out.dtype == np.float32 and out.shape == whole.shape
    np.testing.assert_array_equal(out, whole)


def test_padding_at_the_end_matches_the_whole_image(tiny_model):
    """Every block that touches the bottom/right end pads as the whole image is padded (a 1 px reflection
    at an odd side): a last block kept as it is and one merged into its neighbour."""
    rng = np.random.default_rng(1)
    img = rng.random((93, 77)).astype(np.float32)
    whole = denoise(img, tiny_model, tile=64, histogram=False)  # kept 8: many tiles per block
    out = denoise_lazy(da.from_array(img, chunks=50), tiny_model, tile=64, histogram=False, chunk=32)
    assert out.chunks == ((32, 32, 29), (32, 45))  # rows: a last block kept (29 px > halo 28); cols: merged
    np.testing.assert_array_equal(out.compute(scheduler="sync"), whole)


def test_histogram_lookup_is_monotone_and_close_to_rank_matching(tiny_model, odd_image):
    x = da.from_array(odd_image, chunks=60)
    off = denoise_lazy(x, tiny_model, tile=100, histogram=False, chunk=40).compute(scheduler="sync")
    on = denoise_lazy(x, tiny_model, tile=100, histogram=True, chunk=40).compute(scheduler="sync")
    order = np.lexsort((on.ravel(), off.ravel()))  # by the unmatched value (ties: by the matched one)
    assert np.all(np.diff(on.ravel()[order].astype(np.float64)) >= 0)  # one monotone look-up in every block
    ref = denoise(odd_image, tiny_model, tile=100, histogram=True)
    d = np.abs(on.astype(np.float64) - ref)
    assert d.mean() < 0.5 and np.percentile(d, 99) < 6  # grey levels of a uint8 image (0–255)
    assert on.min() >= odd_image.min() and on.max() <= odd_image.max()


def test_sampled_histogram_lookup(tiny_model):
    from skimage import data

    img = np.ascontiguousarray(data.camera()[:300, :300])
    x = da.from_array(img, chunks=128)
    recs = []
    kernel = drive(prepare_iter(x, tiny_model, tile=128, sample_crop=32, sample_crops=9), recs.append)
    assert kernel.info["histogram_samples"] == "9 windows of 32 px"  # 9·(32 + 2·28)² < 300²: sampled
    assert sum(r.get("phase") == "histogram samples" for r in recs) == 9
    out = denoise_lazy(x, tiny_model, tile=128, chunk=128, sample_crop=32, sample_crops=9).compute(scheduler="sync")
    ref = denoise(img, tiny_model, tile=128, histogram=True)
    d = np.abs(out.astype(np.float64) - ref)
    assert 0 < d.mean() < 12  # an estimate from 10 % of the pixels: close, not exact
    assert np.corrcoef(out.ravel(), ref.ravel())[0, 1] > 0.99


def test_sample_windows_are_spread_aligned_and_skip_small_images():
    assert sample_windows((1000, 1000), 512, 8, halo=120) is None  # cheaper to sample the whole image
    w = sample_windows((20000, 30000), 512, None, halo=120, align=2)
    assert len(w) == 11  # 0.5 % of the image in 512 px windows
    assert all((b - a, d - c) == (512, 512) for a, b, c, d in w)
    assert all(v % 2 == 0 for r in w for v in r) and all(r[1] <= 20000 and r[3] <= 30000 for r in w)
    quads = {(a < 10000 - 256, c < 15000 - 256) for a, b, c, d in w}
    assert len(quads) == 4 and len({r[0] for r in w}) == len(w)  # spread, on no regular grid
    assert w == sample_windows((20000, 30000), 512, None, halo=120, align=2)  # a function of the shape alone
    assert len(sample_windows((5000, 5000), 512, None)) == 8  # at least 8 windows


def test_denoise_to_zarr_records_geometry_and_resumes(tiny_model, odd_image, tmp_path):
    from matrestore import io

    src = tmp_path / "img.tif"
    io.write_tiff(src, odd_image, pixel_size_nm=225.0)
    expect = denoise(odd_image, tiny_model, tile=100, histogram=False)
    recs = []
    path = denoise_to_zarr(src, tmp_path / "out.zarr", tiny_model, tile=100, histogram=False, chunk=40,
                           progress=recs.append)
    doc = ngff.read_store(path)
    assert doc["complete"] is True and doc["levels"][0].dtype == np.float32
    np.testing.assert_array_equal(doc["levels"][0].compute(), expect)
    assert doc["pixel_size_nm"] == pytest.approx(225.0)  # scale 1: the input's pixel size
    assert max(r.get("total") or 0 for r in recs if r.get("phase") == "blocks") == 6
    again = []
    denoise_to_zarr(src, path, tiny_model, tile=100, histogram=False, chunk=40, progress=again.append)
    assert any("already written" in str(r.get("message")) for r in again)
    with pytest.raises(InputError):  # another computation into the same store: refused
        denoise_to_zarr(src, path, tiny_model, tile=100, histogram=True, chunk=40)
    with pytest.raises(InputError, match="output store is the input"):
        denoise_to_zarr(path, path, tiny_model)


def test_cancel_leaves_a_resumable_store(tiny_model, odd_image, tmp_path):
    from matrestore.denoise import denoise_to_zarr_iter

    flag = {"stop": False}

    def cancel():
        return flag["stop"]

    gen = denoise_to_zarr_iter(odd_image, tmp_path / "c.zarr", tiny_model, tile=100, histogram=False, chunk=40,
                               cancel=cancel)
    recs = []
    for rec in gen:
        recs.append(rec)
        if rec.get("phase") == "blocks" and (rec.get("step") or 0) >= 1:
            flag["stop"] = True
    assert any(str(r.get("kind")) == "stopped" for r in recs)
    assert ngff.read_store(tmp_path / "c.zarr")["complete"] is False
    path = denoise_to_zarr(odd_image, tmp_path / "c.zarr", tiny_model, tile=100, histogram=False, chunk=40)
    np.testing.assert_array_equal(ngff.read_store(path)["levels"][0].compute(),
                                  denoise(odd_image, tiny_model, tile=100, histogram=False))


@pytest.mark.parametrize("image, word", [
    (np.full((64, 64), 7.0), "constant"),
    (np.where(np.eye(64) > 0, np.nan, 1.0), "NaN"),
    (np.zeros((8, 64)) + np.arange(64), "too small"),
    (np.zeros((4, 32, 32)), "2-D"),
])
def test_bad_lazy_inputs_are_refused(tiny_model, image, word):
    with pytest.raises(InputError, match=word):
        drive(prepare_iter(da.from_array(image), tiny_model))


def test_rgb_lazy_input_is_converted_or_refused(tiny_model, odd_image):
    rgb = np.stack([odd_image] * 3, -1)
    recs = []
    kernel = drive(prepare_iter(da.from_array(rgb), tiny_model, histogram=False), recs.append)
    assert kernel.image_shape == odd_image.shape and any("luminance" in str(r.get("message")) for r in recs)
    with pytest.raises(InputError, match="greyscale"):
        drive(prepare_iter(da.from_array(rgb), tiny_model, colour="error"))


def test_cli_apply_into_a_store(tiny_model, odd_image, tmp_path, capsys):
    from matrestore import io
    from matrestore.cli import main
    from matrestore.denoise import save_model

    src = tmp_path / "img.tif"
    io.write_tiff(src, odd_image, pixel_size_nm=225.0)
    model = save_model(tiny_model, tmp_path / "tiny.safetensors")
    args = ["denoise", "apply", str(src), "--model", str(model), "--out", str(tmp_path / "o.zarr"), "--chunk", "40",
            "--tile", "100", "--no-histogram"]
    assert main(args) == 0
    assert "OME-Zarr" in capsys.readouterr().out
    doc = ngff.read_store(tmp_path / "o.zarr")
    assert doc["complete"] is True
    np.testing.assert_array_equal(doc["levels"][0].compute(), denoise(odd_image, tiny_model, tile=100, histogram=False))
    assert main(args) == 0  # a rerun over its own complete store: nothing to do
    assert main(["denoise", "apply", str(src), "--model", str(model), "--out", str(tmp_path / "o.tif"),
                 "--chunk", "40"]) == 2  # --chunk with a TIFF output: refused
    assert "OME-Zarr store" in capsys.readouterr().err
    assert main(["denoise", "apply", str(src), "--baseline", "gaussian", "--out", str(tmp_path / "g.zarr")]) == 2
    assert "in memory only" in capsys.readouterr().err
    assert not (tmp_path / "g.zarr").exists()


def test_histogram_agreement_reports_the_figures(tiny_model, odd_image):
    from matrestore.denoise.lazy import histogram_agreement

    whole = histogram_agreement(odd_image, tiny_model, tile=100, chunk=40, boundary_f1=False)
    assert whole["samples"] == "whole image" and whole["blocks"] == 6 and whole["mean_abs"] < 0.5
    forced = histogram_agreement(odd_image, tiny_model, tile=100, chunk=40, sample_crop=32, sample_crops=4,
                                 force_samples=True)
    assert forced["samples"] == "4 × 32 px" and forced["sampled_fraction"] == pytest.approx(4 * 32 * 32 / odd_image.size, abs=1e-3)
    assert forced["mean_abs"] > whole["mean_abs"] and 0 <= forced["boundary_f1"] <= 1


def test_a_two_process_cluster_denoises_like_one_process(tiny_model, odd_image, tmp_path):
    distributed = pytest.importorskip("distributed")
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' setting (one thread each)
    try:
        ref = denoise(odd_image, tiny_model, tile=100, histogram=True)
    finally:
        torch.set_num_threads(threads)
    x = da.from_array(odd_image, chunks=(23, 37))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        one = denoise_to_zarr(x, tmp_path / "one.zarr", tiny_model, tile=100, chunk=40)
        two = denoise_to_zarr(x, tmp_path / "two.zarr", tiny_model, tile=100, chunk=40, scheduler=client)
        assert len(client.scheduler_info()["workers"]) == 2
    b = ngff.read_store(two)["levels"][0].compute()
    torch.set_num_threads(1)
    try:
        a = ngff.read_store(denoise_to_zarr(x, tmp_path / "one1.zarr", tiny_model, tile=100, chunk=40))["levels"][0].compute()
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(b, a)  # bit-identical at the same thread count
    assert np.abs(b.astype(np.float64) - ref).mean() < 0.5  # and the sampled look-up near the in-memory matching
    np.testing.assert_allclose(ngff.read_store(one)["levels"][0].compute(), b, atol=1.0)
