"""LabDCT stacks through the block engine: stack blocks (frame halo, periodic ω) and the network clean
into a resumable OME-Zarr store, bit-identical to the in-memory ``labdct.clean``."""

import json

import dask.array as da
import numpy as np
import pytest
import tifffile
import torch
import zarr

from matrestore import bigimage, ngff
from matrestore._validate import InputError
from matrestore.labdct import build_model, clean, segment, spot_table
from matrestore.labdct.lazy import (clean_lazy, clean_to_zarr, clean_to_zarr_iter, store_masks, store_spot_table)
from matrestore.progress import Kind, drive


class NeighbourSum:
    """A cheap stack kernel: frame k → frame k-1 + 2·frame k + frame k+1 (wrapped or mirrored ends)."""

    scale, grid, dtype = 1, 1, np.dtype(np.float32)

    def __init__(self, n, circular):
        self.n, self.circular = n, circular
        self.halo = (1, 0, 0)
        self.boundary = ("periodic" if circular else "none", "none", "none")
        self.token = f"nsum-{n}-{circular}"

    def describe(self):
        return {"task": "nsum"}

    def _nb(self, k):
        from matrestore.labdct.infer import neighbour_indices

        return neighbour_indices(k, self.n, 1, self.circular)

    def run(self, window, origin, region):
        f0, f1 = region[:2]
        out = []
        for k in range(f0, f1):
            w = [((j - origin[0]) % self.n) if self.circular else j - origin[0] for j in self._nb(k)]
            out.append(window[w[0]] + 2 * window[w[1]] + window[w[2]])
        return np.stack(out).astype(np.float32)

    def whole(self, st):
        return np.stack([st[a] + 2 * st[b] + st[c] for a, b, c in (self._nb(k) for k in range(self.n))])


@pytest.mark.parametrize("circular", [False, True])
def test_stack_blocks_with_a_frame_halo_equal_the_whole_stack(tmp_path, circular):
    st = np.random.default_rng(0).random((11, 9, 7), dtype=np.float32)
    k = NeighbourSum(11, circular)
    out, grid = bigimage.lazy_map(da.from_array(st, chunks=(1, 9, 7)), k, chunk=3)
    assert grid.shape == (4, 1, 1) and grid.lead == ((0, 3, 6, 9, 11),)
    np.testing.assert_array_equal(out.compute(), k.whole(st))
    tiled, g2 = bigimage.lazy_map(da.from_array(st), k, chunk=(3, 4))  # frames tiled spatially as well
    assert g2.shape == (4, 3, 2)
    np.testing.assert_array_equal(tiled.compute(), k.whole(st))
    path = bigimage.store(da.from_array(st, chunks=(2, 9, 7)), k, tmp_path / "s.zarr", chunk=3,
                          lead_axes=[{"name": "angle", "type": "angle", "unit": "degree", "scale": 3.0}])
    doc = ngff.read_store(path)
    assert doc["complete"] is True and len(doc["levels"]) == 1
    np.testing.assert_array_equal(doc["levels"][0].compute(), k.whole(st))
    ms = json.loads((path / "zarr.json").read_text())["attributes"]["ome"]["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["angle", "y", "x"]
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [3.0, 1.0, 1.0]
    assert zarr.open_array(str(path / "0")).chunks[0] == 1  # one frame per chunk


def test_stack_grid_raises_blocks_above_the_halo_and_merges_a_thin_last_one():
    g = bigimage.stack_grid((10, 8, 8), 1, halo=(2, 0, 0))
    assert all(c > 2 for c in g.chunks[0][:-1]) and sum(g.chunks[0]) == 10 and g.notes
    g = bigimage.stack_grid((10, 8, 8), 4, halo=(1, 0, 0))
    assert g.lead == ((0, 4, 8, 10),)
    g = bigimage.stack_grid((9, 8, 8), 4, halo=(1, 0, 0))
    assert g.lead == ((0, 4, 9),)  # a last block of 1 frame (not wider than the 1-frame halo): merged


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model("tiny").eval()


def _stack(n=10, shape=(40, 48), seed=0):
    rng = np.random.default_rng(seed)
    s = rng.poisson(100, (n,) + shape).astype(np.float32)
    for k in range(n):
        r, c = 5 + (3 * k) % 30, 6 + (5 * k) % 36
        s[k, r : r + 3, c : c + 3] += 400
    return s


def test_store_is_bit_identical_to_clean_with_masks_and_spot_table(tmp_path, tiny):
    stack = _stack()
    ref = clean(stack, tiny)
    recs = []
    path = clean_to_zarr(stack, tmp_path / "c.zarr", tiny, chunk=3, progress=recs.append)
    steps = [r for r in recs if r["kind"] == Kind.STEP and r.get("phase") == "blocks"]
    assert steps[-1]["total"] == 3  # 0-3, 3-6, 6-10 (a last block of 1 frame is merged into its neighbour)
    doc = ngff.read_store(path)
    np.testing.assert_array_equal(doc["levels"][0].compute(), ref)
    masks = store_masks(path).compute()
    np.testing.assert_array_equal(masks, segment(ref))
    assert store_spot_table(path, stack) == spot_table(segment(ref), stack)
    # the lazy array gives the same
    np.testing.assert_array_equal(clean_lazy(stack, tiny, chunk=4).compute(), ref)


def test_full_turn_wraps_and_tiff_folder_is_read_frame_by_frame(tmp_path, tiny):
    stack = _stack(n=12)
    folder = tmp_path / "frames"
    folder.mkdir()
    for k in range(12):
        tifffile.imwrite(folder / f"proj_{k:03d}_omega{30 * k}.tif", stack[k].astype(np.uint16))
    ref = clean(str(folder), tiny)  # ω 0..330 in 30° steps: a full turn, neighbours wrap around
    path = clean_to_zarr(str(folder), tmp_path / "c.zarr", tiny, chunk=5)
    np.testing.assert_array_equal(ngff.read_store(path)["levels"][0].compute(), ref)
    ms = json.loads((path / "zarr.json").read_text())["attributes"]["ome"]["multiscales"][0]
    assert ms["axes"][0] == {"name": "angle", "type": "angle", "unit": "degree"}
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"][0] == 30.0
    # with the wrap forced off the first frame differs (its neighbours are mirrored instead)
    assert not np.array_equal(clean(str(folder), tiny, circular=False)[0], ref[0])


def test_cancel_then_resume_and_another_stack_is_refused(tmp_path, tiny):
    stack = _stack(n=9)
    ref = clean(stack, tiny)
    path = tmp_path / "c.zarr"
    stop = {"flag": False}
    gen = clean_to_zarr_iter(stack, path, tiny, chunk=2, cancel=lambda: stop["flag"])
    recs = []
    for r in gen:
        recs.append(r)
        if r["kind"] == Kind.STEP and r.get("phase") == "blocks" and r["step"] >= 1:
            stop["flag"] = True
    assert recs[-1]["kind"] == Kind.STOPPED
    assert ngff.read_store(path)["complete"] is False
    recs = []
    drive(clean_to_zarr_iter(stack, path, tiny, chunk=2), recs.append)
    setup = [r for r in recs if r["kind"] == Kind.SETUP and r.get("phase") == "blocks"][0]
    assert setup["resumed"] and 0 < setup["step"] < setup["total"]
    np.testing.assert_array_equal(ngff.read_store(path)["levels"][0].compute(), ref)
    with pytest.raises(InputError, match="already exists"):
        clean_to_zarr(_stack(n=9, seed=1), path, tiny, chunk=2)
    clean_to_zarr(_stack(n=9, seed=1), path, tiny, chunk=2, overwrite=True)


def test_cli_clean_into_a_store_equals_the_tiff_output(tmp_path, tiny):
    from matrestore.cli import main
    from matrestore.labdct import save_model

    model = save_model(tiny, tmp_path / "tiny.safetensors")
    stack = _stack(n=7).astype(np.uint16)
    src = tmp_path / "stack.tif"
    tifffile.imwrite(src, stack)
    assert main(["labdct", "clean", str(src), "-o", str(tmp_path / "c.tif"), "--model", str(model), "--threads", "1"]) == 0
    store = tmp_path / "c.zarr"
    assert main(["labdct", "clean", str(src), "--out", str(store), "--chunk", "3", "--model", str(model),
                 "--threads", "1", "--table", str(tmp_path / "spots.csv")]) == 0
    np.testing.assert_array_equal(ngff.read_store(store)["levels"][0].compute(), tifffile.imread(tmp_path / "c.tif"))
    assert (tmp_path / "spots.csv").read_text().startswith("frame,label")
    assert main(["labdct", "clean", str(src), "--out", str(store), "--model", str(model), "--masks", "m.tif"]) == 2


def test_beamstop_box_is_excluded_from_store_masks_and_a_new_beamstop_rewrites_only_the_masks(tmp_path, tiny):
    stack = _stack()
    ref = clean(stack, tiny)
    box = (0, 24, 0, 30)
    path = clean_to_zarr(stack, tmp_path / "c.zarr", tiny, chunk=3, threshold=1e-6, beamstop=box)
    masks = store_masks(path).compute()
    np.testing.assert_array_equal(masks, segment(ref, 1e-6, beamstop=box))
    assert masks[:, :24, :30].sum() == 0 and masks[:, 24:, 30:].sum() > 0  # threshold ~0: every pixel else is a spot
    info = zarr.open_group(str(path), mode="r").attrs["matrestore"]["masks"]
    assert info["beamstop"] == list(box) and info["complete"] and len(info["beamstop_sha1"]) == 16
    # a rerun without the beam stop: blocks are all skipped, the masks redone over the whole frame
    recs = []
    clean_to_zarr(stack, path, tiny, chunk=3, threshold=1e-6, progress=recs.append)
    setup = [r for r in recs if r["kind"] == Kind.SETUP and r.get("phase") == "blocks"][0]
    assert setup["resumed"] and setup["step"] == setup["total"]  # no block recomputed
    assert not [r for r in recs if r["kind"] == Kind.STEP and r.get("phase") == "blocks"]
    assert [r for r in recs if r.get("phase") == "masks"]
    np.testing.assert_array_equal(store_masks(path).compute(), segment(ref, 1e-6))
    # the same beam stop again: masks complete, no mask pass
    recs = []
    clean_to_zarr(stack, path, tiny, chunk=3, threshold=1e-6, progress=recs.append)
    assert not [r for r in recs if r.get("phase") == "masks"]


def test_beamstop_auto_finds_the_shadow_and_warns_when_there_is_none(tmp_path, tiny):
    stack = _stack(n=11)
    shadow = np.zeros(stack.shape[1:], bool)
    shadow[16:26, 20:32] = True
    dark = stack.copy()
    dark[:, shadow] = 0.0
    from matrestore.labdct.routine import stack_beamstop

    found = stack_beamstop(dark, "auto")
    assert found is not None and found[shadow].mean() > 0.9
    path = clean_to_zarr(dark, tmp_path / "a.zarr", tiny, chunk=4, threshold=1e-6, beamstop="auto")
    m = store_masks(path).compute()
    assert m[:, found].sum() == 0
    recs = []
    clean_to_zarr(stack, tmp_path / "b.zarr", tiny, chunk=4, beamstop="auto", progress=recs.append)
    assert [r for r in recs if r["kind"] == Kind.WARNING and "beam-stop" in r["message"]]


def test_cli_clean_into_a_store_with_a_beamstop_box(tmp_path, tiny):
    from matrestore.cli import main
    from matrestore.labdct import save_model

    model = save_model(tiny, tmp_path / "tiny.safetensors")
    stack = _stack(n=7).astype(np.uint16)
    src = tmp_path / "stack.tif"
    tifffile.imwrite(src, stack)
    common = ["--model", str(model), "--threads", "1", "--threshold", "1e-6", "--beamstop", "0,20,0,25"]
    assert main(["labdct", "clean", str(src), "-o", str(tmp_path / "c.tif"), "--masks", str(tmp_path / "m.tif")] + common) == 0
    store = tmp_path / "c.zarr"
    assert main(["labdct", "clean", str(src), "--out", str(store), "--chunk", "3"] + common) == 0
    tiff_masks = tifffile.imread(tmp_path / "m.tif") > 0
    np.testing.assert_array_equal(store_masks(store).compute().astype(bool), tiff_masks)
    assert not tiff_masks[:, :20, :25].any()
    assert main(["labdct", "clean", str(src), "--out", str(store), "--beamstop", "1,2,3"]) == 2


class _CountedFrame:
    """A lazy frame that counts how often it is read."""

    def __init__(self, a, counts, k):
        self.a, self.counts, self.k = a, counts, k
        self.shape, self.dtype, self.ndim = a.shape, a.dtype, 2

    def __array__(self, dtype=None, copy=None):
        self.counts[self.k] += 1
        return self.a if dtype is None else self.a.astype(dtype)

    def __getitem__(self, key):
        self.counts[self.k] += 1
        return self.a[key]


def test_a_store_reads_each_frame_once_plus_the_halo_frames(tmp_path, tiny):
    from matrestore.labdct.lazy import open_frames

    counts = np.zeros(32, int)
    raw = _stack(n=32)
    st = open_frames([_CountedFrame(raw[k], counts, k) for k in range(32)])
    counts[:] = 0
    path = clean_to_zarr(st, tmp_path / "c.zarr", tiny, chunk=8)
    # 8 frames sampled for the stack scale, each frame once in its block, 6 halo frames (blocks 0-8 ... 24-32);
    # a block of the rechunked graph computed alone read its neighbour blocks whole (87 reads)
    assert counts.sum() <= 32 + 6 + 8 and counts.max() <= 3
    np.testing.assert_array_equal(ngff.read_store(path)["levels"][0].compute(), clean(raw, tiny))


def test_a_two_process_cluster_cleans_a_stack_like_one_process(tmp_path, tiny):
    distributed = pytest.importorskip("distributed")
    from matrestore.labdct.lazy import routine_to_zarr
    from matrestore.labdct.routine import standard_routine

    stack = _stack(n=12)
    folder = tmp_path / "frames"
    folder.mkdir()
    for k in range(12):
        tifffile.imwrite(folder / f"proj_{k:03d}.tif", stack[k].astype(np.uint16))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' setting (one thread each)
    try:
        ref = clean(str(folder), tiny)
    finally:
        torch.set_num_threads(threads)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        path = clean_to_zarr(str(folder), tmp_path / "c.zarr", tiny, chunk=3, scheduler=client)
        rpath = routine_to_zarr(str(folder), tmp_path / "r.zarr", window=5, chunk=3, scheduler=client)
        assert len(client.scheduler_info()["workers"]) == 2
    np.testing.assert_array_equal(ngff.read_store(path)["levels"][0].compute(), ref)  # bit-identical
    np.testing.assert_array_equal(store_masks(path).compute(), segment(ref))
    np.testing.assert_array_equal(store_masks(rpath).compute(), standard_routine(str(folder), window=5))
    # a multi-page TIFF (an open file in the graph) through the CLI's own cluster
    from matrestore.cli import main
    from matrestore.labdct import save_model

    src = tmp_path / "stack.tif"
    tifffile.imwrite(src, stack.astype(np.uint16))
    model = save_model(tiny, tmp_path / "tiny.safetensors")
    assert main(["labdct", "clean", str(src), "--out", str(tmp_path / "m.zarr"), "--model", str(model), "--chunk", "3",
                 "--scheduler", "processes:2"]) == 0
    np.testing.assert_array_equal(ngff.read_store(tmp_path / "m.zarr")["levels"][0].compute(), ref)
