import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from skimage import data

from matrestore import cli, io
from matrestore.degrade import downsample
from matrestore.evaluation import evaluate_baselines


@pytest.fixture
def hr_files(tmp_path):
    cam = data.camera()[:200, :240]
    moon = data.moon()[:160, :200]
    paths = [tmp_path / "cam.tif", tmp_path / "moon.tif"]
    tifffile.imwrite(paths[0], cam)
    tifffile.imwrite(paths[1], moon)
    return paths, [cam, moon]


def test_compare_json_schema_and_numbers(hr_files, tmp_path, capsys):
    paths, arrays = hr_files
    out = tmp_path / "res" / "out.json"
    assert cli.main(["compare", "--hr", *map(str, paths), "--scale", "4", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert [im["name"] for im in doc["images"]] == ["cam", "moon"]
    assert doc["images"][0]["shape"] == [200, 240]
    for im, arr in zip(doc["images"], arrays):
        assert set(im["metrics"]) == {"nearest", "bicubic", "lanczos"}
        expected = evaluate_baselines(arr, scale=4)["metrics"]
        for method, vals in expected.items():
            for metric, v in vals.items():
                assert im["metrics"][method][metric] == pytest.approx(v, rel=1e-12)
    s = doc["summary"]["bicubic"]["essim"]
    vals = [im["metrics"]["bicubic"]["essim"] for im in doc["images"]]
    assert s["n"] == 2 and s["mean"] == pytest.approx(np.mean(vals))
    assert s["sem"] == pytest.approx(np.std(vals, ddof=1) / np.sqrt(2))
    text = capsys.readouterr().out
    assert "ESSIM" in text and "mean ± standard error over 2 image(s)" in text


def test_compare_with_given_lr_and_out_dir(hr_files, tmp_path, capsys):
    paths, arrays = hr_files
    lr_path = tmp_path / "cam_lr.tif"
    tifffile.imwrite(lr_path, downsample(arrays[0], 4))
    out_dir = tmp_path / "imgs"
    assert cli.main(["compare", "--hr", str(paths[0]), "--lr", str(lr_path), "--out-dir", str(out_dir)]) == 0
    for m in ("nearest", "bicubic", "lanczos"):
        img, _ = io.read_image(out_dir / f"cam_{m}.tif")
        assert img.shape == (200, 240)


def test_compare_mismatched_lr_is_a_clear_error(hr_files, tmp_path, capsys):
    paths, arrays = hr_files
    lr_path = tmp_path / "bad_lr.tif"
    tifffile.imwrite(lr_path, arrays[0][:30, :30])
    assert cli.main(["compare", "--hr", str(paths[0]), "--lr", str(lr_path)]) == 2
    err = capsys.readouterr().err
    assert "does not match" in err and "Traceback" not in err


def test_missing_file_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["compare", "--hr", str(tmp_path / "nope.tif")]) == 2
    assert "nope.tif" in capsys.readouterr().err


def test_compare_real_sem_uses_pixel_size(shared_data, tmp_path):
    path = shared_data / "sem" / "aquami__Sample.tif"
    out = tmp_path / "o.json"
    assert cli.main(["compare", "--hr", str(path), "--json", str(out)]) == 0
    im = json.loads(out.read_text())["images"][0]
    assert im["pixel_size_nm"] == pytest.approx(0.543, rel=0.01)
    assert im["databar_rows"] > 0
    m = im["metrics"]
    # on a real micrograph bicubic beats nearest on every metric
    assert all(m["bicubic"][k] > m["nearest"][k] for k in ("psnr", "ssim", "essim"))


def test_demo_writes_outputs(tmp_path, capsys):
    doc = cli.main(["demo", "--out", str(tmp_path / "demo")])
    assert doc == 0
    # the sample was a training image: the demo says so and gives the figures on images the model never saw
    out = capsys.readouterr().out
    assert "flatter it" in out and "on 3 micrographs it never saw: +0.24 dB PSNR, ESSIM ×1.16 vs bicubic" in out
    for name in ("lr.tif", "hr.tif", "bicubic.tif", "ttsr.tif", "side_by_side.png", "metrics.json"):
        assert (tmp_path / "demo" / name).is_file()
    doc = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    metrics = doc["metrics"]
    assert metrics["bicubic"]["essim"] > metrics["nearest"]["essim"]
    # the shipped model beats bicubic on the sample (it was among its training images: see the model card)
    assert metrics["ttsr"]["essim"] > metrics["bicubic"]["essim"]
    assert metrics["ttsr"]["psnr"] > metrics["bicubic"]["psnr"]
    assert doc["panels"] == ["LR (nearest)", "bicubic", "TTSR", "HR"]
    sr, meta = io.read_image(tmp_path / "demo" / "ttsr.tif")
    hr, hmeta = io.read_image(tmp_path / "demo" / "hr.tif")
    assert sr.shape == hr.shape and meta["pixel_size"] == pytest.approx(hmeta["pixel_size"])
    # the optical part: both bundled denoisers on the NIST micrograph, its grains measured with ASTM numbers
    opt = doc["optical"]
    assert opt["rule"] == "etched" and set(opt["grains"]) == {"input", "default model", "etched-steel model"}
    assert all(8 < g["astm_g"] < 12 for g in opt["grains"].values())  # fine-grained steel, near NIST's 9.87
    den, dmeta = io.read_image(tmp_path / "demo" / "optical_denoised.tif")
    assert den.shape == (600, 800) and dmeta["pixel_size"] == pytest.approx(225.2)
    assert "ASTM G" in out and "etched-steel model" in out and "(600×800 px, 0.2252 µm/px)" in out


def test_demo_without_model_and_scale_mismatch(tmp_path, capsys):
    assert cli.main(["demo", "--no-model", "--out", str(tmp_path / "d")]) == 0
    assert not (tmp_path / "d" / "ttsr.tif").exists()
    assert cli.main(["demo", "--scale", "2", "--out", str(tmp_path / "e")]) != 0
    assert "use --scale 4" in capsys.readouterr().err


def test_console_script_entry_point():
    r = subprocess.run([sys.executable, "-m", "matrestore.cli", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and "matrestore" in r.stdout
