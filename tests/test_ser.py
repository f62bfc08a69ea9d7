import json

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import data

from matrestore import ser
from matrestore._validate import InputError


def test_time_ratio_eq10():
    assert ser.time_ratio(0.0) == pytest.approx(1 / 16)
    assert ser.time_ratio(0.1, scale=4) == pytest.approx(1 / 16 + 0.1)
    assert ser.time_ratio(0.1, scale=2) == pytest.approx(0.25 + 0.1)
    # LR scanned with twice the dwell time per pixel
    assert ser.time_ratio(0.1, 4, dwell_lr=200, dwell_hr=100) == pytest.approx(2 / 16 + 0.1)
    assert ser.break_even_fraction(4) == pytest.approx(15 / 16)
    with pytest.raises(InputError):
        ser.time_ratio(1.5)
    with pytest.raises(InputError):
        ser.time_ratio(0.1, dwell_lr=1)


def test_scan_times_minutes():
    t = ser.scan_times((1024, 1024), 0.1, scale=4, dwell_lr_us=100, dwell_hr_us=100)
    assert t["t_lr_min"] == pytest.approx(1024**2 * 100e-6 / 60)  # 105 s, as in the issue
    assert t["t_hr_min"] == pytest.approx(16 * t["t_lr_min"])
    assert t["ratio"] == pytest.approx(ser.time_ratio(0.1, 4))


def test_area_fraction_union():
    rois = [(0, 0, 10, 10), (5, 5, 15, 15), (90, 90, 200, 200)]
    # 100 + 100 - 25 overlap + 10x10 clipped at the corner
    assert ser.area_fraction(rois, (100, 100)) == pytest.approx((175 + 100) / 10000)


def test_propose_rois_finds_blobs_and_respects_min_size():
    score = np.zeros((200, 200))
    score[40:70, 50:90] = 1.0  # big region
    score[150:153, 150:153] = 1.0  # too small
    rois = ser.propose_rois(score, threshold=0.5, min_size=10, margin=5, smooth=0)
    assert rois == [(35, 45, 75, 95)]


def test_propose_rois_dark_voids_and_merge():
    img = np.full((100, 100), 200.0)
    img[20:40, 20:40] = 10
    img[38:60, 38:60] = 10  # touches the first: merged
    rois = ser.propose_rois(img, threshold=100, mode="low", min_size=5, margin=0, smooth=0)
    assert rois == [(20, 20, 60, 60)]


def test_tta_uncertainty_zero_for_equivariant_enhance():
    lr = data.camera()[::8, ::8].astype(float)
    mean, std = ser.tta_uncertainty(lr, lambda a: np.kron(a, np.ones((2, 2))))
    assert mean.shape == (128, 128)
    assert std.max() < 1e-9
    # a non-equivariant "network" (shift right) gives spread where the image changes
    mean, std = ser.tta_uncertainty(lr, lambda a: ndi.shift(a, (0, 1), order=0))
    assert std.max() > 1


def test_records_and_export(tmp_path):
    recs = ser.rois_to_records([(10, 20, 30, 60)], scale=(50.0, 50.0), translate=(0.0, 0.0), unit="nm",
                               stage_origin_um=(1000.0, 2000.0))
    r = recs[0]
    assert r["width_px"] == 40 and r["height_px"] == 20
    assert r["width_um"] == pytest.approx(2.0) and r["height_um"] == pytest.approx(1.0)
    assert r["x0_um"] == pytest.approx((20 - 0.5) * 0.05)
    assert r["stage_x_um"] == pytest.approx(1000 + r["x0_um"] + 1.0)
    ser.write_rois_csv(tmp_path / "r.csv", recs)
    ser.write_rois_json(tmp_path / "r.json", recs, unit="um")
    assert (tmp_path / "r.csv").read_text().splitlines()[0].startswith("id,row0,col0")
    assert json.loads((tmp_path / "r.json").read_text())["rois"][0]["id"] == 1


def test_register_finds_offset():
    img = data.camera().astype(float)
    patch = img[100:164, 200:280] + np.random.default_rng(0).normal(0, 5, (64, 80))
    reg = ser.register(img, patch)
    assert (reg.row, reg.col) == (100, 200)
    reg2 = ser.register(img, patch, search=6, guess=(97, 203))
    assert (reg2.row, reg2.col) == (100, 200) and reg2.ssim > 0.5
    with pytest.raises(InputError, match="larger"):
        ser.register(img[:50, :50], patch)


def test_cli_propose_export_register(tmp_path, capsys):
    import tifffile

    from matrestore import cli

    img = np.full((120, 160), 200, dtype=np.uint8)
    img[30:60, 40:80] = 5  # a dark void
    path = tmp_path / "field.tif"
    tifffile.imwrite(path, img)
    assert cli.main(["ser", "propose", str(path), "--mode", "low", "--percentile", "90", "--margin", "4",
                     "--min-size", "5", "--out", str(tmp_path / "rois")]) == 0
    doc = json.loads((tmp_path / "rois.json").read_text())
    r = doc["rois"][0]
    assert r["row0"] <= 30 and r["row1"] >= 60 and r["col0"] <= 40 and r["col1"] >= 80
    assert cli.main(["ser", "export", str(tmp_path / "rois.json"), "--pixel-size", "10", "--unit", "nm",
                     "--out", str(tmp_path / "r.csv")]) == 0
    assert "width_um" in (tmp_path / "r.csv").read_text().splitlines()[0]
    cam = data.camera()
    tifffile.imwrite(tmp_path / "cam.tif", cam)
    tifffile.imwrite(tmp_path / "patch.tif", cam[50:114, 60:124])
    capsys.readouterr()
    assert cli.main(["ser", "register", str(tmp_path / "cam.tif"), str(tmp_path / "patch.tif")]) == 0
    reg = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (reg["row"], reg["col"]) == (50, 60)


def test_corners_roundtrip():
    rois = [(10, 20, 30, 60), (0, 0, 5, 5)]
    corners = ser.rois_to_corners(rois)
    assert ser.corners_to_rois(corners) == rois
    # a user-drawn rectangle (4 vertices, slightly off-grid) beyond the image is clipped
    drawn = [np.array([[-3.2, 90.1], [-3.2, 130.4], [12.6, 130.4], [12.6, 90.1]])]
    assert ser.corners_to_rois(drawn, shape=(100, 120)) == [(0, 91, 13, 120)]


def test_area_fraction_matches_pixel_mask():
    rng = np.random.default_rng(0)
    for _ in range(100):
        rois = []
        for _ in range(int(rng.integers(1, 5))):
            r0, r1 = sorted(rng.integers(-5, 60, 2))
            c0, c1 = sorted(rng.integers(-5, 50, 2))
            rois.append((r0, c0, r1, c1))
        mask = np.zeros((50, 40), bool)
        for r0, c0, r1, c1 in rois:
            mask[max(r0, 0) : max(r1, 0), max(c0, 0) : max(c1, 0)] = True
        assert ser.area_fraction(rois, (50, 40)) == pytest.approx(mask.mean(), abs=1e-12)


def test_register_reports_its_confidence():
    img = data.camera().astype(np.float64)
    good = ser.register(img, img[100:164, 200:280])
    assert good.confident and good.correlation > 0.99
    noise = np.random.default_rng(1).normal(size=(64, 80))
    bad = ser.register(img, noise)
    assert not bad.confident and bad.correlation < ser.MIN_REGISTRATION_CORRELATION
    assert "low confidence" in bad.describe()
