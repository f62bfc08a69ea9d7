"""Out-of-core super-resolution: block-wise results equal the in-memory engine's, bit for bit."""

import dask.array as da
import numpy as np
import pytest
import torch

from matrestore import ngff, sr
from matrestore._validate import InputError


@pytest.fixture(scope="module")
def big_lr():
    from skimage import data

    return data.camera()[200:290, 100:205]  # uint8, 90 × 105


def test_enhance_lazy_is_bit_identical_to_enhance(tiny_model, ref_images, big_lr):
    whole = sr.enhance(big_lr, ref_images, tiny_model, tile=40)
    x = da.from_array(big_lr, chunks=(23, 31))
    lazy = sr.enhance_lazy(x, ref_images, tiny_model, tile=40, chunk=30)
    assert lazy.numblocks[0] >= 2 and lazy.numblocks[1] >= 2  # several blocks, not one
    out = lazy.compute(scheduler="sync")
    assert out.dtype == np.float32 and out.shape == whole.shape
    np.testing.assert_array_equal(out, whole)


def test_enhance_to_zarr_equals_the_cli_result_and_records_geometry(tiny_model, ref_images, big_lr, tmp_path):
    from matrestore import io
    from matrestore.sr.enhance import output_geometry

    src = tmp_path / "lr.tif"
    io.write_tiff(src, big_lr, pixel_size_nm=40.0)
    whole = sr.enhance(big_lr, ref_images, tiny_model, tile=40)
    expect = np.clip(np.rint(whole), 0, 255).astype(np.uint8)  # what `sr enhance` writes for uint8 input
    path = sr.enhance_to_zarr(src, tmp_path / "out.zarr", ref_images, tiny_model, tile=40, chunk=30)
    doc = ngff.read_store(path)
    assert doc["complete"] is True and doc["levels"][0].dtype == np.uint8
    np.testing.assert_array_equal(doc["levels"][0].compute(), expect)
    assert doc["pixel_size_nm"] == pytest.approx(10.0)
    geo = output_geometry(40.0, (0.0, 0.0), 4)
    assert doc["translate_nm"] == pytest.approx(tuple(geo["translate"]))
    with pytest.raises(InputError, match="output store is the input"):
        sr.enhance_to_zarr(path, path, ref_images, tiny_model)


def test_a_two_process_cluster_gives_the_single_process_result(tiny_model, ref_images, big_lr, tmp_path):
    distributed = pytest.importorskip("distributed")
    threads = torch.get_num_threads()
    one = sr.enhance_to_zarr(big_lr, tmp_path / "one.zarr", ref_images, tiny_model, tile=40, chunk=30, out_dtype=np.float32)
    torch.set_num_threads(1)  # the workers' setting (one thread each)
    try:
        one1 = sr.enhance_to_zarr(big_lr, tmp_path / "one1.zarr", ref_images, tiny_model, tile=40, chunk=30,
                                  out_dtype=np.float32)
    finally:
        torch.set_num_threads(threads)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        two = sr.enhance_to_zarr(big_lr, tmp_path / "two.zarr", ref_images, tiny_model, tile=40, chunk=30,
                                 scheduler=client, out_dtype=np.float32)
        workers = client.run(lambda: __import__("torch").get_num_threads())
    assert len(workers) == 2
    a1 = ngff.read_store(one1)["levels"][0].compute()
    b = ngff.read_store(two)["levels"][0].compute()
    np.testing.assert_array_equal(b, a1)  # bit-identical at the same thread count
    np.testing.assert_allclose(b, ngff.read_store(one)["levels"][0].compute(), atol=1e-3)


def test_cli_enhance_into_a_store_and_resume(tiny_model, ref_images, big_lr, tmp_path, capsys):
    from matrestore import io
    from matrestore.cli import main
    from matrestore.sr import save_model

    src = tmp_path / "lr.tif"
    io.write_tiff(src, big_lr, pixel_size_nm=40.0)
    ref = tmp_path / "ref.tif"
    io.write_tiff(ref, (ref_images[0] * 255).astype(np.uint8))
    model = save_model(tiny_model, tmp_path / "tiny.safetensors")
    args = ["sr", "enhance", str(src), "--refs", str(ref), "--model", str(model), "--out", str(tmp_path / "o.zarr"),
            "--chunk", "30", "--tile", "40"]
    assert main(args) == 0
    assert "OME-Zarr" in capsys.readouterr().out
    assert ngff.read_store(tmp_path / "o.zarr")["complete"] is True
    assert main(args) == 0  # a rerun over its own complete store: resumes with nothing to do
    assert main(["sr", "enhance", str(src), "--refs", str(ref), "--model", str(model), "--out",
                 str(tmp_path / "o.tif"), "--chunk", "30"]) == 2  # --chunk with a TIFF output: refused
    assert "OME-Zarr store" in capsys.readouterr().err
