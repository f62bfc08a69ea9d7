"""The reader opens large projection stacks lazily (frame by frame) and small ones whole."""

import dask.array as da
import numpy as np
import tifffile

from matrestore import _reader, io


def test_large_stacks_open_lazily_with_the_same_pixels(tmp_path, monkeypatch):
    stack = np.random.default_rng(0).integers(1, 1000, (5, 20, 24)).astype(np.uint16)
    folder = tmp_path / "frames"
    folder.mkdir()
    for k in range(5):
        tifffile.imwrite(folder / f"f_{k + 1}.tif", stack[k])
    multi = tmp_path / "stack.tif"
    tifffile.imwrite(multi, stack)
    small = _reader.read_layers(str(folder))[0][0]
    assert isinstance(small, np.ndarray)
    monkeypatch.setattr(io, "LAZY_STACK_BYTES", 100)
    for src in (folder, multi):
        data, kwargs, kind = _reader.read_layers(str(src))[0]
        assert isinstance(data, da.Array) and data.chunks[0] == (1,) * 5 and kind == "image"
        assert kwargs["metadata"]["n_frames"] == 5 and kwargs["scale"][0] == 1.0
        np.testing.assert_array_equal(data.compute(), stack)


def test_a_cleaned_stack_store_opens_as_a_stack_layer(tmp_path):
    import torch

    from matrestore.labdct import build_model, clean
    from matrestore.labdct.lazy import clean_to_zarr

    torch.manual_seed(0)
    net = build_model("tiny").eval()
    stack = np.random.default_rng(1).poisson(100, (5, 24, 24)).astype(np.float32)
    path = clean_to_zarr(stack, tmp_path / "c.zarr", net, chunk=2)
    data, kwargs, kind = _reader.read_layers(str(path))[0]
    assert data.shape == (5, 24, 24) and len(kwargs["scale"]) == 3 and kind == "image"
    np.testing.assert_array_equal(np.asarray(data), clean(stack, net))
    lo, hi = kwargs["contrast_limits"]
    assert 0 <= lo < hi <= 1
