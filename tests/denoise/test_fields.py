"""Field-by-field grain size (matrestore.denoise.fields): the field grid, ASTM E112 statistics, lazy sources."""

import math

import numpy as np
import pytest

from matrestore import InputError
from matrestore.denoise import measure_grains, phase_field, synthesize
from matrestore.denoise.fields import field_grid, field_statistics, fields_csv, measure_fields, measure_fields_iter
from matrestore.progress import Kind, drive

NONE = {"scratches": (0, 0), "stains": (0, 0), "pits_per_mpx": (0, 0)}


@pytest.fixture(scope="module")
def etched():
    """A 256×384 bright-field etched micrograph (two fields of 128 px up, three across)."""
    s = phase_field((256, 384), 150, 120, seed=11)
    p = synthesize(s, None, seed=12, boundary_width=2, grey_range=(0.82, 0.92), min_contrast=0.0, artefacts=NONE)
    return p.noisy.astype(np.float32)


def test_field_grid_is_centred_and_samples_evenly():
    f = field_grid((1000, 2100), 256)
    assert len(f) == 3 * 8
    assert f[0] == ((1000 - 768) // 2, (1000 - 768) // 2 + 256, (2100 - 2048) // 2, (2100 - 2048) // 2 + 256)
    assert all(y1 - y0 == 256 and x1 - x0 == 256 for y0, y1, x0, x1 in f)
    some = field_grid((1000, 2100), 256, max_fields=7)
    assert len(some) == 7 and len(set(some)) == 7 and set(some) <= set(f)
    rows = {y0 for y0, *_ in some}
    assert len(rows) >= 2  # spread over the image, not the first seven of the raster
    assert field_grid((100, 90), 1024) == [(5, 95, 0, 90)]  # the shorter side when the image is smaller
    with pytest.raises(InputError, match="too small"):
        field_grid((40, 500), 1024)
    with pytest.raises(InputError, match="max_fields"):
        field_grid((1000, 1000), 256, max_fields=0)


def test_statistics_are_astm_e112s():
    st = field_statistics([10.0, 12.0, 11.0, 9.0, None])
    assert st["n"] == 4 and st["mean"] == pytest.approx(10.5)
    s = float(np.std([10, 12, 11, 9], ddof=1))
    assert st["std"] == pytest.approx(s)
    assert st["ci95"] == pytest.approx(3.182446 * s / 2.0, rel=1e-5)  # t(0.975, 3)
    assert st["ra_percent"] == pytest.approx(100 * st["ci95"] / 10.5)
    one = field_statistics([5.0])
    assert one["mean"] == 5.0 and one["ci95"] is None


def test_each_field_is_measured_as_measure_grains_would(etched):
    res = measure_fields(etched, 128, pixel_size=0.5, unit="um")
    rows, s = res["fields"], res["summary"]
    assert len(rows) == 6 and s["measured"] == 6 and s["method"] == "etched" and s["stage"] == "input"
    for r in rows:
        y0, x0, n = r["y0"], r["x0"], r["size"]
        one = measure_grains(etched[y0:y0 + n, x0:x0 + n], 0.5, "um", method="etched")["summary"]
        assert (r["count"], r["inside"], r["border"]) == (one["count"], one["inside"], one["border"])
        assert r["astm_g"] == pytest.approx(one["astm_g"])
        area_mm2 = (n * 0.5e-3) ** 2
        assert r["n_per_area"] == pytest.approx((one["inside"] + 0.5 * one["border"]) / area_mm2)
    na = np.mean([r["n_per_area"] for r in rows])
    assert s["grains_per_area"]["mean"] == pytest.approx(na)
    assert s["astm_g"] == pytest.approx(3.321928 * math.log10(na) - 2.954)
    assert s["grains_per_area"]["ra_percent"] > 0 and s["astm_g_intercept"] is not None
    # the whole image measured at once gives nearly the same G (fields are a sample of the same structure)
    whole = measure_grains(etched, 0.5, "um", method="etched")["summary"]["astm_g"]
    assert abs(s["astm_g"] - whole) < 0.3
    text = fields_csv(rows)
    assert text.splitlines()[0].startswith("field,y0,x0,size,count") and len(text.splitlines()) == 7


def test_lazy_sources_give_the_same_fields(etched, tmp_path):
    import dask.array as da
    import zarr

    ref = measure_fields(etched, 128, pixel_size=0.5, unit="um")["fields"]
    z = zarr.open(str(tmp_path / "img.zarr"), mode="w", shape=etched.shape, chunks=(100, 100), dtype=etched.dtype)
    z[:] = etched
    for src in (da.from_array(etched, chunks=(64, 64)), z):
        got = measure_fields(src, 128, pixel_size=0.5, unit="um")["fields"]
        assert [r["count"] for r in got] == [r["count"] for r in ref]


def test_the_denoised_image_is_measured_with_a_model(etched, tiny_model):
    from matrestore.denoise.lazy import denoise_lazy

    recs = []
    res = drive(measure_fields_iter(etched, 128, model=tiny_model, method="levels", max_fields=2), recs.append)
    assert res["summary"]["stage"] == "denoised" and len(res["fields"]) == 2
    # each field is the lazily denoised image's pixels there (image-wide normalisation and look-up)
    lazy = np.asarray(denoise_lazy(etched, tiny_model))
    r = res["fields"][0]
    crop = lazy[r["y0"]:r["y0"] + 128, r["x0"]:r["x0"] + 128]
    assert r["count"] == measure_grains(crop, method="levels")["summary"]["count"]
    assert any(rec["kind"] == Kind.STEP for rec in recs) and recs[-1]["kind"] == Kind.DONE


def test_cancel_blank_fields_and_bad_input(etched):
    recs = []
    out = drive(measure_fields_iter(etched, 128, cancel=lambda: True), recs.append)
    assert out is None and recs[-1]["kind"] == Kind.STOPPED
    img = etched.copy()
    img[:128, :128] = 0.5  # a blank field (a mosaic's empty corner) is said in its row and not counted
    res = measure_fields(img, 128, method="etched")
    assert res["fields"][0]["error"] and "constant" in res["fields"][0]["error"]
    assert res["summary"]["measured"] == 5 and res["summary"]["astm_g"] is None  # no pixel size: no G
    with pytest.raises(InputError, match="together"):
        measure_fields(etched, 128, pixel_size=0.5)
    with pytest.raises(InputError, match="method"):
        measure_fields(etched, 128, method="magic")
    before = etched.copy()
    measure_fields(etched, 128)
    np.testing.assert_array_equal(etched, before)  # the input is not changed


def test_cli_fields_of_a_zarr_store_with_its_pixel_size(etched, tmp_path, capsys, tiny_model):
    import csv

    import dask.array as da

    from matrestore import bigimage, ngff
    from matrestore.bigimage import SmoothUpKernel
    from matrestore.cli import main
    from matrestore.denoise.modelio import save_model

    store = bigimage.store(da.from_array(etched), SmoothUpKernel(scale=1, grid=8, halo=1), tmp_path / "steel.zarr",
                           chunk=64, pixel_size_nm=500.0)
    level0 = np.asarray(ngff.read_store(store)["levels"][0])
    model = save_model(tiny_model, tmp_path / "tiny.safetensors")
    assert main(["denoise", "grains", str(store), "--fields", "128", "--json", str(tmp_path / "f.json"),
                 "--denoise", "--model", str(model), "--max-fields", "3"]) == 0
    out = capsys.readouterr().out
    assert "(input): 3 of 3 fields of 128 px" in out and "(denoised)" in out and "relative accuracy" in out
    assert "ASTM E112 G" in out  # the store's pixel size (500 nm) was used
    rows = list(csv.DictReader(open(tmp_path / "steel_denoised_fields.csv")))
    assert len(rows) == 3 and rows[0]["field"] == "0"
    import json

    doc = json.loads((tmp_path / "f.json").read_text())
    ref = measure_fields(level0, 128, pixel_size=500.0, unit="nm", max_fields=3)["summary"]
    assert doc["results"]["input"]["summary"]["astm_g"] == pytest.approx(ref["astm_g"])
    assert set(doc["results"]) == {"input", "denoised"}
    # label images are not made field by field: refused before any work
    assert main(["denoise", "grains", str(store), "--fields", "128", "--labels", str(tmp_path / "l.tif")]) == 2
    assert not (tmp_path / "l.tif").exists()


def test_mean_grain_area_is_jeffries(etched):
    s = measure_fields(etched, 128, pixel_size=0.5, unit="um")["summary"]
    na = s["grains_per_area"]["mean"]  # per mm²
    assert s["mean_area"] == pytest.approx(1e6 / na)  # µm²
    assert s["mean_area_px"] == pytest.approx(s["mean_area"] / 0.25)
    nopx = measure_fields(etched, 128)["summary"]
    assert nopx["mean_area"] is None and nopx["mean_area_px"] == pytest.approx(s["mean_area_px"])


def test_cli_measures_a_large_image_field_by_field(etched, tmp_path, capsys, monkeypatch):
    from matrestore.cli import main
    from matrestore.denoise import grains
    from matrestore.io import write_tiff

    src = tmp_path / "big.tif"
    write_tiff(src, (etched * 255).astype(np.uint8))
    monkeypatch.setattr(grains, "WHOLE_MAX_PX", 50_000)  # 98 304 px is "large" here
    assert main(["denoise", "grains", str(src), "--pixel-size", "0.5", "--unit", "um"]) == 0
    out = capsys.readouterr().out
    assert "measured field by field" in out and (tmp_path / "big_fields.csv").exists()
    assert not (tmp_path / "big_grains.csv").exists()
    # asked for labels: segmented whole as before
    assert main(["denoise", "grains", str(src), "--pixel-size", "0.5", "--unit", "um", "--labels",
                 str(tmp_path / "l.tif")]) == 0
    assert (tmp_path / "big_grains.csv").exists() and (tmp_path / "l.tif").exists()
