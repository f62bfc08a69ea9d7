"""Denoise: apply, out of core: multiscale / Zarr-backed inputs go to an OME-Zarr store shown as a
multiscale layer that fills in; the classical methods stay in memory."""

import numpy as np
import pytest
import zarr

from matrestore import ngff
from matrestore._widgets._store import default_store_path, needs_store
from matrestore._widgets._worker import ERROR_STYLE, State
from matrestore._widgets.denoise import DenoiseWidget, denoise_store_job
from matrestore.progress import drive
from _util import assert_unchanged, run_and_wait, snapshot


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    from matrestore.denoise import build_model, save_model

    return save_model(build_model("tiny", seed=0), tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture(scope="module")
def image():
    from skimage import data

    return np.ascontiguousarray(data.camera()[100:190, 150:251])  # uint8, 90 × 101


def out_blocks(w):
    from matrestore._layerdata import OUTPUT_KEY

    return w.viewer.layers["scan_denoised"].metadata[OUTPUT_KEY].get("blocks")


def test_a_multiscale_layer_is_denoised_into_a_store(make_napari_viewer, qtbot, image, tiny_path, tmp_path):
    from matrestore.denoise import denoise, load_model

    viewer = make_napari_viewer()
    inp = viewer.add_image([image, image[::2, ::2]], name="scan", multiscale=True, scale=(0.25, 0.25),
                           translate=(1.0, 2.0), contrast_limits=(0, 255), metadata={"pixel_size": 0.25})
    snap = [np.array(a) for a in inp.data]
    w = DenoiseWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.set_model(tiny_path)
    w.input_combo.setCurrentText("scan")
    assert w.input_combo.currentText() == "scan"  # multiscale layers are offered
    assert w.store_part.use.isChecked() and not w.store_part.use.isEnabled()  # and forced into a store
    assert run_and_wait(qtbot, w) == State.FAILED and "choose where to write" in w.status.text()
    w.store_part.path.setText(str(tmp_path / "out.zarr"))
    w.options.control("tile").setValue(100)
    w.options.control("histogram").setChecked(False)
    w.store_part.chunk.setValue(40)  # blocks of 44 px (the tiny model's tile grid): several blocks
    assert run_and_wait(qtbot, w, 60000) == State.DONE, w.status.text()
    assert out_blocks(w) == 4  # 90 × 101 px: rows 44|46, cols 44|57
    out = viewer.layers["scan_denoised"]
    data0 = out.data[0] if out.multiscale else out.data
    assert isinstance(data0, zarr.Array)  # read from the store, not a lazy graph
    assert tuple(out.contrast_limits) == (0, 255)
    assert tuple(out.scale) == pytest.approx((0.25, 0.25)) and tuple(out.translate) == pytest.approx((1.0, 2.0))
    expect = denoise(image, load_model(str(tiny_path)), tile=100, histogram=False)
    np.testing.assert_array_equal(np.asarray(data0[:]), expect)
    assert ngff.read_store(tmp_path / "out.zarr")["complete"] is True
    assert out.metadata["pixel_size"] == pytest.approx(0.25)
    for a, b in zip(inp.data, snap):
        np.testing.assert_array_equal(np.asarray(a), b)  # the input is untouched
    assert "written to out.zarr" in w.status.text()
    # a rerun resumes the complete store and updates the same layer
    assert run_and_wait(qtbot, w, 60000) == State.DONE
    assert [lyr.name for lyr in viewer.layers].count("scan_denoised") == 1


def test_store_refuses_classical_methods_and_the_input_store(make_napari_viewer, qtbot, image, tiny_path, tmp_path):
    viewer = make_napari_viewer()
    lazy = viewer.add_image(zarr.array(image), name="lazy", metadata={"source": str(tmp_path / "scan.tif")})
    assert "not in memory" in needs_store(lazy, 1)
    assert default_store_path(lazy, "denoised") == tmp_path / "scan_denoised.zarr"
    w = DenoiseWidget(viewer)
    w.set_model(tiny_path)
    w.input_combo.setCurrentText("lazy")
    assert w.store_part.use.isChecked() and w.store_part.path.text() == str(tmp_path / "scan_denoised.zarr")
    w.set_method("gaussian")
    assert run_and_wait(qtbot, w) == State.FAILED
    assert w.status.styleSheet() == ERROR_STYLE and "in memory only" in w.status.text()
    assert "not in memory" in w.status.text()  # says why a store is needed
    w.set_method("network", "gaussian")
    assert run_and_wait(qtbot, w) == State.FAILED and "compare with" in w.status.text()
    w.set_method("network", None)
    lazy.metadata = {**lazy.metadata, "store": str(tmp_path / "o.zarr")}
    snap = snapshot(lazy)
    w.store_part.path.setText(str(tmp_path / "o.zarr"))
    assert run_and_wait(qtbot, w) == State.FAILED and "input's own store" in w.status.text()
    assert_unchanged(lazy, snap)
    assert not (tmp_path / "o.zarr").exists() and len(viewer.layers) == 1


def test_store_job_reports_the_store_and_the_histogram_lookup(image, tiny_path, tmp_path):
    recs = []
    res = drive(denoise_store_job(image, tmp_path / "j.zarr", model=str(tiny_path)), recs.append)
    assert res["store"] == str(tmp_path / "j.zarr") and res["blocks"] == 1 and res["histogram"] == "sampled look-up"
    assert any(r.get("phase") == "store" for r in recs)
    lvl = ngff.read_store(tmp_path / "j.zarr")["levels"][0].compute()
    assert lvl.min() >= image.min() and lvl.max() <= image.max()  # matched to the input's grey levels


def test_a_store_run_measures_grains_field_by_field(make_napari_viewer, qtbot, tiny_path, tmp_path, monkeypatch):
    import csv
    import json

    from matrestore._widgets import denoise as dw
    from matrestore.denoise import phase_field, synthesize
    from matrestore.denoise.fields import measure_fields

    none = {"scratches": (0, 0), "stains": (0, 0), "pits_per_mpx": (0, 0)}
    s = phase_field((256, 384), 150, 120, seed=11)
    img = (synthesize(s, None, seed=12, boundary_width=2, grey_range=(0.82, 0.92), min_contrast=0.0,
                      artefacts=none).noisy * 255).astype(np.uint8)
    monkeypatch.setattr(dw, "STORE_FIELD_PX", 128)  # six fields of this small image
    viewer = make_napari_viewer()
    inp = viewer.add_image(zarr.array(img), name="steel", scale=(0.5, 0.5), units=("um", "um"))
    snap = snapshot(inp)
    w = DenoiseWidget(viewer)
    w.set_model(tiny_path)
    w.input_combo.setCurrentText("steel")
    w.store_part.path.setText(str(tmp_path / "steel_denoised.zarr"))
    assert w.grains_box.isChecked()
    assert run_and_wait(qtbot, w, 90000) == State.DONE, w.status.text()
    g = w.last_results["grains"]
    assert g["by_fields"] and set(g["rows"]) == {"input", "network"}
    fin = g["rows"]["input"]
    assert fin["fields"] == 6 and fin["measured"] == 6 and fin["astm_g"] is not None and fin["unit"] in ("um", "micrometer")
    ref = measure_fields(img, 128, pixel_size=0.5, unit="um", method=g["method"])["summary"]
    assert fin["astm_g"] == pytest.approx(ref["astm_g"])  # the engine's figure, not a widget's own
    assert w.grain_table.rowCount() == 2 and w.grain_table.item(0, 5).text() == f"{fin['astm_g']:.2f}"
    assert "field by field: 6 of 6 fields of 128 px" in w.grain_note.text()
    assert "in 6 fields" in w.status.text()
    assert "steel_grains" not in viewer.layers  # no outlines from a field-by-field run
    assert w.grain_save.isEnabled() and w.grain_save.text() == "Save per-field table…"
    path = w.save_grain_table(tmp_path / "fields.csv")
    rows = list(csv.DictReader(open(path)))
    assert len(rows) == 6 and rows[0]["astm_g"]
    assert json.loads(path.with_suffix(".json").read_text())["fields"]["input"][0]["field"] == 0
    assert_unchanged(inp, snap)
