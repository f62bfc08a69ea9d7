import json

import numpy as np
import pytest

from matrestore.cli import main


@pytest.fixture()
def real_file(tmp_path, real_texture):
    import tifffile

    p = tmp_path / "real.tif"
    tifffile.imwrite(p, real_texture)
    return p


@pytest.fixture()
def tiny_file(tmp_path, tiny_model):
    from matrestore.denoise import save_model

    return save_model(tiny_model, tmp_path / "tiny.safetensors")


def test_synth_writes_pairs_and_refuses_foreign_files(tmp_path, real_file):
    out = tmp_path / "pairs"
    assert main(["denoise", "synth", "--real", str(real_file), "--out", str(out), "--n", "1", "--shape", "64",
                 "--grains", "10", "--steps", "20"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert "pair_000_0_noisy.tif" in names and "pair_000_0.json" in names
    doc = json.loads((out / "pair_000_0.json").read_text())
    assert doc["written_by"] == "matrestore" and doc["recipe"]["seed"] == 0
    # rerun over its own outputs is fine; a foreign file in the way is refused (exit 2)
    assert main(["denoise", "synth", "--real", str(real_file), "--out", str(out), "--n", "1", "--shape", "64",
                 "--grains", "10", "--steps", "20"]) == 0
    (out / "pair_000_0.json").write_text("{}")
    assert main(["denoise", "synth", "--real", str(real_file), "--out", str(out), "--n", "1", "--shape", "64"]) == 2


def test_apply_writes_output_and_never_the_input(tmp_path, real_file, tiny_file, capsys):
    import tifffile

    before = real_file.read_bytes()
    assert main(["denoise", "apply", str(real_file), "--model", str(tiny_file)]) == 0
    out = tmp_path / "real_denoised.tif"
    arr = tifffile.imread(out)
    assert arr.shape == (160, 200) and arr.dtype == np.float32
    assert main(["denoise", "apply", str(real_file), "--model", str(tiny_file), "--out", str(real_file)]) == 2
    assert "inputs" in capsys.readouterr().err
    assert real_file.read_bytes() == before
    assert main(["denoise", "apply", str(real_file), "--baseline", "gaussian", "--out", str(tmp_path / "g.tif")]) == 0


def test_bad_input_exit_code_2(tmp_path, real_file, capsys):
    import tifffile

    from matrestore import modelfile
    import torch

    assert main(["denoise", "apply", str(tmp_path / "missing.tif")]) == 2
    const = tmp_path / "const.tif"
    tifffile.imwrite(const, np.full((64, 64), 9, np.uint8))
    sr = modelfile.save(tmp_path / "sr.safetensors", {"w": torch.zeros(1)}, {"config": {}}, task="sr")
    assert main(["denoise", "apply", str(real_file), "--model", str(sr)]) == 2
    err = capsys.readouterr().err
    assert "not 'denoise'" in err and "Traceback" not in err
    assert main(["denoise", "apply", str(const), "--model", str(sr)]) == 2
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(sr.read_bytes()[:40])
    assert main(["denoise", "apply", str(real_file), "--model", str(cut)]) == 2
    small = tmp_path / "small.tif"
    tifffile.imwrite(small, (np.random.default_rng(0).random((40, 40)) * 255).astype(np.uint8))
    assert main(["denoise", "evaluate", "--real", str(small), "--model", "none", "--shape", "64", "--n", "1"]) == 2
    assert "smaller than the test images" in capsys.readouterr().err


def test_apply_constant_image_exit_2(tmp_path, tiny_file, capsys):
    import tifffile

    const = tmp_path / "const.tif"
    tifffile.imwrite(const, np.full((64, 64), 9, np.uint8))
    assert main(["denoise", "apply", str(const), "--model", str(tiny_file)]) == 2
    assert "constant" in capsys.readouterr().err


def test_evaluate_json(tmp_path, real_file, tiny_file):
    js = tmp_path / "ev.json"
    assert main(["denoise", "evaluate", "--real", str(real_file), "--model", str(tiny_file), "--n", "1", "--shape", "64",
                 "--baselines", "gaussian,tv", "--json", str(js)]) == 0
    doc = json.loads(js.read_text())
    assert doc["written_by"] == "matrestore"
    assert set(doc["summary"]) == {"network", "network (no histogram matching)", "input (not denoised)", "gaussian", "tv"}
    assert 0 <= doc["summary"]["tv"]["f1"] <= 1 and doc["summary"]["gaussian"]["time_s"] > 0


def test_train_cli_tiny(tmp_path, real_file):
    out = tmp_path / "run"
    assert main(["denoise", "train", "--real", str(real_file), "--out", str(out), "--preset", "tiny", "--epochs", "1",
                 "--steps-per-epoch", "2", "--batch-size", "2", "--patch", "32", "--structures", "2", "--val-structures", "1"]) == 0
    assert (out / "best.safetensors").is_file() and (out / "checkpoint.pt").is_file()
