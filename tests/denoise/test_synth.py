import numpy as np
import pytest

from matrestore import InputError
from matrestore.denoise import fourier_mix, match_histogram, synthesize, synthesize_set
from matrestore.denoise.synth import as_grey, boundary_map, grain_greys


def test_fourier_mix_keeps_magnitude_of_real_and_phase_of_image():
    rng = np.random.default_rng(0)
    img = rng.random((48, 64))
    real = rng.random((48, 64)) * 50 + 10
    m = fourier_mix(img, real)
    M, A, R = np.fft.fft2(m), np.fft.fft2(img), np.fft.fft2(real)
    np.testing.assert_allclose(np.abs(M), np.abs(R), rtol=1e-6, atol=1e-6)
    ok = np.abs(A) > 1e-6 * np.abs(A).max()
    dphi = np.angle(M[ok] * np.conj(A[ok]))
    assert np.abs(dphi).max() < 1e-6
    # a different image's phase gives a different result: the phase matters
    assert np.abs(m - fourier_mix(rng.random((48, 64)), real)).max() > 1


def test_fourier_mix_shape_mismatch():
    with pytest.raises(InputError, match="same shape"):
        fourier_mix(np.zeros((8, 8)), np.zeros((8, 9)))


def test_histogram_matching_matches():
    rng = np.random.default_rng(1)
    img = rng.random((40, 50))
    ref = rng.gamma(2.0, 10.0, (40, 50))
    out = match_histogram(img, ref)
    np.testing.assert_array_equal(np.sort(out.ravel()), np.sort(ref.ravel()))
    # the rank order of the image is kept
    assert np.array_equal(np.argsort(out.ravel(), kind="stable"), np.argsort(img.ravel(), kind="stable"))
    # different sizes: quantiles agree
    ref2 = rng.gamma(2.0, 10.0, (100, 100))
    out2 = match_histogram(img, ref2)
    q = [5, 25, 50, 75, 95]
    np.testing.assert_allclose(np.percentile(out2, q), np.percentile(ref2, q), rtol=0.03)


def test_synthesize_pair(small_pair, real_texture):
    p = small_pair
    assert p.noisy.shape == p.clean.shape == p.labels.shape == (96, 96)
    assert p.noisy.dtype == np.float32 and p.clean.dtype == np.float32
    assert 0 <= p.clean.min() and p.clean.max() <= 1
    # the noisy image has the real micrograph crop's grey levels (histogram matched)
    assert p.noisy.min() >= real_texture.min() and p.noisy.max() <= real_texture.max()
    for k in ("scratch", "pit", "stain", "boundary"):
        assert p.masks[k].dtype == bool and p.masks[k].shape == (96, 96)
    assert p.masks["boundary"].any()
    assert p.recipe["real"]["origin"] is not None and "artefacts" in p.recipe
    # one grey per grain
    for lab in np.unique(p.labels)[:5]:
        assert np.ptp(p.clean[p.labels == lab]) == 0


def test_synthesize_deterministic(small_structure, real_texture):
    a = synthesize(small_structure, real_texture, seed=9)
    b = synthesize(small_structure, real_texture, seed=9)
    c = synthesize(small_structure, real_texture, seed=10)
    np.testing.assert_array_equal(a.noisy, b.noisy)
    assert a.recipe == b.recipe
    assert not np.array_equal(a.noisy, c.noisy)


def test_neighbours_clearly_distinct(small_structure):
    from matrestore.denoise.phasefield import adjacency

    lab = small_structure.labels
    g = grain_greys(lab, np.random.default_rng(0), min_contrast=0.12)
    nb = adjacency(lab, periodic=False)
    diffs = [abs(g[i] - g[j]) for i in range(1, len(nb)) for j in nb[i] if j > 0]
    assert np.mean(np.asarray(diffs) >= 0.12) > 0.95


def test_etched_boundaries_dark(small_structure):
    p = synthesize(small_structure, None, seed=1, boundary_width=2, boundary_grey=(0.0, 0.0), artefacts={"scratches": (0, 0)})
    assert np.all(p.clean[p.masks["boundary"]] == 0.0)
    assert p.recipe["real"] is None


def test_scratches_drawn_and_masked(small_structure):
    none = synthesize(small_structure, None, seed=2, artefacts={"scratches": (0, 0)})
    some = synthesize(small_structure, None, seed=2, artefacts={"scratches": (4, 4), "scratch_deep": (0.5, 0.5), "scratch_faint": (0.5, 0.5)})
    assert not none.masks["scratch"].any()
    assert some.masks["scratch"].mean() > 0.01
    d = np.abs(some.noisy - some.clean)
    assert d[some.masks["scratch"]].mean() > 2 * d[~some.masks["scratch"]].mean()


def test_real_too_small(small_structure):
    with pytest.raises(InputError, match="too small to give the magnitude spectrum"):
        synthesize(small_structure, np.random.default_rng(0).random((50, 200)), seed=0)


def test_real_constant_refused(small_structure):
    with pytest.raises(InputError, match="constant"):
        synthesize(small_structure, np.full((120, 120), 7.0), seed=0)


def test_rgb_real_used_as_luminance(small_structure, real_texture):
    rgb = np.stack([real_texture] * 3, -1)
    a = synthesize(small_structure, rgb, seed=3)
    b = synthesize(small_structure, real_texture, seed=3)
    np.testing.assert_array_equal(a.noisy, b.noisy)
    g, note = as_grey(np.dstack([real_texture, real_texture // 2, real_texture, np.full_like(real_texture, 255)]))
    assert "luminance" in note and "alpha" in note and g.shape == real_texture.shape
    with pytest.raises(InputError, match="RGB"):
        as_grey(rgb, colour="error")


def test_synthesize_set_every_pair(small_structure, real_texture):
    pairs = synthesize_set([small_structure, small_structure.labels], [real_texture, real_texture[::-1]], seed=0)
    assert len(pairs) == 4
    assert len({p.recipe["seed"] for p in pairs}) == 4


def test_boundary_map_thin():
    lab = np.ones((10, 10), int)
    lab[:, 5:] = 2
    b = boundary_map(lab)
    assert b.sum() == 10 and b[:, 4].all()


def test_procedural_texture_deterministic_and_usable(small_structure):
    from matrestore.denoise.synth import procedural_texture

    a = procedural_texture((96, 96), np.random.default_rng(3))
    b = procedural_texture((96, 96), np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (96, 96) and a.min() >= 0 and a.max() <= 1 and np.ptp(a) > 0.5
    assert not np.array_equal(a, procedural_texture((96, 96), np.random.default_rng(4)))
    p = synthesize(small_structure, a, seed=0)
    assert np.isfinite(p.noisy).all()
