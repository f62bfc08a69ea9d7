"""Network: torchvision names, ICNR, presets, tiled == whole, model files."""

import numpy as np
import pytest
import torch

from matrestore._validate import InputError
from matrestore.labdct import build_model, load_model, save_model
from matrestore.labdct.model import PRESETS, PixelShuffleICNR, icnr_
from matrestore.labdct.infer import _forward
from matrestore.nets import VGG16Features, VGG19Features, resnet34_encoder


def test_resnet34_encoder_has_torchvision_names_and_size():
    enc = resnet34_encoder(3, 64)
    sd = enc.state_dict()
    for k in ("conv1.weight", "bn1.running_var", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
              "layer3.5.bn2.bias", "layer4.2.conv2.weight"):
        assert k in sd
    # torchvision resnet34 has 21 797 672 parameters, 513 000 of them in fc
    assert sum(p.numel() for p in enc.parameters()) == 21_797_672 - 513_000
    feats = enc(torch.zeros(1, 3, 64, 64))
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4, 2]


def test_resnet_weights_from_a_local_file(tmp_path):
    from matrestore.nets.resnet import load_resnet_imagenet

    src = resnet34_encoder(3, 64)
    p = tmp_path / "resnet34.pth"
    torch.save(src.state_dict(), p)
    dst = resnet34_encoder(1, 64)
    desc = load_resnet_imagenet(dst, p)
    assert "ImageNet ResNet" in desc
    assert torch.allclose(dst.conv1.weight, src.conv1.weight.sum(1, keepdim=True))
    with pytest.raises(InputError):
        load_resnet_imagenet(resnet34_encoder(3, 16), p)
    with pytest.raises(InputError):
        load_resnet_imagenet(dst, tmp_path / "none.pth")


def test_vgg16_added_and_vgg19_unchanged():
    v16 = VGG16Features("relu3_3")
    assert len(v16.features) == 16  # conv1_1 .. relu3_3
    assert [k for k in v16.state_dict()][:2] == ["features.0.weight", "features.0.bias"]
    v19 = VGG19Features("relu3_1")
    assert len(v19.features) == 12


def test_icnr_makes_subpixels_equal():
    m = PixelShuffleICNR(4, 3)
    x = torch.randn(1, 4, 5, 5)
    y = m(x)
    assert y.shape == (1, 3, 10, 10)
    assert torch.allclose(y[..., 0::2, 0::2], y[..., 1::2, 1::2])
    w = icnr_(torch.empty(8, 2, 1, 1))
    assert torch.equal(w[0], w[3])


def test_presets():
    assert set(PRESETS) == {"tiny", "cpu", "paper"}
    tiny = build_model("tiny")
    assert sum(p.numel() for p in tiny.parameters()) < 20_000
    assert tiny.cfg.in_channels == 3 and tiny.stride == 8
    paper = PRESETS["paper"]
    assert paper.width == 64 and paper.layers == (3, 4, 6, 3) and paper.loss == "perceptual"
    with pytest.raises(InputError):
        build_model("huge")
    with pytest.raises(InputError):
        build_model("tiny", loss="l1")


def test_tiled_equals_whole():
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    x = np.random.default_rng(0).uniform(0.5, 1.5, (3, 200, 232)).astype(np.float32)
    whole = _forward(model, x, torch.device("cpu"), tile=1024, margin=0, batch=1, calib=0.0)
    tiled = _forward(model, x, torch.device("cpu"), tile=144, margin=48, batch=3, calib=0.0)
    assert whole.shape == (200, 232)
    assert np.abs(tiled - whole).max() < 1e-5


def test_model_file_round_trip_and_wrong_task(tmp_path):
    from matrestore import modelfile

    model = build_model("tiny")
    model.meta = {"calibration": 1.5}
    p = save_model(model, tmp_path / "m.safetensors", note="test")
    back = load_model(p)
    assert back.cfg == model.cfg and back.meta["note"] == "test" and back.meta["task"] == "labdct"
    for a, b in zip(model.state_dict().values(), back.state_dict().values()):
        assert torch.equal(a.float(), b.float())
    half = load_model(save_model(model, tmp_path / "h.safetensors", half=True))
    assert half.meta["calibration"] == 1.5
    other = modelfile.save(tmp_path / "sr.safetensors", {"w": torch.zeros(2)}, {"config": {}}, task="sr")
    with pytest.raises(InputError, match="task 'sr', not 'labdct'"):
        load_model(other)
    (tmp_path / "junk.safetensors").write_bytes(b"not a model")
    with pytest.raises(InputError):
        load_model(tmp_path / "junk.safetensors")
    with pytest.raises(InputError, match="not found"):
        load_model(tmp_path / "missing.safetensors")
