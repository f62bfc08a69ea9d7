import numpy as np
import pytest
import torch

from matrestore import modelfile
from matrestore._validate import InputError
from matrestore.sr import build_model, enhance, load_model, save_model
from matrestore.sr.modelio import DEFAULT_MODEL
from matrestore.sr.references import ReferenceBank


def test_round_trip_is_exact_and_self_describing(tmp_path, tiny_model, ref_images, lr_image):
    path = save_model(tiny_model, tmp_path / "tiny.safetensors", training={"sources": ["a.tif"]}, metrics={"val": {"psnr": 30.0}})
    meta = modelfile.read_metadata(path, task="sr")
    assert meta["config"]["preset"] == "tiny" and meta["scale"] == 4
    assert meta["config"]["receptive_radius"] == tiny_model.cfg.receptive_radius
    assert meta["normalisation"]["kind"] == "percentile"
    assert meta["training"]["sources"] == ["a.tif"] and meta["metrics"]["val"]["psnr"] == 30.0
    assert {"torch", "matrestore", "safetensors"} <= set(meta["versions"])
    m2 = load_model(path)
    assert not m2.training and m2.meta["parameters"] == sum(p.numel() for p in tiny_model.parameters())
    bank = ReferenceBank.from_images(ref_images, ["a", "b", "c"], crop=32)
    a = enhance(lr_image, bank, tiny_model)
    b = enhance(lr_image, bank, str(path))
    np.testing.assert_array_equal(a, b)
    half = save_model(tiny_model, tmp_path / "half.safetensors", half=True)
    assert half.stat().st_size < 0.7 * path.stat().st_size
    c = enhance(lr_image, bank, load_model(half))
    assert np.abs(c - a).max() < 0.02


def test_load_errors(tmp_path, tiny_model):
    if not DEFAULT_MODEL.exists():
        with pytest.raises(InputError, match="no default"):
            load_model("default")
    path = save_model(tiny_model, tmp_path / "m.safetensors")
    data = path.read_bytes()
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated"):
        load_model(trunc)
    other = modelfile.save(tmp_path / "denoise.safetensors", {"w": torch.zeros(1)}, {}, task="denoise")
    with pytest.raises(InputError, match="task"):
        load_model(other)
    # weights that do not match the stored architecture
    wrong = build_model("tiny", seed=0)
    state = {k: v for k, v in wrong.state_dict().items() if "RB11" not in k}
    bad = modelfile.save(tmp_path / "bad.safetensors", state, {"config": wrong.cfg.to_dict()}, task="sr")
    with pytest.raises(InputError, match="do not match"):
        load_model(bad)
    with pytest.raises(InputError, match="TTSR"):
        save_model(torch.nn.Linear(2, 2), tmp_path / "x.safetensors")


def test_shipped_default_model_is_self_describing():
    """The package ships a default model: it loads, enhances 4x and says what it was trained on."""
    assert DEFAULT_MODEL.is_file(), "src/matrestore/sr/models/default.safetensors is missing (package data)"
    assert DEFAULT_MODEL.stat().st_size < 5e6  # keep the package small
    model = load_model("default")
    meta = model.meta
    assert model.scale == 4 and meta["config"]["preset"] == "cpu"
    names = {s["name"] for s in meta["training"]["sources"]}
    # the images set aside for the model card's held-out table were never trained on
    held_out = {"sem2surface__P33_scale2s3_detectorA.tif", "openecci__steel_SEM_003.tif", "rsciio__test_tiff_Zeiss_SEM_512pix.tif"}
    assert names.isdisjoint(held_out)
    v = meta["metrics"]["validation"]
    assert v["ttsr"]["psnr"] > v["bicubic"]["psnr"] and v["ttsr"]["essim"] > v["bicubic"]["essim"]
    # and it records its figures on them (scripts/eval_default.py --record), beating bicubic on each
    held = meta["metrics"]["held_out"]
    assert held["n"] == 3 and {n.removesuffix("_left") + ".tif" for n in held["images"]} == held_out
    assert held["worst_psnr_gain_db"] > 0 and held["essim_ratio"] > 1
