"""Grain measurement (matrestore.denoise.grains): the two rules, the ASTM E112 numbers, the CLI, bad input."""

import csv
import math

import numpy as np
import pytest

from matrestore import InputError
from matrestore.denoise import measure_grains, phase_field, synthesize
from matrestore.denoise.grains import astm_grain_size, astm_intercept_size, choose_rule, grain_properties, mean_intercept

NONE = {"scratches": (0, 0), "stains": (0, 0), "pits_per_mpx": (0, 0)}


@pytest.fixture(scope="module")
def structure():
    return phase_field((192, 192), 60, 150, seed=4)


def test_astm_numbers_match_the_standard_table():
    # E112 table: G = 1 is 15.5 grains/mm² (planimetric); a mean intercept of 0.01 mm is G = 10
    assert astm_grain_size(15, 1, 1.0) == pytest.approx(1.0, abs=0.01)
    assert astm_intercept_size(0.01) == pytest.approx(10.0, abs=0.01)
    assert astm_grain_size(0, 0, 1.0) is None and astm_intercept_size(None) is None


def test_mean_intercept_counts_each_boundary_crossed_once():
    stripes = np.repeat(np.arange(10), 10)[None, :].repeat(100, 0) + 1  # 10 columns of grains, 10 px wide
    assert mean_intercept(stripes) == pytest.approx((100 * 99 * 2) / (9 * 100))
    jag = stripes.copy()
    jag[::2, 9] = 2  # a jagged boundary: 1-px runs along rows are not extra grains
    assert mean_intercept(jag) == pytest.approx(mean_intercept(stripes), rel=0.02)
    assert mean_intercept(np.ones((8, 8), int)) is None


def test_etched_grains_are_found_by_their_dark_boundaries(structure):
    true = int(structure.labels.max())
    p = synthesize(structure, None, seed=5, boundary_width=2, grey_range=(0.82, 0.92), min_contrast=0.0,
                   artefacts={"scratches": (0, 0), "stains": (0, 0)})  # bright-field look, with pits
    assert choose_rule(p.noisy)[0] == "etched"
    res = measure_grains(p.noisy, 0.25, "um")
    s = res["summary"]
    assert s["method"] == "etched" and abs(s["count"] - true) <= 0.1 * true
    assert res["labels"].shape == p.noisy.shape and res["labels"].min() >= 1  # every pixel in a grain
    assert s["astm_g"] is not None and s["astm_g_intercept"] is not None and abs(s["astm_g"] - s["astm_g_intercept"]) < 1.0
    # the levels rule counts the pits' texture as grains here; it is not what auto picks
    assert measure_grains(p.noisy, method="levels")["summary"]["count"] != s["count"]


def test_grey_level_grains_use_the_evaluation_rule(structure):
    true = int(structure.labels.max())
    p = synthesize(structure, None, seed=6, boundary_width=0, artefacts=NONE)
    res = measure_grains(p.clean)
    assert res["summary"]["method"] == "levels" and abs(res["summary"]["count"] - true) <= 0.1 * true
    from matrestore.denoise.scoring import segment

    np.testing.assert_array_equal(res["labels"], segment(p.clean))  # exactly the evaluation's segmentation


def test_sizes_and_units(structure):
    lab = structure.labels
    px = measure_grains(None, labels=lab)
    um = measure_grains(None, 0.5, "um", labels=lab)
    nm = measure_grains(None, 500.0, "nm", labels=lab)
    assert px["summary"]["unit"] == "px" and px["summary"]["astm_g"] is None and px["summary"]["mean_area"] is None
    assert um["summary"]["mean_area"] == pytest.approx(px["summary"]["mean_area_px"] * 0.25)
    assert um["summary"]["mean_diameter"] == pytest.approx(px["summary"]["mean_diameter"] * 0.5)
    assert um["summary"]["astm_g"] == pytest.approx(nm["summary"]["astm_g"])  # the same length, other unit
    rows = grain_properties(lab, 0.5, "um")
    assert len(rows) == int(lab.max()) and sum(r["area_px"] for r in rows) == lab.size
    r = rows[0]
    assert r["area"] == pytest.approx(r["area_px"] * 0.25) and r["diameter"] == pytest.approx(2 * math.sqrt(r["area"] / math.pi))
    s = um["summary"]
    assert s["count"] == s["inside"] + s["border"] and s["border"] > 0
    n_a = (s["inside"] + 0.5 * s["border"]) / (lab.size * (0.5e-3) ** 2)
    assert s["astm_g"] == pytest.approx(3.321928 * math.log10(n_a) - 2.954)


@pytest.mark.parametrize("case", ["nan", "constant", "tiny", "unit", "pixel", "method", "labels", "rgb"])
def test_bad_input_is_named(case, structure):
    img = structure.labels.astype(np.float32)
    kw = {}
    if case == "nan":
        img[3, 3] = np.nan
    elif case == "constant":
        img = np.ones((32, 32))
    elif case == "tiny":
        img = img[:5, :5]
    elif case == "unit":
        kw = dict(pixel_size=1.0, unit="furlong")
    elif case == "pixel":
        kw = dict(pixel_size=-1.0, unit="um")
    elif case == "method":
        kw = dict(method="magic")
    elif case == "labels":
        kw = dict(labels=img)  # float labels
    elif case == "rgb":
        img = np.zeros((16, 16, 5))
    before = img.copy()
    with pytest.raises(InputError) as e:
        measure_grains(img, **kw)
    assert {"nan": "NaN", "constant": "constant", "tiny": "too small", "unit": "furlong", "pixel": "positive",
            "method": "magic", "labels": "integer", "rgb": "image"}[case] in str(e.value)
    np.testing.assert_array_equal(np.nan_to_num(img), np.nan_to_num(before))


def test_cli_writes_the_grain_table_and_labels(tmp_path, structure, capsys):
    from matrestore.cli import main
    from matrestore.io import write_tiff

    p = synthesize(structure, None, seed=5, boundary_width=2, grey_range=(0.82, 0.92), min_contrast=0.0, artefacts=NONE)
    src = tmp_path / "steel.tif"
    write_tiff(src, (p.clean * 255).astype(np.uint8))
    assert main(["denoise", "grains", str(src), "--pixel-size", "0.25", "--unit", "um", "--labels", str(tmp_path / "g.tif"),
                 "--json", str(tmp_path / "g.json")]) == 0
    out = capsys.readouterr().out
    assert "ASTM E112 G" in out and "(input)" in out
    rows = list(csv.DictReader(open(tmp_path / "steel_grains.csv")))
    assert len(rows) > 40 and set(rows[0]) == {"label", "area_px", "area", "diameter", "centroid_y", "centroid_x", "border"}
    from matrestore.io import read_image

    lab, meta = read_image(tmp_path / "g.tif")
    assert lab.max() == len(rows) and meta["pixel_size"] == pytest.approx(250.0)
    # a pixel size without its unit is refused, and nothing is written
    assert main(["denoise", "grains", str(src), "--pixel-size", "0.25", "--csv", str(tmp_path / "x.csv")]) == 2
    assert not (tmp_path / "x.csv").exists()


def test_the_auto_rule_does_not_depend_on_the_image_size(structure, nist_path):
    """A network of etched boundaries is found in a large image as in a small one (the line-like share of the
    dark phase, not its largest component, which shrinks as an image grows)."""
    p = synthesize(structure, None, seed=5, boundary_width=2, grey_range=(0.82, 0.92), min_contrast=0.0,
                   artefacts={"scratches": (0, 0), "stains": (0, 0)})
    rule, d = choose_rule(p.noisy)
    assert rule == "etched" and d["linear"] >= 0.9
    levels = synthesize(structure, None, seed=6, boundary_width=0, artefacts=NONE).clean
    assert choose_rule(levels)[0] == "levels" and choose_rule(levels)[1]["linear"] < 0.1
    from matrestore.io import read_image

    real, _ = read_image(nist_path)  # 600 × 800: its boundary network's largest component holds 43 % of it...
    rows = np.concatenate([real, real[::-1]], 0)
    field = np.concatenate([rows, rows[:, ::-1]], 1)[100:1124, 100:1124].astype(np.float64)
    for img in (real.astype(np.float64), field):  # ...a 1024² field of a mosaic of it only 19 %
        rule, d = choose_rule(img)
        assert rule == "etched" and d["linear"] >= 0.85
