"""The bad-input matrix (docs/bad_input.md): every case gives one clear message (API: InputError; CLI: exit
code 2, one line on stderr, no traceback) or a documented correct result, and no input file changes."""

import hashlib
import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from skimage import data

from matrestore import cli, evaluation, io, metrics, ser
from matrestore._validate import InputError


# ------------------------------------------------------------------------------------------------ API
def _cam(dtype=np.float64):
    return data.camera()[:64, :64].astype(dtype)


API_CASES = {
    # metrics: never assume a range the data contradicts
    "psnr float 0-255 without data_range": (lambda: metrics.psnr(_cam(), _cam() + 1), "data_range"),
    "ssim float 0-255 without data_range": (lambda: metrics.ssim(_cam(), _cam() + 1), "data_range"),
    "psnr int32 without data_range": (lambda: metrics.psnr(_cam(np.int32), _cam(np.int32) + 1), "data_range"),
    "psnr negative data_range": (lambda: metrics.psnr(_cam(), _cam(), data_range=-1), "positive"),
    "psnr shapes differ": (lambda: metrics.psnr(_cam(), _cam()[:32]), "shape"),
    "psnr NaN": (lambda: metrics.psnr(np.full((16, 16), np.nan), np.zeros((16, 16)), data_range=1), "NaN"),
    "psnr RGB": (lambda: metrics.psnr(np.zeros((16, 16, 3)), np.zeros((16, 16, 3)), data_range=1), "RGB"),
    "psnr empty": (lambda: metrics.psnr(np.zeros((0, 0)), np.zeros((0, 0)), data_range=1), "empty"),
    "psnr 1x1": (lambda: metrics.psnr(np.zeros((1, 1)), np.zeros((1, 1)), data_range=1), "small"),
    "compare_images without candidates": (lambda: evaluation.compare_images(_cam(), {}), "candidate"),
    "evaluate_baselines scale 0": (lambda: evaluation.evaluate_baselines(_cam(), scale=0), "scale"),
    "evaluate_baselines scale -2": (lambda: evaluation.evaluate_baselines(_cam(), scale=-2), "scale"),
    # scan-enhance-rescan
    "propose percentile 150": (lambda: ser.propose_rois(_cam(), percentile=150), "percentile"),
    "propose min_size -3": (lambda: ser.propose_rois(_cam(), min_size=-3), "min_size"),
    "propose margin -1": (lambda: ser.propose_rois(_cam(), margin=-1), "margin"),
    "propose max_rois 0": (lambda: ser.propose_rois(_cam(), max_rois=0), "max_rois"),
    "records pixel size 0": (lambda: ser.rois_to_records([(0, 0, 4, 4)], scale=(0.0, 0.0), unit="nm"), "pixel size"),
    "records pixel size -5": (lambda: ser.rois_to_records([(0, 0, 4, 4)], scale=(-5.0, -5.0), unit="nm"), "pixel size"),
    "area of an inverted box": (lambda: ser.area_fraction([(40, 40, 10, 10)], (64, 64)), "inverted"),
    "records of an inverted box": (lambda: ser.rois_to_records([(40, 40, 10, 10)]), "inverted"),
    "register NaN rescan": (lambda: ser.register(_cam(), np.full((8, 8), np.nan)), "NaN"),
    "register rescan larger than image": (lambda: ser.register(_cam()[:16, :16], _cam()), "larger"),
}


@pytest.mark.parametrize("case", list(API_CASES))
def test_api_bad_input_is_a_clear_error(case):
    fn, needle = API_CASES[case]
    with pytest.raises(InputError) as exc:
        fn()
    assert needle.lower() in str(exc.value).lower(), str(exc.value)


def test_api_documented_results_for_edge_cases():
    # float data in [0, 1] and uint8/uint16 use their documented ranges; integer data in float64 needs data_range
    a = _cam() / 255.0
    assert metrics.psnr(a, a + 0.01) == pytest.approx(40.0, abs=1e-6)
    u8 = _cam(np.uint8)
    assert np.isfinite(metrics.psnr(u8, u8 // 2 * 2))
    assert metrics.psnr(_cam(), _cam() + 1, data_range=255) == pytest.approx(20 * np.log10(255), abs=1e-9)
    # a region of interest with no area adds nothing; an empty list covers nothing
    assert ser.area_fraction([], (64, 64)) == 0.0


# ------------------------------------------------------------------------------------------------ SR engine
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import torch

    from matrestore import sr

    torch.set_num_threads(min(torch.get_num_threads(), 2))
    m = sr.build_model("tiny", seed=0)
    sr.measure_receptive_radius(m)
    return m.eval()


SR_CASES = {
    "tile -5": ({"tile": -5}, "tile"),
    "tile -1": ({"tile": -1}, "tile"),
    "tile 1": ({"tile": 1}, "tile"),
    "batch -1": ({"batch": -1}, "batch"),
    "top_k -3": ({"top_k": -3}, "top_k"),
    "mode unknown": ({"mode": "best"}, "mode"),
}


@pytest.mark.parametrize("case", list(SR_CASES))
def test_sr_enhance_bad_options(tiny, case):
    from matrestore import sr

    kw, needle = SR_CASES[case]
    with pytest.raises(InputError) as exc:
        sr.enhance(_cam(np.float32)[:24, :24], [_cam(np.float32)], tiny, **kw)
    assert needle in str(exc.value)


@pytest.mark.parametrize("what", ["lr", "references"])
def test_sr_enhance_warns_on_constant_images(tiny, what):
    from matrestore import sr

    lr = np.full((24, 24), 7.0, np.float32) if what == "lr" else _cam(np.float32)[:24, :24]
    refs = [np.full((64, 64), 3.0, np.float32)] if what == "references" else [_cam(np.float32)]
    with pytest.warns(UserWarning, match="constant"):
        out = sr.enhance(lr, refs, tiny)
    assert out.shape == (96, 96) and np.all(np.isfinite(out))


def test_sr_enhance_bad_images(tiny):
    from matrestore import sr

    for bad, needle in [(np.zeros((24, 24, 3)), "RGB"), (np.full((24, 24), np.nan), "NaN"), (np.zeros((0, 5)), "empty"),
                        (np.zeros((24, 24), complex), "data type")]:
        with pytest.raises(InputError, match=needle):
            sr.enhance(bad, [_cam(np.float32)], tiny)


# ------------------------------------------------------------------------------------------------ CLI
def _hashes(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny):
    from matrestore import sr

    d = tmp_path_factory.mktemp("bad")
    cam = data.camera()
    io.write_tiff(d / "hr.tif", cam[:128, :128], pixel_size_nm=10.0)
    io.write_tiff(d / "hr2.tif", cam[200:328, 200:328], pixel_size_nm=10.0)
    io.write_tiff(d / "lr.tif", cam[:128:4, :128:4], pixel_size_nm=40.0)
    tifffile.imwrite(d / "const.tif", np.full((64, 64), 17, np.uint8))
    tifffile.imwrite(d / "multi.tif", np.stack([cam[:64, :64], cam[64:128, :64], cam[:64, 64:128]]),
                     photometric="minisblack")
    tifffile.imwrite(d / "rgb.tif", np.stack([cam[:64, :64], cam[:64, :64] // 2, cam[:64, :64] // 3], -1))
    tifffile.imwrite(d / "nan.tif", np.full((64, 64), np.nan, np.float32))
    tifffile.imwrite(d / "tiny.tif", np.zeros((1, 1), np.uint8))
    (d / "text.tif").write_text("not an image")
    (d / "random.tif").write_bytes(np.random.default_rng(0).bytes(4096))
    (d / "truncated.tif").write_bytes((d / "hr.tif").read_bytes()[:2000])
    (d / "notes.json").write_text("{not json")
    (d / "other.json").write_text(json.dumps({"something": 1}))
    (d / "keep.txt").write_text("a user's file")
    (d / "afile").write_text("a file, not a folder")
    refs = d / "refs"
    refs.mkdir()
    io.write_tiff(refs / "ref.tif", cam[300:428, 300:428], pixel_size_nm=10.0)
    sr.save_model(tiny, d / "tiny.safetensors")
    (d / "empty.safetensors").write_bytes(b"")
    (d / "truncated.safetensors").write_bytes((d / "tiny.safetensors").read_bytes()[:300])
    (d / "pickle.safetensors").write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    io.write_tiff(d / "hr_left.tif", cam[:128, :64], pixel_size_nm=10.0)
    return d


def _run(argv, capsys):
    rc = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


D = "{d}"  # replaced by the fixture folder
M = ["--model", f"{D}/tiny.safetensors"]
CLI_CASES = {
    # data loss: an output that is an input, or a file matrestore did not write
    "compare --json onto the ground truth": (["compare", "--hr", f"{D}/hr.tif", "--json", f"{D}/hr.tif"], "inputs"),
    "compare --json onto the LR input": (["compare", "--hr", f"{D}/hr.tif", "--lr", f"{D}/lr.tif", "--json",
                                          f"{D}/lr.tif"], "inputs"),
    "compare --json onto a user's file": (["compare", "--hr", f"{D}/hr.tif", "--json", f"{D}/keep.txt"], "--overwrite"),
    "compare --json into a missing folder under a file": (["compare", "--hr", f"{D}/hr.tif", "--json",
                                                           f"{D}/afile/x.json"], "not a folder"),
    "compare --json into an unwritable place": (["compare", "--hr", f"{D}/hr.tif", "--json", "/proc/none/x.json"],
                                                "cannot"),
    "compare --out-dir is a file": (["compare", "--hr", f"{D}/hr.tif", "--out-dir", f"{D}/afile"], "existing file"),
    "sr evaluate --json onto the ground truth": (["sr", "evaluate", "--hr", f"{D}/hr.tif", "--refs", f"{D}/refs", *M,
                                                  "--json", f"{D}/hr.tif"], "inputs"),
    "sr evaluate --json onto a reference": (["sr", "evaluate", "--hr", f"{D}/hr.tif", "--refs", f"{D}/refs", *M,
                                             "--json", f"{D}/refs/ref.tif"], "inputs"),
    "sr enhance --out onto the input": (["sr", "enhance", f"{D}/lr.tif", "--refs", f"{D}/refs", *M, "--out",
                                         f"{D}/lr.tif"], "inputs"),
    "sr enhance --out onto the model": (["sr", "enhance", f"{D}/lr.tif", "--refs", f"{D}/refs", *M, "--out",
                                         f"{D}/tiny.safetensors"], "inputs"),
    "ser propose --out over a user's file": (["ser", "propose", f"{D}/hr.tif", "--out", f"{D}/notes"], "--overwrite"),
    "ser export --out onto the ROI file": (["ser", "export", f"{D}/other.json", "--pixel-size", "5", "--out",
                                            f"{D}/other.json"], "inputs"),
    # bad images
    "compare constant ground truth": (["compare", "--hr", f"{D}/const.tif"], "constant"),
    "compare multi-page TIFF": (["compare", "--hr", f"{D}/multi.tif"], "pages"),
    "compare RGB TIFF": (["compare", "--hr", f"{D}/rgb.tif"], "RGB"),
    "compare NaN TIFF": (["compare", "--hr", f"{D}/nan.tif"], "NaN"),
    "compare 1x1 TIFF": (["compare", "--hr", f"{D}/tiny.tif"], "small"),
    "compare text posing as TIFF": (["compare", "--hr", f"{D}/text.tif"], "not"),
    "compare random bytes": (["compare", "--hr", f"{D}/random.tif"], "not"),
    "compare truncated TIFF": (["compare", "--hr", f"{D}/truncated.tif"], "truncated"),
    "compare missing file": (["compare", "--hr", f"{D}/missing.tif"], "not found"),
    "compare a folder": (["compare", "--hr", f"{D}/refs"], "folder"),
    "compare mismatched LR": (["compare", "--hr", f"{D}/hr.tif", "--lr", f"{D}/hr2.tif"], "does not match"),
    "compare scale 0": (["compare", "--hr", f"{D}/hr.tif", "--scale", "0"], "scale"),
    "sr evaluate constant ground truth": (["sr", "evaluate", "--hr", f"{D}/const.tif", "--refs", f"{D}/refs", *M],
                                          "constant"),
    "sr enhance multi-page TIFF": (["sr", "enhance", f"{D}/multi.tif", "--refs", f"{D}/refs", *M], "pages"),
    "sr enhance batch -1": (["sr", "enhance", f"{D}/lr.tif", "--refs", f"{D}/refs", *M, "--batch", "-1"], "batch"),
    "sr enhance tile 1": (["sr", "enhance", f"{D}/lr.tif", "--refs", f"{D}/refs", *M, "--tile", "1"], "tile"),
    "sr train --out is a file": (["sr", "train", "--hr", f"{D}/hr.tif", "--out", f"{D}/afile", "--preset", "tiny"],
                                 "existing file"),
    "sr enhance top-k -3": (["sr", "enhance", f"{D}/lr.tif", "--refs", f"{D}/refs", *M, "--top-k", "-3"], "top_k"),
    # model files
    "model zero bytes": (["sr", "enhance", f"{D}/lr.tif", "--refs", f"{D}/refs", "--model", f"{D}/empty.safetensors"],
                         "not a readable"),
    "model truncated": (["sr", "enhance", f"{D}/lr.tif", "--refs", f"{D}/refs", "--model",
                         f"{D}/truncated.safetensors"], "not a readable"),
    "model is a pickle": (["sr", "enhance", f"{D}/lr.tif", "--refs", f"{D}/refs", "--model",
                           f"{D}/pickle.safetensors"], "not a readable"),
    "model missing": (["sr", "enhance", f"{D}/lr.tif", "--refs", f"{D}/refs", "--model", f"{D}/none.safetensors"],
                      "not found"),
    # scan-enhance-rescan
    "ser propose percentile 150": (["ser", "propose", f"{D}/hr.tif", "--percentile", "150", "--out", f"{D}/o/p"],
                                   "percentile"),
    "ser propose min-size -3": (["ser", "propose", f"{D}/hr.tif", "--min-size", "-3", "--out", f"{D}/o/p"],
                                "min_size"),
    "ser export missing file": (["ser", "export", f"{D}/none.json", "--pixel-size", "5", "--out", f"{D}/o/x.csv"],
                                "not found"),
    "ser export non-JSON file": (["ser", "export", f"{D}/notes.json", "--pixel-size", "5", "--out", f"{D}/o/x.csv"],
                                 "not a JSON"),
    "ser export JSON without ROIs": (["ser", "export", f"{D}/other.json", "--pixel-size", "5", "--out",
                                      f"{D}/o/x.csv"], "ROI file"),
    "ser export pixel size 0": (["ser", "export", f"{D}/rois.json", "--pixel-size", "0", "--out", f"{D}/o/x.csv"],
                                "pixel size"),
    "ser export pixel size -5": (["ser", "export", f"{D}/rois.json", "--pixel-size", "-5", "--out", f"{D}/o/x.csv"],
                                 "pixel size"),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_cli_bad_input_exits_2_with_one_line_and_changes_no_file(files, case, capsys):
    (files / "rois.json").write_text(json.dumps({"rois": [{"row0": 0, "col0": 0, "row1": 8, "col1": 8}]}))
    argv, needle = CLI_CASES[case]
    before = _hashes(files)
    rc, out, err = _run([a.replace(D, str(files)) for a in argv], capsys)
    assert rc == 2, (out, err)
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith(("model ", "matrestore: warning"))]
    assert len(lines) == 1 and lines[0].startswith("matrestore: error: "), err
    assert "Traceback" not in err
    assert needle.lower() in lines[0].lower(), lines[0]
    after = _hashes(files)
    assert {k: v for k, v in after.items() if k in before} == before  # no file changed
    assert not (set(after) - set(before)) - {"o"}, set(after) - set(before)  # and nothing half-written appeared


def test_overwrite_replaces_a_foreign_file_but_never_an_input(files, capsys):
    target = files / "mine.json"
    target.write_text("a user's notes")
    rc, _, err = _run(["compare", "--hr", files / "hr.tif", "--json", target], capsys)
    assert rc == 2 and target.read_text() == "a user's notes"
    rc, _, _ = _run(["compare", "--hr", files / "hr.tif", "--json", target, "--overwrite"], capsys)
    assert rc == 0 and json.loads(target.read_text())["written_by"] == "matrestore"
    # a rerun over its own output needs no --overwrite
    rc, _, _ = _run(["compare", "--hr", files / "hr.tif", "--json", target], capsys)
    assert rc == 0
    before = (files / "hr.tif").read_bytes()
    rc, _, err = _run(["compare", "--hr", files / "hr.tif", "--json", files / "hr.tif", "--overwrite"], capsys)
    assert rc == 2 and (files / "hr.tif").read_bytes() == before
    target.unlink()


def test_an_input_reached_through_a_link_is_still_an_input(files, capsys):
    link = files / "o" / "link.tif"
    link.parent.mkdir(exist_ok=True)
    if not link.exists():
        link.symlink_to(files / "hr.tif")
    before = (files / "hr.tif").read_bytes()
    rc, _, err = _run(["compare", "--hr", files / "hr.tif", "--json", link, "--overwrite"], capsys)
    assert rc == 2 and "inputs" in err and (files / "hr.tif").read_bytes() == before


def test_sr_evaluate_warns_when_the_ground_truth_is_among_the_references(files, capsys, tmp_path):
    refs = tmp_path / "refs"
    refs.mkdir()
    (refs / "leak.tif").write_bytes((files / "hr.tif").read_bytes())
    rc, out, err = _run(["sr", "evaluate", "--hr", files / "hr.tif", "--refs", refs, "--model",
                         files / "tiny.safetensors"], capsys)
    assert rc == 0
    assert "warning" in err and "ground truth" in err and "hr" in err


def test_sr_evaluate_warns_when_a_reference_overlaps_the_ground_truth(files, capsys, tmp_path):
    refs = tmp_path / "refs2"
    refs.mkdir()
    io.write_tiff(refs / "part.tif", data.camera()[32:96, 16:112], pixel_size_nm=10.0)  # a crop of hr.tif
    rc, out, err = _run(["sr", "evaluate", "--hr", files / "hr.tif", "--refs", refs, "--model",
                         files / "tiny.safetensors"], capsys)
    assert rc == 0 and "overlap" in err and "part" in err
    # a reference of the same sample that shows another field: no warning
    rc, out, err = _run(["sr", "evaluate", "--hr", files / "hr.tif", "--refs", files / "refs", "--model",
                         files / "tiny.safetensors"], capsys)
    assert rc == 0 and "overlap" not in err and "ground truth" not in err
