"""Remembered settings of the Enhance, Compare and Scan-enhance-rescan widgets: a changed option is kept
by the next widget (next napari session), "Restore defaults" brings the defaults back (and the next
widget starts from them), values taken from layers are not remembered, layers never are.

The settings file is a throw-away INI file per test (tests/conftest.py sets MATRESTORE_SETTINGS)."""

import numpy as np
import pytest

from matrestore import ser
from matrestore._widgets._settings import qsettings
from matrestore._widgets.compare import CompareWidget
from matrestore._widgets.enhance import EnhanceWidget
from matrestore._widgets.rescan import RescanWidget
from matrestore.degrade import downsample


def stored_keys(group):
    s = qsettings()
    s.beginGroup(group)
    return set(s.allKeys())


# ---------------------------------------------------------------------------------------- Enhance
def enhance_values(w):
    return {"model_file": w.model_file_radio.isChecked(), "model_path": w.model_path.text(),
            "folder": w.ref_folder.text(), "tile": w.tile_spin.value(), "batch": w.batch_spin.value(),
            "device": w.device_combo.currentText(), "top_k": w.topk_spin.value(), "mode": w.mode_combo.currentText(),
            "uncertainty": w.unc_spin.value()}


def test_enhance_settings_kept_and_restored(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32), np.float32), name="lr")
    w1 = EnhanceWidget(viewer)
    defaults = enhance_values(w1)
    assert defaults == {"model_file": False, "model_path": "", "folder": "", "tile": 0, "batch": 0, "device": "auto",
                        "top_k": 0, "mode": "fast (whole-image quality)", "uncertainty": 0}
    model = tmp_path / "mine.safetensors"
    w1.set_model(model)  # as the Browse… button does
    w1.ref_folder.setText(str(tmp_path))
    w1.ref_folder.editingFinished.emit()  # typed, then Enter / focus out
    w1.tile_spin.setValue(128)
    w1.batch_spin.setValue(2)
    w1.device_combo.setCurrentText("cpu")
    w1.topk_spin.setValue(3)
    w1.mode_combo.setCurrentText("paper (32 px tiles, per-tile references)")
    w1.unc_spin.setValue(4)
    changed = enhance_values(w1)
    assert changed != defaults

    w2 = EnhanceWidget(viewer)  # the next session
    assert enhance_values(w2) == changed
    assert w2.model_spec() == str(model)
    assert w2.input_layer() is viewer.layers["lr"]
    assert stored_keys("enhance") <= {"model_default", "model_file", "model_path", "reference_folder", "tile", "batch",
                                      "device", "top_k", "mode", "uncertainty"}  # parameters only, no layers

    w2.adv_toggle.setChecked(True)
    assert w2.defaults_btn.isVisibleTo(w2) and w2.defaults_btn.toolTip()
    w2.defaults_btn.click()
    assert enhance_values(w2) == defaults
    assert w2.model_spec() == "default"
    assert enhance_values(EnhanceWidget(viewer)) == defaults


# ---------------------------------------------------------------------------------------- Compare
def compare_values(w):
    return {"lr_mode": w.mode_lr.isChecked(), "candidates": w.mode_cand.isChecked(), "scale": w.scale_spin.value(),
            "auto": w.range_auto.isChecked(), "range": w.range_spin.value(), "map": w.map_combo.currentText()}


def test_compare_settings_kept_and_restored(make_napari_viewer):
    viewer = make_napari_viewer()
    w1 = CompareWidget(viewer)
    defaults = compare_values(w1)
    assert defaults == {"lr_mode": True, "candidates": False, "scale": 4, "auto": True, "range": 255.0, "map": "none"}
    w1.mode_cand.setChecked(True)
    w1.scale_spin.setValue(3)
    w1.range_auto.setChecked(False)
    w1.range_spin.setValue(4095.0)
    w1.map_combo.setCurrentText("ESSIM map")
    changed = compare_values(w1)

    w2 = CompareWidget(viewer)
    assert compare_values(w2) == changed
    assert w2.cand_box.isVisibleTo(w2) and not w2.lr_box.isVisibleTo(w2)  # the remembered mode shows its inputs
    assert w2.range_spin.isEnabled() and "set by hand" in w2.range_label.text()
    assert w2.map_of.isEnabled()
    assert w2.defaults_btn.toolTip()
    w2.defaults_btn.click()
    assert compare_values(w2) == defaults
    assert w2.lr_box.isVisibleTo(w2) and not w2.range_spin.isEnabled()
    assert compare_values(CompareWidget(viewer)) == defaults


def test_compare_inferred_scale_is_not_remembered(make_napari_viewer):
    hr = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    empty = make_napari_viewer()
    w = CompareWidget(empty)
    w.scale_spin.setValue(3)  # the user's choice
    viewer = make_napari_viewer()
    viewer.add_image(hr, name="hr")
    viewer.add_image(downsample(hr, 2), name="lr2")
    w2 = CompareWidget(viewer)
    assert w2.scale_spin.value() == 2 and "image sizes" in w2.scale_hint.text()  # inferred from the layers
    assert CompareWidget(empty).scale_spin.value() == 3  # the inferred 2 did not replace the user's 3


# ---------------------------------------------------------------------------------------- Scan-enhance-rescan
def rescan_values(w):
    return {"source": w.source_combo.currentText(), "percentile": w.percentile.value(), "min_size": w.min_size.value(),
            "margin": w.margin.value(), "max": w.max_rois.value(), "scale": w.scale.value(),
            "dwell_lr": w.dwell_lr.value(), "dwell_hr": w.dwell_hr.value()}


def test_rescan_settings_kept_and_restored(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64), np.uint8), name="field_sr")
    w1 = RescanWidget(viewer)
    defaults = rescan_values(w1)
    assert defaults == {"source": "dark features (voids)", "percentile": 97.0, "min_size": 16, "margin": 16, "max": 30,
                        "scale": 4, "dwell_lr": 100.0, "dwell_hr": 100.0}
    w1.source_combo.setCurrentText("bright features")
    w1.percentile.setValue(90.0)
    w1.min_size.setValue(8)
    w1.margin.setValue(4)
    w1.max_rois.setValue(10)
    w1.scale.setValue(2)
    w1.dwell_lr.setValue(5.0)
    w1.dwell_hr.setValue(20.0)
    changed = rescan_values(w1)

    w2 = RescanWidget(viewer)
    assert rescan_values(w2) == changed
    assert "t_SER/t_HR" in w2.stats_label.text() and w2.last_stats["area_fraction"] == 0
    assert w2.image_layer() is viewer.layers["field_sr"]
    assert stored_keys("rescan") <= {"source", "percentile", "min_size", "margin", "max_regions", "scale", "dwell_lr",
                                     "dwell_hr"}
    assert w2.defaults_btn.toolTip()
    w2.defaults_btn.click()
    assert rescan_values(w2) == defaults
    assert rescan_values(RescanWidget(viewer)) == defaults


def test_rescan_dwell_time_from_the_file_is_not_remembered(make_napari_viewer):
    empty = make_napari_viewer()
    RescanWidget(empty).dwell_hr.setValue(20.0)  # the user's choice
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64), np.uint8), name="fei", metadata={"dwell_time_us": 6.0, "unit": "nm"})
    w = RescanWidget(viewer)
    assert w.dwell_hr.value() == pytest.approx(6.0)  # the file says so, for this image
    expected = ser.scan_times((16, 16), 0.0, scale=4, dwell_lr_us=6.0, dwell_hr_us=6.0)
    assert w.last_stats["t_hr_min"] == pytest.approx(expected["t_hr_min"])  # the time estimate follows it
    other = RescanWidget(empty)
    assert other.dwell_hr.value() == pytest.approx(20.0) and other.dwell_lr.value() == pytest.approx(100.0)
    w.restore_defaults()
    assert w.dwell_hr.value() == pytest.approx(6.0)  # still the file's value for this image
    assert RescanWidget(empty).dwell_hr.value() == pytest.approx(100.0)


def test_renamed_layer_stays_picked_in_rescan(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64), np.uint8), name="a")
    viewer.add_image(np.zeros((64, 64), np.uint8), name="b")
    w = RescanWidget(viewer)
    w.image_combo.setCurrentText("b")
    viewer.layers["b"].name = "b2"
    assert w.image_combo.currentText() == "b2" and w.image_layer() is viewer.layers["b2"]
