import numpy as np
import pytest

from matrestore import InputError
from matrestore.denoise import phase_field
from matrestore.denoise.phasefield import adjacency, colour_grains, voronoi_labels


def test_order_parameters_stay_bounded():
    pf = phase_field((64, 64), n_grains=12, steps=200, seed=0, grid=1)
    assert pf.eta.shape[0] == 20
    assert pf.eta.min() > -0.05 and pf.eta.max() < 1.05
    # inside grains one parameter is ~1: the structure sum(eta^2) is close to 1 on most pixels
    assert np.median(pf.structure) > 0.9


def test_grains_coarsen_with_steps():
    a = phase_field((64, 64), n_grains=30, steps=0, seed=1, grid=1)
    b = phase_field((64, 64), n_grains=30, steps=400, seed=1, grid=1)
    c = phase_field((64, 64), n_grains=30, steps=1000, seed=1, grid=1)
    assert a.mean_area < b.mean_area < c.mean_area
    assert c.mean_area > 1.5 * a.mean_area
    assert b.n_grains < a.n_grains


def test_deterministic_and_unpacks():
    s1, l1 = phase_field((64, 64), 10, 30, seed=7)
    s2, l2 = phase_field((64, 64), 10, 30, seed=7)
    np.testing.assert_array_equal(l1, l2)
    np.testing.assert_array_equal(s1, s2)
    assert l1.dtype == np.int32 and l1.min() == 1
    _, l3 = phase_field((64, 64), 10, 30, seed=8)
    assert not np.array_equal(l1, l3)


def test_colouring_never_gives_neighbours_the_same_parameter():
    rng = np.random.default_rng(0)
    lab = voronoi_labels((120, 120), 150, rng)
    nb = adjacency(lab)
    col = colour_grains(nb, 18, rng)
    assert col.min() >= 0 and col.max() < 18
    for i, js in enumerate(nb):
        for j in js:
            assert col[i] != col[j]
    # with 18 parameters second neighbours are distinct as well for most grains
    clash = sum(col[i] == col[k] for i, js in enumerate(nb) for j in js for k in nb[j] if k != i)
    assert clash < 0.05 * sum(len(js) for js in nb)


def test_too_few_order_parameters_refused():
    rng = np.random.default_rng(0)
    lab = voronoi_labels((80, 80), 60, rng)
    with pytest.raises(InputError, match="too few"):
        colour_grains(adjacency(lab), 3, rng)


def test_voronoi_cells_nearly_equal():
    lab = voronoi_labels((128, 128), 40, np.random.default_rng(2))
    areas = np.bincount(lab.ravel())
    assert areas.size == 40
    assert areas.std() / areas.mean() < 0.3


@pytest.mark.parametrize("kw,msg", [(dict(shape=(8, 8)), "too small"), (dict(n_grains=1), "n_grains"),
                                    (dict(dt=-1), "dt"), (dict(n_grains=5000), "too many"), (dict(grid=0.5), "grid")])
def test_bad_parameters(kw, msg):
    args = dict(shape=(64, 64), n_grains=10, steps=5, seed=0)
    args.update(kw)
    with pytest.raises(InputError, match=msg):
        phase_field(**args)


def test_cancel_returns_none():
    from matrestore.denoise import phase_field_iter
    from matrestore.progress import drive

    recs = []
    assert drive(phase_field_iter((64, 64), 10, 100, 0, cancel=True), recs.append) is None
    assert recs[-1]["kind"] == "stopped"
