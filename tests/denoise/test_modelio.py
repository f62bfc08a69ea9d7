import numpy as np
import pytest
import torch

from matrestore import InputError, modelfile
from matrestore.denoise import denoise, load_model, save_model


def test_round_trip_same_outputs(tmp_path, tiny_model):
    tiny_model.meta = {"name": "t"}
    p = save_model(tiny_model, tmp_path / "m", training={"real_micrographs": ["x"]}, metrics={"validation": {"f1": 0.5}})
    assert p.suffix == ".safetensors"
    m = load_model(p)
    assert m.cfg == tiny_model.cfg
    assert m.meta["task"] == "denoise" and m.meta["training"]["real_micrographs"] == ["x"]
    assert m.meta["receptive_radius"] == tiny_model.receptive_radius
    img = np.random.default_rng(0).random((48, 48))
    np.testing.assert_array_equal(denoise(img, m), denoise(img, tiny_model))
    # half precision: smaller, nearly the same
    ph = save_model(tiny_model, tmp_path / "h.safetensors", half=True)
    assert ph.stat().st_size < p.stat().st_size
    np.testing.assert_allclose(denoise(img, load_model(ph), histogram=False), denoise(img, tiny_model, histogram=False), atol=5e-3)


def test_wrong_task_refused(tmp_path):
    p = modelfile.save(tmp_path / "sr.safetensors", {"w": torch.zeros(2)}, {"config": {}}, task="sr")
    with pytest.raises(InputError, match="task 'sr', not 'denoise'"):
        load_model(p)


def test_truncated_and_foreign_files_refused(tmp_path, tiny_model):
    p = save_model(tiny_model, tmp_path / "m.safetensors")
    data = p.read_bytes()
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated"):
        load_model(bad)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(InputError):
        load_model(junk)
    with pytest.raises(InputError, match="not found"):
        load_model(tmp_path / "missing.safetensors")


def test_mismatched_weights_refused(tmp_path, tiny_model):
    p = save_model(tiny_model, tmp_path / "m.safetensors")
    tensors, meta = modelfile.load(p)
    meta["config"]["feats"] = 12
    modelfile.save(tmp_path / "x.safetensors", tensors, {k: v for k, v in meta.items() if k not in ("format", "format_version", "task")}, task="denoise")
    with pytest.raises(InputError, match="do not match"):
        load_model(tmp_path / "x.safetensors")


def test_default_model_if_shipped():
    from matrestore.denoise import DEFAULT_MODEL

    if not DEFAULT_MODEL.is_file():
        with pytest.raises(InputError, match="no default denoising model"):
            load_model("default")
        return
    m = load_model("default")
    assert m.meta["task"] == "denoise"
    train_reals = m.meta["training"]["real_micrographs"]
    assert not any("mlography" in r for r in train_reals)  # the held-out test micrographs were never trained on
    assert DEFAULT_MODEL.stat().st_size < 5e6
