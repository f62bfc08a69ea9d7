import numpy as np
import pytest
import torch
import torch.nn.functional as F

from matrestore._validate import InputError
from matrestore.baselines import upsample
from matrestore.nets.blocks import BicubicUpsample
from matrestore.nets.vgg import LAYER_INDEX, VGG19Features, load_vgg19_imagenet
from matrestore.sr import build_model, count_parameters
from matrestore.sr.model import Discriminator, running_search, transfer, unfold_normalised, value_table


@pytest.mark.parametrize("shape,scale", [((13, 17), 4), ((5, 9), 2), ((1, 3), 4)])
def test_bicubic_module_equals_baseline(shape, scale):
    x = np.random.default_rng(0).random(shape)
    got = BicubicUpsample(scale)(torch.tensor(x)[None, None]).numpy()[0, 0]
    np.testing.assert_allclose(got, upsample(x, scale, "bicubic"), atol=1e-12)


def test_presets_sizes_and_errors():
    n = {p: count_parameters(build_model(p)) for p in ("tiny", "cpu", "paper")}
    assert n["tiny"] < 50_000 < n["cpu"] < 1_000_000 < n["paper"]
    assert 6_000_000 < n["paper"] < 8_000_000  # the official TTSR size
    with pytest.raises(InputError, match="preset"):
        build_model("huge")
    with pytest.raises(InputError, match="scale"):
        build_model("tiny", scale=2)
    with pytest.raises(InputError, match="option"):
        build_model("tiny", colour=True)


def test_forward_shapes_and_gradients_reach_the_lte():
    m = build_model("tiny", seed=0)
    lr = torch.randn(2, 1, 9, 11)
    ref = torch.randn(2, 3, 1, 32, 32)
    sr, S, T = m(lr, ref, return_aux=True)
    assert sr.shape == (2, 1, 36, 44) and S.shape == (2, 1, 9, 11)
    assert [t.shape[-2:] for t in T] == [(36, 44), (18, 22), (9, 11)]
    assert float(S.detach().max()) <= 1.0 + 1e-5  # cosine relevance
    sr.square().mean().backward()
    assert m.lte.features[0].weight.grad.abs().sum() > 0  # through the values and the soft attention
    assert m.main.SFE.conv_head.weight.grad.abs().sum() > 0


def test_zero_residual_is_exactly_bicubic():
    m = build_model("tiny", seed=0)
    with torch.no_grad():
        m.main.merge_tail.conv_tail2.weight.zero_()
    x = np.random.default_rng(1).random((10, 12)).astype(np.float32)
    out = m(torch.from_numpy(x)[None, None], torch.randn(1, 1, 32, 32))[0, 0].detach().numpy()
    np.testing.assert_allclose(out, upsample(x, 4, "bicubic"), atol=1e-6)


def test_running_search_matches_brute_force_for_any_slab():
    g = torch.Generator().manual_seed(0)
    q = F.normalize(torch.randn(2, 50, 18, generator=g), dim=2)
    k = F.normalize(torch.randn(18, 77, generator=g), dim=0)
    full = q @ k
    for slab in (1, 7, 77, 1000):
        best, arg = running_search(q, k, slab=slab)
        assert torch.equal(arg, full.argmax(2))
        torch.testing.assert_close(best, full.max(2).values)
    kb = F.normalize(torch.randn(2, 18, 30, generator=g), dim=1)
    best, arg = running_search(q, kb, slab=8)
    assert torch.equal(arg, torch.bmm(q, kb).argmax(2))


def test_transfer_equals_unfold_gather_fold():
    """The memory-light transfer equals the official unfold/gather/fold (divided by the overlap count)."""
    g = torch.Generator().manual_seed(0)
    B, C, h, w, hr, wr, b = 2, 3, 5, 6, 4, 7, 2
    v = torch.randn(1, C, hr * b, wr * b, generator=g)
    idx = torch.randint(0, hr * wr, (B, h * w), generator=g)
    # official: unfold V with kernel 3b, stride b, padding b; gather columns; fold back
    vu = F.unfold(v, kernel_size=3 * b, padding=b, stride=b)  # (1, C*9b², P)
    gathered = torch.stack([vu[0][:, idx[i]] for i in range(B)])  # (B, C*9b², hw)
    folded = F.fold(gathered, (h * b, w * b), kernel_size=3 * b, padding=b, stride=b)
    ones = F.fold(torch.ones_like(gathered), (h * b, w * b), kernel_size=3 * b, padding=b, stride=b)
    expected = folded / ones
    table = value_table(v, b)
    table = torch.cat((table, table.new_zeros(1, table.shape[1])))
    ry, rx = (idx // wr).view(B, h, w), (idx % wr).view(B, h, w)
    (got,) = transfer(torch.zeros_like(ry), ry, rx, wr + 2, [table], (b,), (C,))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_unfold_normalised_unit_vectors():
    u = unfold_normalised(torch.rand(1, 4, 5, 6) + 0.1)
    assert u.shape == (1, 30, 36)
    torch.testing.assert_close(u.norm(dim=2), torch.ones(1, 30))


def test_vgg_has_torchvision_names_and_grey_folding(tmp_path):
    vgg = VGG19Features("relu5_1", in_channels=3)
    names = list(vgg.state_dict())
    assert names[:2] == ["features.0.weight", "features.0.bias"] and "features.28.weight" in names
    assert LAYER_INDEX["relu3_1"] == 11 and LAYER_INDEX["relu5_1"] == 29
    # a fake torchvision state dict (same names and shapes) loads, classifier entries ignored
    torch.manual_seed(0)
    rgb = VGG19Features("relu5_4", in_channels=3)
    state = dict(rgb.state_dict())
    state["classifier.0.weight"] = torch.zeros(2, 2)
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    torch.save(state, path)
    grey = VGG19Features("relu2_1", in_channels=1)
    assert "ImageNet" in load_vgg19_imagenet(grey, path)
    rgb_small = VGG19Features("relu2_1", in_channels=3)
    load_vgg19_imagenet(rgb_small, path)
    x = torch.rand(1, 1, 24, 24)
    from matrestore.nets.vgg import imagenet_normalisation

    m3, s3 = imagenet_normalisation(3)
    m1, s1 = imagenet_normalisation(1)
    a = rgb_small(((x.expand(-1, 3, -1, -1)) - m3) / s3)
    b_ = grey((x - m1) / s1)
    torch.testing.assert_close(a[..., 3:-3, 3:-3], b_[..., 3:-3, 3:-3], atol=1e-4, rtol=1e-4)
    slim = VGG19Features("relu3_1", in_channels=1, widths=(16, 32, 32))
    with pytest.raises(InputError, match="slim"):
        load_vgg19_imagenet(slim, path)


def test_discriminator_any_size():
    d = Discriminator(4)
    assert d(torch.randn(3, 1, 40, 56)).shape == (3,)


def test_preset_receptive_radius_is_the_measured_one():
    from matrestore.sr import measure_receptive_radius

    m = build_model("tiny", seed=5)
    stored = m.cfg.receptive_radius
    assert stored is not None and measure_receptive_radius(m, trials=2, seed=1) <= stored
    assert build_model("tiny", feats=(4, 4, 4)).cfg.receptive_radius is None
    assert build_model("tiny", top_k=3).cfg.receptive_radius == stored


def test_deepen_keeps_the_function_and_trains_the_new_blocks():
    """Net2DeeperNet: the deeper copy computes exactly what the model computes, then learns with its new blocks."""
    from matrestore.sr import deepen

    model = build_model("tiny", seed=1)
    with torch.no_grad():  # make every weight non-trivial, as after training
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    deeper = deepen(model, (2, 3, 1, 2))
    assert deeper.cfg.res_blocks == (2, 3, 1, 2)
    # the halo enhance needs once the new blocks have learnt: more than the model's, not what identities show
    assert deeper.cfg.receptive_radius > model.cfg.receptive_radius
    assert count_parameters(deeper) > count_parameters(model) and "deepened" in deeper.meta["name"]
    lr, ref = torch.rand(2, 1, 12, 12) * 2 - 1, torch.rand(2, 2, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model(lr, ref), deeper(lr, ref))
    deeper(lr, ref).square().mean().backward()
    assert deeper.main.RB11[2].conv2.weight.grad.abs().sum() > 0  # the new block is not frozen
    with pytest.raises(InputError, match="none below"):
        deepen(model, (1, 1, 1, 0))
