import json

import numpy as np
import pytest
from skimage import data

from matrestore import ser
from matrestore._widgets.rescan import ROLE_KEY, RescanWidget


@pytest.fixture
def field():
    img = np.full((256, 320), 180, dtype=np.uint8)
    img[40:80, 50:110] = 10  # void 1
    img[180:220, 200:260] = 15  # void 2
    return img


@pytest.fixture
def widget(make_napari_viewer, field):
    viewer = make_napari_viewer()
    viewer.add_image(field, name="field_sr", scale=(25.0, 25.0), metadata={"unit": "nm"})
    w = RescanWidget(viewer)
    viewer.window.add_dock_widget(w)
    return viewer, w


def test_propose_creates_rois_and_stats(widget, qtbot, field):
    viewer, w = widget
    w.source_combo.setCurrentText("dark features (voids)")
    w.percentile.setValue(90)
    w.margin.setValue(4)
    w.propose()
    qtbot.waitUntil(lambda: "field_sr_rois" in viewer.layers and len(viewer.layers["field_sr_rois"].data) == 2, timeout=10000)
    rois = sorted(w.rois())
    assert rois[0][0] <= 40 and rois[0][2] >= 80 and rois[1][1] <= 200 and rois[1][3] >= 260
    layer = viewer.layers["field_sr_rois"]
    assert tuple(layer.scale) == (25.0, 25.0)
    frac = ser.area_fraction(rois, field.shape)
    assert w.last_stats["area_fraction"] == pytest.approx(frac)
    assert w.last_stats["ratio"] == pytest.approx(ser.time_ratio(frac, 4))
    assert "t_SER/t_HR" in w.stats_label.text()
    np.testing.assert_array_equal(viewer.layers["field_sr"].data, field)  # input untouched


def test_user_edits_update_stats_live(widget, qtbot):
    viewer, w = widget
    w._set_rois([(0, 0, 64, 64)])
    assert w.last_stats["area_fraction"] == pytest.approx(64 * 64 / (256 * 320))
    layer = viewer.layers["field_sr_rois"]
    layer.add_rectangles([np.array([[99.5, 99.5], [163.5, 163.5]])])  # user draws a second box
    assert w.last_stats["n_rois"] == 2
    assert w.last_stats["area_fraction"] == pytest.approx(2 * 64 * 64 / (256 * 320))
    layer.selected_data = {0}
    layer.remove_selected()  # user deletes the first
    assert w.last_stats["n_rois"] == 1
    w.dwell_lr.setValue(200.0)  # slower LR scan: offset doubles
    assert w.last_stats["ratio"] == pytest.approx(ser.time_ratio(64 * 64 / (256 * 320), 4, 200, 100))


def test_export_physical_coordinates(widget, tmp_path):
    viewer, w = widget
    w._set_rois([(10, 20, 30, 60)])
    w.stage_x.setValue(100.0)
    csv_path, json_path = w.export(tmp_path / "rois")
    doc = json.loads(json_path.read_text())
    r = doc["rois"][0]
    assert (r["row0"], r["col0"], r["row1"], r["col1"]) == (10, 20, 30, 60)
    assert r["width_um"] == pytest.approx(40 * 25.0 / 1000)
    assert r["stage_x_um"] == pytest.approx(100.0 + r["x0_um"] + r["width_um"] / 2)
    assert csv_path.read_text().startswith("id,")


def test_map_source_shape_mismatch_message(widget, qtbot):
    viewer, w = widget
    viewer.add_image(np.zeros((10, 10)), name="small")
    w.source_combo.setCurrentText("high values of a map layer (e.g. uncertainty)")
    w.map_combo.setCurrentText("small")
    w.propose()
    assert "must match" in w.status.text()


def test_rescan_registered_and_marked_reference(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    cam = data.camera()
    viewer.add_image(cam, name="cam_sr", scale=(10.0, 10.0), translate=(5.0, 0.0))
    w = RescanWidget(viewer)
    patch = cam[120:184, 300:380].copy()
    w.add_rescan(patch, name="rescan1")
    qtbot.waitUntil(lambda: "rescan1" in viewer.layers, timeout=10000)
    layer = viewer.layers["rescan1"]
    assert layer.metadata[ROLE_KEY] == "reference"
    assert layer.metadata["offset_px"] == [120, 300]
    np.testing.assert_allclose(layer.translate, (5.0 + 1200.0, 3000.0))
    assert "row 120" in w.rescan_label.text()


def test_layer_picker_follows_viewer(widget):
    viewer, w = widget
    viewer.add_image(np.zeros((20, 20)), name="another")
    assert w.image_combo.findText("another") >= 0
    viewer.layers.remove("another")
    assert w.image_combo.findText("another") < 0
    viewer.add_image(np.zeros((20, 20, 3)), name="rgb", rgb=True)
    assert w.image_combo.findText("rgb") < 0  # RGB layers are not offered


def test_dwell_time_taken_from_the_file_metadata(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64), np.uint8), name="fei", metadata={"dwell_time_us": 6.0, "unit": "nm"})
    w = RescanWidget(viewer)
    assert w.dwell_hr.value() == pytest.approx(6.0)
    assert w.dwell_lr.value() == pytest.approx(6.0)  # equal dwell times, as in the paper: break-even 15/16
    assert w.last_stats["break_even"] == pytest.approx(15 / 16)
    w.dwell_lr.setValue(12.0)  # the user's edit survives changes to the layer list
    viewer.add_image(np.zeros((64, 64), np.uint8), name="other")
    assert w.dwell_lr.value() == pytest.approx(12.0) and w.dwell_hr.value() == pytest.approx(6.0)
    w.image_combo.setCurrentText("other")  # no dwell time in its metadata: the values stay
    w.image_combo.setCurrentText("fei")  # picked again: the file's dwell time again
    assert w.dwell_lr.value() == pytest.approx(6.0)


def test_random_rescan_is_placed_with_low_confidence_and_not_a_reference(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    cam = data.camera()
    image = viewer.add_image(cam, name="cam_sr", scale=(10.0, 10.0), units=("nm", "nm"),
                             contrast_limits=(20, 200))
    w = RescanWidget(viewer)
    noise = np.random.default_rng(0).integers(0, 255, (64, 80)).astype(np.uint8)
    w.add_rescan(noise, name="noise")
    qtbot.waitUntil(lambda: "noise" in viewer.layers, timeout=10000)
    layer = viewer.layers["noise"]
    assert ROLE_KEY not in layer.metadata  # not trusted: not a reference unless confirmed
    assert layer.metadata["registration_correlation"] < 0.5
    assert "low confidence" in w.rescan_label.text() and w.confirm_btn.isVisibleTo(w)
    assert tuple(layer.contrast_limits) == tuple(image.contrast_limits)  # the image's contrast, not its own
    assert [str(u) for u in layer.units] == ["nanometer", "nanometer"]
    w.confirm_reference()
    assert layer.metadata[ROLE_KEY] == "reference" and not w.confirm_btn.isVisibleTo(w)


def test_real_rescan_keeps_the_image_contrast(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    cam = data.camera()
    viewer.add_image(cam, name="cam_sr", contrast_limits=(30, 180))
    w = RescanWidget(viewer)
    w.add_rescan(cam[100:164, 200:280].copy(), name="r")
    qtbot.waitUntil(lambda: "r" in viewer.layers, timeout=10000)
    assert tuple(viewer.layers["r"].contrast_limits) == (30, 180)
    assert viewer.layers["r"].metadata["registration_correlation"] > 0.99
