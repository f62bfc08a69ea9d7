"""The "Denoise: apply" dock widget: built directly and opened as the Plugins menu opens it."""

import numpy as np
import pytest

from matrestore._layerdata import OUTPUT_KEY
from matrestore._widgets._worker import ERROR_STYLE, State
from matrestore._widgets.denoise import DenoiseWidget, denoise_job
from matrestore.denoise.apply import DenoiseOptions
from matrestore.progress import drive
from _util import assert_unchanged, snapshot
from _util import run_and_wait as _run_and_wait

TIMEOUT = 60000


def run_and_wait(qtbot, w):
    return _run_and_wait(qtbot, w, TIMEOUT)


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
def micrograph():
    """A 64×64 uint16 'micrograph': grains with a dark scratch."""
    from matrestore.denoise import synthesize

    pair = synthesize(None, None, shape=(64, 64), n_grains=12, steps=20, seed=2)
    return (pair.noisy * 20000 + 1000).clip(0, 65535).astype(np.uint16)


@pytest.fixture
def setup(make_napari_viewer, micrograph, tiny_path):
    viewer = make_napari_viewer()
    viewer.add_image(micrograph, name="steel", scale=(0.5, 0.5), translate=(3.0, 4.0), metadata={"pixel_size": 0.5})
    w = DenoiseWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.input_combo.setCurrentText("steel")
    w.set_model(tiny_path)
    return viewer, w


def is_error(w) -> bool:
    return w.status.styleSheet() == ERROR_STYLE


def test_network_result_overlays_the_input_and_updates_in_place(qtbot, setup, tiny_path):
    viewer, w = setup
    src = viewer.layers["steel"]
    snap = snapshot(src)
    assert run_and_wait(qtbot, w) is State.DONE, w.status.text()
    out = viewer.layers["steel_denoised"]
    assert out.data.shape == src.data.shape and out.data.dtype == np.float32
    assert tuple(out.scale) == tuple(src.scale) and tuple(out.translate) == tuple(src.translate)
    assert tuple(out.units) == tuple(src.units)
    info = out.metadata[OUTPUT_KEY]
    assert info["made_by"] == "denoise" and info["method"] == "network" and info["model"] == str(tiny_path)
    assert info["model_meta"]["preset"] == "tiny" and info["parameters"]["histogram"] is True
    assert out.metadata["pixel_size"] == 0.5
    # histogram matching on (the default): the result has the input's grey levels
    np.testing.assert_allclose(np.sort(out.data.ravel()), np.sort(src.data.astype(np.float32).ravel()), rtol=1e-5)
    assert_unchanged(src, snap)
    n_layers = len(viewer.layers)
    w.histogram_box.setChecked(False)
    w.options.set_value("tile", 32)
    assert run_and_wait(qtbot, w) is State.DONE, w.status.text()
    assert len(viewer.layers) == n_layers  # the same layer, updated in place
    again = viewer.layers["steel_denoised"]
    assert again.metadata[OUTPUT_KEY]["parameters"]["histogram"] is False
    assert again.metadata[OUTPUT_KEY]["parameters"]["tile"] == 32
    assert not np.allclose(np.sort(again.data.ravel()), np.sort(src.data.astype(np.float32).ravel()))
    assert_unchanged(src, snap)


def test_a_classical_method_alone_and_beside_the_network(qtbot, setup):
    viewer, w = setup
    w.set_method("gaussian")
    assert not w.model_box.isEnabled()  # no model for a classical method
    assert run_and_wait(qtbot, w) is State.DONE, w.status.text()
    g = viewer.layers["steel_gaussian"]
    info = g.metadata[OUTPUT_KEY]
    assert info["method"] == "gaussian" and info["calibrated"] and info["parameters"]["sigma"] in (0.5, 1, 1.5, 2, 3, 4)
    assert "steel_denoised" not in viewer.layers
    w.set_method("network", beside="median")
    assert run_and_wait(qtbot, w) is State.DONE, w.status.text()
    assert "steel_denoised" in viewer.layers and "steel_median" in viewer.layers
    assert viewer.layers["steel_median"].metadata[OUTPUT_KEY]["parameters"]["size"] in (3, 5, 7, 9)
    assert "steel_denoised" in w.status.text() and "steel_median" in w.status.text()


def test_rgb_is_converted_and_said_or_refused(qtbot, setup, micrograph):
    viewer, w = setup
    rgb = np.dstack([micrograph // 256] * 2 + [micrograph // 300]).astype(np.uint8)
    viewer.add_image(rgb, name="colour", rgb=True)
    assert "colour" in [w.input_combo.itemText(i) for i in range(w.input_combo.count())]
    w.input_combo.setCurrentText("colour")
    snap = snapshot(viewer.layers["colour"])
    assert run_and_wait(qtbot, w) is State.DONE, w.status.text()
    out = viewer.layers["colour_denoised"]
    assert out.data.shape == rgb.shape[:2] and not out.rgb
    assert "luminance" in w.status.text() and "luminance" in out.metadata[OUTPUT_KEY]["colour"]
    viewer.layers.remove("colour_denoised")
    w.options.set_value("colour", "error")
    assert run_and_wait(qtbot, w) is State.FAILED
    assert is_error(w) and "RGB" in w.status.text() and "colour_denoised" not in viewer.layers
    assert_unchanged(viewer.layers["colour"], snap)


@pytest.mark.parametrize("case", ["nan", "small", "constant", "missing_model", "corrupt_model", "3d"])
def test_bad_input_gives_a_red_message_and_changes_nothing(qtbot, setup, case, tmp_path):
    viewer, w = setup
    expect = {"nan": "NaN", "small": "too small", "constant": "constant", "missing_model": "not found",
              "corrupt_model": "model", "3d": "3-D"}[case]
    if case in ("nan", "small", "constant", "3d"):
        data = {"nan": np.where(np.eye(40, dtype=bool), np.nan, 1.0) + np.arange(40.0),
                "small": np.random.default_rng(0).random((12, 12)),
                "constant": np.full((40, 40), 7.0), "3d": np.random.default_rng(0).random((3, 40, 40))}[case]
        viewer.add_image(data, name="bad")
        if case == "3d":
            assert "bad" not in [w.input_combo.itemText(i) for i in range(w.input_combo.count())]
            assert "3-D" in w.invalid_note.text()
            return
        w.input_combo.setCurrentText("bad")
    elif case == "missing_model":
        w.set_model(tmp_path / "nope.safetensors")
        assert w.model_note.styleSheet() == ERROR_STYLE and "not found" in w.model_note.text()
    else:
        bad = tmp_path / "cut.safetensors"
        bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
        w.set_model(bad)
    name = w.input_combo.currentText()
    snap = snapshot(viewer.layers[name])
    n = len(viewer.layers)
    assert run_and_wait(qtbot, w) is State.FAILED
    assert is_error(w) and expect in w.status.text(), w.status.text()
    assert len(viewer.layers) == n
    assert_unchanged(viewer.layers[name], snap)


def test_cancel_stops_and_adds_nothing(qtbot, setup):
    viewer, w = setup
    w.run()
    w.cancel()
    qtbot.waitUntil(lambda: w.runner.state in (State.STOPPED, State.DONE, State.FAILED), timeout=TIMEOUT)
    assert w.runner.state is State.STOPPED
    assert "steel_denoised" not in viewer.layers


def test_the_job_cancels_inside_a_forward_pass(tiny_path):
    """denoise_job without Qt: a cancel that comes while the network runs (here: at its second layer) stops it
    there (ForwardMonitor), with a "stopped" record and no result."""
    img = np.random.default_rng(1).random((96, 96)).astype(np.float32)
    calls = []

    def cancel():  # False for the check between batches, True from the network's second layer on
        calls.append(1)
        return len(calls) >= 3

    recs = []
    assert drive(denoise_job(img, model=str(tiny_path), options=DenoiseOptions(tile=None), cancel=cancel),
                 recs.append) is None
    assert str(recs[-1]["kind"]) == "stopped" and len(calls) == 3
    assert drive(denoise_job(img, model=str(tiny_path), options=DenoiseOptions(tile=None)))["outputs"][0]["image"].shape == (96, 96)


def test_opened_from_the_plugins_menu(qtbot, make_napari_viewer, micrograph, tiny_path):
    viewer = make_napari_viewer()
    viewer.add_image(micrograph, name="a")
    viewer.add_image(micrograph[:40, :40], name="b")
    viewer.layers.selection.active = viewer.layers["b"]
    _, w = viewer.window.add_plugin_dock_widget("napari-matrestore", "Denoise: apply")
    assert type(w.viewer).__name__ == "PublicOnlyProxy"
    assert [w.input_combo.itemText(i) for i in range(w.input_combo.count())] == ["a", "b"]
    assert w.input_layer().name == "b"  # the active layer
    viewer.add_image(np.zeros((20, 20), np.float32), name="later")  # the list changes: the choice stays
    assert w.input_layer().name == "b"
    w.set_model(tiny_path)
    assert run_and_wait(qtbot, w) is State.DONE, w.status.text()
    assert viewer.layers["b_denoised"].data.shape == (40, 40)


def test_model_note_gives_the_held_out_figure_when_the_file_has_one(tmp_path):
    from matrestore._widgets.denoise import describe_model_file
    from matrestore.denoise import build_model, save_model
    from matrestore.denoise.modelio import DEFAULT_MODEL

    from matrestore.denoise import load_model

    text = describe_model_file(DEFAULT_MODEL)
    assert "held-out boundary F1 0." in text and "grain-count error" in text
    assert f"{load_model().cfg.preset} preset" in text
    p = save_model(build_model("tiny", seed=0), tmp_path / "t.safetensors", metrics={"validation": {"f1": 0.5}})
    assert describe_model_file(p).endswith("validation boundary F1 0.500")


def test_grains_are_measured_with_the_layers_pixel_size(qtbot, setup, micrograph, tmp_path):
    import csv
    import json

    from napari.layers import Labels

    from matrestore import InputError

    viewer, w = setup
    assert w.grains_box.isChecked()  # on by default
    assert not w.grain_save.isEnabled()
    with pytest.raises(InputError):
        w.save_grain_table(tmp_path / "none.csv")
    assert run_and_wait(qtbot, w) is State.DONE, w.status.text()
    g = viewer.layers["steel_grains"]
    assert isinstance(g, Labels) and g.contour == 1 and g.data.shape == micrograph.shape
    assert tuple(g.scale) == tuple(viewer.layers["steel"].scale) and tuple(g.translate) == (3.0, 4.0)
    assert w.grain_table.rowCount() == 2 and w.grain_table.item(0, 0).text() == "input"
    assert w.grain_table.item(1, 1).text() == str(int(g.data.max()))  # the table counts the layer's grains
    assert w.grain_table.item(1, 5).text() == "–" and "No pixel size" in w.grain_note.text()  # units are pixels
    assert "Grains:" in w.status.text()
    # a layer in micrometres: sizes in µm² and the ASTM numbers
    viewer.add_image(micrograph, name="steel_um", scale=(0.5, 0.5), units=("um", "um"))
    w.input_combo.setCurrentText("steel_um")
    w.grain_rule_combo.setCurrentIndex(2)  # grey levels
    assert run_and_wait(qtbot, w) is State.DONE, w.status.text()
    assert w.grain_table.horizontalHeaderItem(3).text() == "area µm²" and float(w.grain_table.item(1, 3).text()) > 0 and float(w.grain_table.item(1, 5).text()) > 0
    assert "0.5 µm" in w.grain_note.text() and "grey levels" in w.grain_note.text()
    assert viewer.layers["steel_um_grains"].metadata[OUTPUT_KEY]["rule"] == "levels"
    assert w.grain_save.isEnabled()
    w.save_grain_table(tmp_path / "g.csv")
    rows = list(csv.DictReader(open(tmp_path / "g.csv")))
    assert len(rows) == int(viewer.layers["steel_um_grains"].data.max()) and float(rows[0]["area"]) > 0
    doc = json.loads((tmp_path / "g.json").read_text())
    assert doc["unit"] == "micrometer" and doc["rule"] == "levels" and set(doc["summaries"]) == {"input", "network"}
    # off: no grain layer for a new input
    w.grains_box.setChecked(False)
    viewer.add_image(micrograph, name="plain")
    w.input_combo.setCurrentText("plain")
    assert run_and_wait(qtbot, w) is State.DONE, w.status.text()
    assert "plain_grains" not in viewer.layers and "Grains:" not in w.status.text()


def test_the_job_measures_grains_of_input_and_every_result(micrograph, tiny_path):
    res = drive(denoise_job(micrograph, model=str(tiny_path), beside="median",
                            grains={"pixel_size": 0.25, "unit": "um", "method": "auto"}))
    g = res["grains"]
    assert set(g["rows"]) == {"input", "network", "median"} and g["method"] in ("etched", "levels")
    assert all(r["method"] == g["method"] for r in g["rows"].values())  # one rule for all rows
    assert g["labels"].shape == micrograph.shape and g["labels"].max() == g["rows"]["network"]["count"]
    assert drive(denoise_job(micrograph, model=str(tiny_path)))["grains"] is None  # off unless asked


def test_the_bundled_etched_model_is_one_click_away(qtbot, setup):
    from matrestore.denoise import load_model
    from matrestore.denoise.modelio import ETCHED_MODEL

    viewer, w = setup
    w.etched_button.click()
    assert w.model_spec() == str(ETCHED_MODEL) and w.model_file_radio.isChecked()
    assert "NIST reference" in w.model_note.text() and "held-out boundary F1 0.880" in w.model_note.text()
    m = load_model("etched")  # also by name, as the CLI's --model etched
    assert m.meta["metrics"]["nist_reference"]["f1"] == pytest.approx(0.874, abs=0.001)
    assert m.meta["metrics"]["held_out"]["network"]["f1"] == pytest.approx(0.880, abs=0.001)


def test_an_etched_looking_input_suggests_the_etched_model(qtbot, setup):
    from matrestore.denoise import phase_field, synthesize

    viewer, w = setup
    w.set_model("default")
    assert not w.etched_hint  # the grey-level micrograph of the fixture
    p = synthesize(phase_field((128, 128), 30, 60, seed=3), None, seed=4, boundary_width=2, grey_range=(0.82, 0.92),
                   min_contrast=0.0, artefacts={"scratches": (0, 0), "stains": (0, 0)})
    viewer.add_image((p.noisy * 255).astype(np.uint8), name="etched")
    w.input_combo.setCurrentText("etched")
    assert w.etched_hint and "etched-steel model" in w.hint_label.text() and w.hint_label.isVisibleTo(w)
    w.etched_button.click()  # taken: the hint goes
    assert not w.etched_hint and not w.hint_label.isVisibleTo(w)


def test_a_result_whose_grains_cannot_be_measured_keeps_the_result():
    from matrestore._widgets.denoise import measure_job_grains

    img = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    outs = [{"method": "network", "image": np.zeros((64, 64), np.float32)}]  # constant: no boundaries
    res = drive(measure_job_grains(img, outs, {"pixel_size": None, "unit": None, "method": "levels"}))
    assert "constant" in res["rows"]["network"]["error"] and res["rows"]["input"]["count"] >= 1
    assert res["labels"] is None


def test_a_large_in_memory_image_is_measured_field_by_field(qtbot, setup, micrograph, tmp_path, monkeypatch):
    import csv

    from matrestore._widgets import denoise as dw
    from matrestore.denoise.fields import measure_fields

    viewer, w = setup
    assert run_and_wait(qtbot, w) is State.DONE, w.status.text()
    assert "steel_grains" in viewer.layers  # whole-image measurement: outlines
    big = np.tile(micrograph, (2, 3))  # 128 × 192
    viewer.add_image(big, name="steel", scale=(0.5, 0.5), units=("um", "um"))  # replaces nothing: a new layer
    name = viewer.layers[-1].name
    monkeypatch.setattr(dw, "WHOLE_GRAINS_MAX_PX", 20_000)  # 24 576 px is "large" here
    monkeypatch.setattr(dw, "STORE_FIELD_PX", 64)  # six fields
    w.input_combo.setCurrentText(name)
    w.set_method("gaussian")  # a classical result's grains are measured the same way
    assert run_and_wait(qtbot, w) is State.DONE, w.status.text()
    g = w.last_results["grains"]
    assert g["by_fields"] and set(g["rows"]) == {"input", "gaussian"}
    assert g["rows"]["input"]["fields"] == 6
    ref = measure_fields(big.astype(np.float64), 64, pixel_size=0.5, unit="um", method=g["method"])["summary"]
    assert g["rows"]["input"]["grains_counted"] == ref["grains_counted"]
    assert f"{name}_grains" not in viewer.layers and "fields of 64 px" in w.grain_note.text()
    assert w.grain_save.text() == "Save per-field table…"
    rows = list(csv.DictReader(open(w.save_grain_table(tmp_path / "f.csv"))))
    assert len(rows) == 6
