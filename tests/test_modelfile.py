import json

import numpy as np
import pytest
import torch

from matrestore import modelfile
from matrestore._validate import InputError


def _save(tmp_path, name="m.safetensors", task="demo", meta=None):
    tensors = {"a.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4), "b": torch.ones(2, dtype=torch.int64)}
    path = modelfile.save(tmp_path / name, tensors, meta or {"config": {"width": 3, "sizes": (1, 2)}, "x": np.float32(1.5)}, task=task)
    return path, tensors


def test_round_trip_and_metadata(tmp_path):
    path, tensors = _save(tmp_path)
    got, meta = modelfile.load(path, task="demo")
    assert set(got) == set(tensors)
    for k in tensors:
        assert torch.equal(got[k], tensors[k])
    assert meta["format"] == modelfile.FORMAT and meta["task"] == "demo"
    assert meta["config"] == {"width": 3, "sizes": [1, 2]} and meta["x"] == 1.5
    assert "torch" in meta["versions"] and "matrestore" in meta["versions"]
    assert modelfile.read_metadata(path)["config"]["width"] == 3


def test_path_without_suffix_gets_safetensors(tmp_path):
    path, _ = _save(tmp_path, name="plain")
    assert path.suffix == ".safetensors" and path.exists()


def test_truncated_file_is_a_clear_error(tmp_path):
    path, _ = _save(tmp_path)
    data = path.read_bytes()
    bad = tmp_path / "trunc.safetensors"
    bad.write_bytes(data[: len(data) - 20])
    with pytest.raises(InputError, match="truncated|not a readable"):
        modelfile.load(bad)
    bad.write_bytes(data[:5])
    with pytest.raises(InputError):
        modelfile.read_metadata(bad)


def test_foreign_files_are_clear_errors(tmp_path):
    tif = tmp_path / "image.tif"
    tif.write_bytes(b"II*\x00" + bytes(200))
    with pytest.raises(InputError):
        modelfile.load(tif)
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other), metadata={"name": "someone else's"})
    with pytest.raises(InputError, match="not a matrestore model"):
        modelfile.load(other)
    with pytest.raises(InputError, match="not found"):
        modelfile.load(tmp_path / "missing.safetensors")


def test_wrong_task_and_newer_format(tmp_path):
    path, _ = _save(tmp_path)
    with pytest.raises(InputError, match="task"):
        modelfile.load(path, task="sr")
    from safetensors.torch import save_file

    newer = tmp_path / "newer.safetensors"
    doc = {"format": modelfile.FORMAT, "format_version": modelfile.FORMAT_VERSION + 1, "task": "demo"}
    save_file({"w": torch.zeros(1)}, str(newer), metadata={modelfile.META_KEY: json.dumps(doc)})
    with pytest.raises(InputError, match="newer"):
        modelfile.load(newer)
