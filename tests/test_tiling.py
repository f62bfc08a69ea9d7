import numpy as np
import pytest

from matrestore._validate import InputError
from matrestore.tiling import Stitcher, axis_plan, batched, margin_for_keep, plan_tiles, seam_profile


@pytest.mark.parametrize("n,tile,margin", [(100, 32, 6), (33, 32, 6), (32, 32, 6), (5, 32, 6), (1000, 256, 36), (77, 20, 0), (64, 24, 11)])
def test_axis_plan_keeps_tile_the_axis_exactly(n, tile, margin):
    segs = axis_plan(n, tile, margin)
    assert segs[0][2] == 0 and segs[-1][3] == n
    for (s0, s1, k0, k1), nxt in zip(segs, segs[1:] + [None]):
        assert s1 - s0 == min(tile, n)  # equal windows: they stack into batches
        assert 0 <= s0 <= k0 < k1 <= s1 <= n
        if nxt is not None:
            assert k1 == nxt[2]  # kept parts are contiguous, no gap, no overlap
            assert k1 <= s1 - margin and nxt[2] >= nxt[0] + margin  # the margin is dropped between tiles


def test_paper_keep_fraction():
    assert margin_for_keep(32, 0.625) == 6  # 20 of 32 px kept
    segs = axis_plan(200, 32, margin_for_keep(32, 0.625))
    interior = [k1 - k0 for (_, _, k0, k1) in segs[1:-1]]
    assert interior and all(v == 20 for v in interior)


def test_bad_plans():
    with pytest.raises(InputError):
        axis_plan(10, 8, 4)
    with pytest.raises(InputError):
        axis_plan(0, 8, 1)
    with pytest.raises(InputError):
        margin_for_keep(32, 0)


def test_stitch_reproduces_a_local_operator_when_margin_covers_its_radius():
    rng = np.random.default_rng(0)
    img = rng.random((53, 71))

    def op(a):  # 3x3 box filter with zero padding (radius 1), then nearest upsampling by 2
        p = np.pad(a, 1)
        box = sum(p[i : i + a.shape[0], j : j + a.shape[1]] for i in range(3) for j in range(3)) / 9
        return np.repeat(np.repeat(box, 2, 0), 2, 1)

    tiles = plan_tiles(img.shape, 16, 1)
    st = Stitcher(img.shape, scale=2, dtype=np.float64)
    for t in tiles:
        st.add(t, op(img[t.window]))
    assert st.complete
    np.testing.assert_allclose(st.out, op(img), atol=1e-12)
    prof = seam_profile(st.out, op(img), tiles, scale=2)
    assert prof["max_abs"] < 1e-12
    # a margin smaller than the radius leaves visible seams, which the profile reports
    tiles0 = plan_tiles(img.shape, 16, 0)
    st0 = Stitcher(img.shape, scale=2, dtype=np.float64)
    for t in tiles0:
        st0.add(t, op(img[t.window]))
    prof0 = seam_profile(st0.out, op(img), tiles0, scale=2)
    assert prof0["seam_rms"] > 0.01 and prof0["rms"] < prof0["seam_rms"]


def test_batched():
    assert [len(b) for b in batched(list(range(10)), 4)] == [4, 4, 2]


@pytest.mark.parametrize("n,tile,margin", [(1024, 512, 35), (1024, 384, 35), (1000, 256, 20), (300, 512, 35), (129, 64, 10)])
def test_balanced_tile_keeps_the_count_and_evens_the_work(n, tile, margin):
    from matrestore.tiling import balanced_tile

    t = balanced_tile(n, tile, margin)
    assert t <= tile and len(axis_plan(n, t, margin)) == len(axis_plan(n, tile, margin))
    segs = axis_plan(n, t, margin)
    assert len(segs) * t <= len(axis_plan(n, tile, margin)) * tile
    if len(segs) > 1:
        assert len(axis_plan(n, t - 1, margin)) > len(segs)  # the smallest such tile
