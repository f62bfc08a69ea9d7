import json

import numpy as np
import pytest
import tifffile

from matrestore import cli, io
from matrestore.degrade import downsample
from matrestore.sr import save_model


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_model):
    from skimage import data

    d = tmp_path_factory.mktemp("srcli")
    refs = d / "refs"
    refs.mkdir()
    tifffile.imwrite(refs / "ref.tif", data.camera()[:128, :128])
    hr = [data.camera()[200:296, 100:220], data.moon()[:80, :100]]
    hr_paths = []
    for i, h in enumerate(hr):
        p = d / f"hr{i}.tif"
        io.write_tiff(p, h, pixel_size_nm=10.0)
        hr_paths.append(p)
    lr = d / "lr0.tif"
    io.write_tiff(lr, downsample(hr[0], 4), pixel_size_nm=40.0)
    model = save_model(tiny_model, d / "tiny.safetensors")
    return {"dir": d, "refs": refs, "hr": hr_paths, "lr": lr, "model": model}


def test_sr_enhance_writes_calibrated_tiff(files, capsys):
    out = files["dir"] / "out" / "lr0_sr.tif"
    rc = cli.main(["sr", "enhance", str(files["lr"]), "--refs", str(files["refs"]), "--model", str(files["model"]),
                   "--out", str(out), "--mode", "paper"])
    assert rc == 0
    img, meta = io.read_image(out)
    assert img.shape == (96, 120) and img.dtype == np.uint8
    assert meta["pixel_size"] == pytest.approx(10.0)


def test_sr_evaluate_json_schema(files, capsys):
    js = files["dir"] / "eval.json"
    rc = cli.main(["sr", "evaluate", "--hr", *map(str, files["hr"]), "--refs", str(files["refs"]), "--model", str(files["model"]),
                   "--json", str(js)])
    assert rc == 0
    doc = json.loads(js.read_text())
    assert [im["name"] for im in doc["images"]] == ["hr0", "hr1"]
    for im in doc["images"]:
        assert set(im["metrics"]) == {"nearest", "bicubic", "lanczos", "ttsr"}
        assert set(im["metrics"]["ttsr"]) == {"psnr", "ssim", "essim"} and len(im["shape"]) == 2
    s = doc["summary"]["ttsr"]["essim"]
    assert s["n"] == 2 and s["mean"] == pytest.approx(np.mean([im["metrics"]["ttsr"]["essim"] for im in doc["images"]]))
    assert "ESSIM" in capsys.readouterr().out


def test_sr_train_and_errors(files, tmp_path, capsys):
    out = tmp_path / "run"
    rc = cli.main(["sr", "train", "--hr", *map(str, files["hr"]), "--out", str(out), "--preset", "tiny", "--epochs", "1",
                   "--steps", "1", "--batch", "2", "--patch", "8", "--cell", "8"])
    assert rc == 0 and (out / "best.safetensors").exists()
    assert "best model" in capsys.readouterr().out
    assert cli.main(["sr", "enhance", str(files["lr"]), "--refs", str(files["refs"]), "--model", str(tmp_path / "nope.safetensors")]) == 2
    assert "not found" in capsys.readouterr().err
    assert cli.main(["sr", "train", "--hr", str(files["hr"][0]), "--out", str(out), "--weights", "1,2"]) == 2
