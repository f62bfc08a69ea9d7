import numpy as np
import pytest
import torch

from matrestore import InputError
from matrestore.denoise import PRESETS, build_model, count_parameters, denoise, receptive_radius
from matrestore.denoise.apply import denoise_iter
from matrestore.progress import drive


def test_presets_build_and_map_to_unit_range():
    for name in ("tiny", "cpu"):
        m = build_model(name).eval()
        with torch.no_grad():
            y = m(torch.rand(1, 1, 32, 48))
        assert y.shape == (1, 1, 32, 48)
        assert float(y.min()) >= 0 and float(y.max()) <= 1
    assert count_parameters(build_model("tiny")) < 20_000
    assert PRESETS["paper"].squeeze == 0 and PRESETS["paper"].shuffle == 1
    with pytest.raises(InputError, match="preset"):
        build_model("huge")
    with pytest.raises(InputError, match="option"):
        build_model("tiny", widht=3)


def test_receptive_radius_bounds_the_real_dependency(tiny_model):
    """Perturbing one input pixel changes outputs no farther than the stated radius."""
    r = receptive_radius(tiny_model.cfg)
    n = 2 * r + 42
    x = torch.rand(1, 1, n, n)
    c = n // 2
    x2 = x.clone()
    x2[0, 0, c, c] += 1.0
    with torch.no_grad():
        d = (tiny_model(x2) - tiny_model(x)).abs()[0, 0].numpy()
    ys, xs = np.nonzero(d > 1e-5)  # running-sum pooling leaves float rounding (~1e-7) beyond the field
    assert ys.size > 0
    assert max(np.abs(ys - c).max(), np.abs(xs - c).max()) <= r


def test_tiled_equals_whole(tiny_model):
    rng = np.random.default_rng(0)
    img = (rng.random((150, 133)) * 200).astype(np.uint8)
    whole = denoise(img, tiny_model, tile=None)
    tiled = denoise(img, tiny_model, tile=64)
    recs = []
    drive(denoise_iter(img, tiny_model, tile=64), recs.append)
    assert [r for r in recs if r["kind"] == "setup"][0]["total"] > 4  # really tiled
    np.testing.assert_allclose(tiled, whole, atol=2e-5)
    # and without the histogram post-processing (which could hide differences)
    np.testing.assert_allclose(denoise(img, tiny_model, tile=64, histogram=False),
                               denoise(img, tiny_model, tile=None, histogram=False), atol=2e-5)


def test_output_shape_dtype_scale_and_input_untouched(tiny_model):
    rng = np.random.default_rng(1)
    for img in ((rng.random((40, 57)) * 4000).astype(np.uint16), rng.random((40, 57)).astype(np.float64) * 3 - 1,
                (rng.random((40, 57)) * 100).astype(np.int16)):
        keep = img.copy()
        out = denoise(img, tiny_model)
        np.testing.assert_array_equal(img, keep)
        assert out.shape == img.shape and out.dtype == np.float32
        # histogram matching: the output has the input's grey levels
        np.testing.assert_allclose(np.sort(out.ravel()), np.sort(img.astype(np.float32).ravel()), rtol=1e-6, atol=1e-6)
    out = denoise(img, tiny_model, histogram=False)
    assert out.min() >= img.min() - 1e-3 * np.ptp(img) - np.ptp(img) and out.dtype == np.float32


def test_rgb_input_becomes_grey(tiny_model):
    rng = np.random.default_rng(2)
    g = (rng.random((40, 40)) * 255).astype(np.uint8)
    recs = []
    out = drive(denoise_iter(np.dstack([g, g, g, np.full_like(g, 255)]), tiny_model), recs.append)
    assert out.shape == (40, 40)
    assert any(r["kind"] == "warning" and "alpha" in r["message"] for r in recs)
    np.testing.assert_allclose(out, denoise(g, tiny_model), atol=1e-6)
    with pytest.raises(InputError, match="RGB"):
        denoise(np.dstack([g, g, g]), tiny_model, colour="error")


@pytest.mark.parametrize("img,msg", [
    (np.full((40, 40), np.nan), "NaN"),
    (np.array([[np.inf] * 40] * 40), "NaN or infinite"),
    (np.full((40, 40), 3.0), "constant"),
    (np.zeros((10, 40)), "too small"),
    (np.zeros((4, 40, 40)), "2-D"),
    (np.array([["a"] * 20] * 20), "data type"),
])
def test_bad_images_refused(tiny_model, img, msg):
    with pytest.raises(InputError, match=msg):
        denoise(img, tiny_model)


def test_cancel_stops(tiny_model):
    recs = []
    assert drive(denoise_iter(np.random.default_rng(0).random((64, 64)), tiny_model, tile=32, cancel=True), recs.append) is None
    assert recs[-1]["kind"] == "stopped"


def test_global_squeeze_warns_when_tiled():
    m = build_model("tiny", squeeze=0).eval()
    recs = []
    drive(denoise_iter(np.random.default_rng(0).random((100, 100)), m, tile=48, halo=8), recs.append)
    assert any(r["kind"] == "warning" and "global" in r["message"] for r in recs)


def test_fused_batch_norm_is_the_same_function():
    from matrestore.denoise.model import fuse_for_inference

    m = build_model("tiny", seed=3)
    m.train()
    with torch.no_grad():  # give the batch norms non-trivial running statistics
        for _ in range(3):
            m(torch.rand(2, 1, 32, 32) * 3)
    m.eval()
    f = fuse_for_inference(m)
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in f.modules())
    assert any(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())  # the original is untouched
    x = torch.rand(1, 1, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(f(x), m(x), atol=1e-5, rtol=1e-5)


def test_deepen_keeps_the_function_and_the_old_blocks():
    from matrestore.denoise.model import deepen

    m = build_model("tiny", seed=4, n_blocks=3)
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.rand(2, 1, 32, 32) * 2)
    m.eval()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    d = deepen(m, 7)
    assert d.cfg.n_blocks == 7 and len(d.blocks) == 7 and m.cfg.n_blocks == 3
    assert d.training  # ready to train
    d.eval()
    x = torch.rand(1, 1, 48, 48)
    with torch.no_grad():
        diff = float((d(x) - m(x)).abs().max())
    assert 0 < diff < 0.01  # near-identity new blocks: their gates are sigmoid(6), not exactly 1
    # the last old block stays last, the old blocks keep their order and weights
    olds = [j for j, b in enumerate(d.blocks) if float(b.body[1][1].weight.detach().abs().sum()) > 0]
    assert len(olds) == 3 and olds[-1] == 6 and olds == sorted(olds)
    for i, j in enumerate(olds):
        for k, v in m.blocks[i].state_dict().items():
            torch.testing.assert_close(d.blocks[j].state_dict()[k], v)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())  # the original is untouched
    # the deepened model trains: a new block's zero-gamma batch norm moves after one Adam step
    d.train()
    opt = torch.optim.Adam(d.parameters(), lr=1e-2)
    new = next(j for j in range(7) if j not in olds)
    loss = ((d(torch.rand(2, 1, 32, 32)) - 0.5) ** 2).mean()
    loss.backward()
    opt.step()
    assert float(d.blocks[new].body[1][1].weight.detach().abs().sum()) > 0
    with pytest.raises(InputError, match="fewer"):
        deepen(m, 2)
    assert PRESETS["cpu-deep"].n_blocks == 12 and receptive_radius(PRESETS["cpu-deep"]) > receptive_radius(PRESETS["cpu"])


def test_tiles_mostly_halo_are_said(tiny_model):
    from matrestore.denoise.apply import default_halo

    h = default_halo(tiny_model)
    recs = []
    x = np.random.default_rng(1).random((200, 200))
    drive(denoise_iter(x, tiny_model, tile=2 * h + 16), recs.append)  # keeps 16 px of each tile
    notes = [r["message"] for r in recs if r["kind"] == "warning"]
    assert any("keep only 16 px" in n for n in notes)
    recs = []
    drive(denoise_iter(x, tiny_model, tile=8 * h), recs.append)
    assert not any("keep only" in r.get("message", "") for r in recs if r["kind"] == "warning")
