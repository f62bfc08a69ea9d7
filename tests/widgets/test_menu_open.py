"""Every dock widget opened the way the Plugins menu opens it (``add_plugin_dock_widget``): napari then
hands the widget a ``PublicOnlyProxy`` of the viewer, whose layers are new proxy objects at every access.
Layer pickers must still offer and keep the layers, and a run must find its input."""

import numpy as np
import pytest
from qtpy.QtCore import Qt

from matrestore._widgets._layers import layer_key, same_layer

PLUGIN = "napari-matrestore"
WIDGETS = ["Compare images", "Scan-enhance-rescan", "Super-resolution: enhance", "Super-resolution: train / fine-tune"]


@pytest.fixture
def viewer(make_napari_viewer):
    from skimage import data

    v = make_napari_viewer()
    cam = data.camera().astype(np.float32)
    v.add_image(np.ascontiguousarray(cam[:96, :96]), name="big", scale=(2.0, 2.0))
    v.add_image(np.ascontiguousarray(cam[200:224, 200:224]), name="small", scale=(8.0, 8.0))
    return v


def open_widget(viewer, name):
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    assert type(w.viewer).__name__ == "PublicOnlyProxy"  # what the menu hands a plugin
    return w


def test_layer_key_is_stable_through_the_proxy(viewer):
    w = open_widget(viewer, "Compare images")
    a, b = w.viewer.layers[0], w.viewer.layers[0]
    assert a is not b  # a new proxy each time: identity checks fail ...
    assert layer_key(a) == layer_key(b) and same_layer(a, b)  # ... the key does not
    assert not same_layer(w.viewer.layers[0], w.viewer.layers[1]) and not same_layer(a, None)


@pytest.mark.parametrize("name", WIDGETS)
def test_pickers_offer_the_open_layers(viewer, name):
    w = open_widget(viewer, name)
    combos = [getattr(w, a) for a in ("input_combo", "gt_combo", "image_combo") if hasattr(w, a)]
    lists = [getattr(w, a) for a in ("cand_list", "ref_list", "hr_list") if hasattr(w, a)]
    assert combos or lists
    for c in combos:
        names = [c.itemText(i) for i in range(c.count())]
        assert {"big", "small"} <= set(names), names
    for c in combos:
        if c is not getattr(w, "gt_combo", None) or name == "Compare images":
            assert c.layer() is not None and c.currentText() in ("big", "small"), (name, c.currentText())
    for lst in lists:
        assert {lyr.name for lyr in lst.layers} >= {"big", "small"}


def test_enhance_from_menu_picks_the_active_layer_and_keeps_it(viewer):
    viewer.layers.selection.active = viewer.layers["small"]
    w = open_widget(viewer, "Super-resolution: enhance")
    assert w.input_layer().name == "small"
    viewer.add_image(np.zeros((40, 40), np.float32), name="later")  # the list changes: the choice stays
    assert w.input_layer().name == "small"
    # the input is greyed out among the references; checking "big" survives a refresh
    row = [lyr.name for lyr in w.ref_list.layers].index("big")
    w.ref_list.item(row).setCheckState(Qt.Checked)
    viewer.add_image(np.zeros((40, 40), np.float32), name="later2")
    assert [lyr.name for lyr in w.reference_layers()] == ["big"]
    job = w._collect()
    assert job["name"] == "small" and job["out_name"] == "small_sr"


def test_compare_from_menu_keeps_checked_candidates(viewer):
    w = open_widget(viewer, "Compare images")
    w.mode_lr.setChecked(False) if hasattr(w, "mode_lr") else None
    rows = {lyr.name: i for i, lyr in enumerate(w.cand_list.layers)}
    usable = [n for n in rows if w.cand_list.item(rows[n]).flags() & Qt.ItemIsUserCheckable]
    assert usable
    w.cand_list.item(rows[usable[0]]).setCheckState(Qt.Checked)
    viewer.add_image(np.zeros((40, 40), np.float32), name="later")
    assert usable[0] in [lyr.name for lyr in w.cand_list.checked_layers()]


def test_train_from_menu_fits_a_small_window_and_estimates_a_short_fine_tune(viewer):
    from matrestore.sr.train import FINE_TUNE, estimate_seconds

    w = open_widget(viewer, "Super-resolution: train / fine-tune")
    assert w.sizeHint().height() <= 700  # the rest scrolls: the validation table stays reachable
    assert w.epochs_spin.value() == FINE_TUNE["epochs"] and w.steps_spin.value() == FINE_TUNE["steps_per_epoch"]
    assert w.adv_from() == 1.0  # reconstruction loss only, as the shipped model was trained
    secs = estimate_seconds("cpu", FINE_TUNE["epochs"] * FINE_TUNE["steps_per_epoch"], threads=2)
    assert 4 * 60 <= secs <= 12 * 60  # about ten minutes on 2 cores
    assert "about" in w.estimate_label.text() and "steps" in w.estimate_label.text()
    w.epochs_spin.setValue(40)  # the estimate follows the schedule before anything starts
    assert "h" in w.estimate_label.text() or "min" in w.estimate_label.text()


def test_a_fixed_problem_leaves_no_stale_toast(viewer):
    from napari.utils.notifications import notification_manager

    w = open_widget(viewer, "Super-resolution: train / fine-tune")
    for i in range(w.hr_list.count()):
        w.hr_list.item(i).setCheckState(Qt.Unchecked)
    before = len(notification_manager.records)
    w.run()  # nothing checked: the problem shows in red beside the button, not as a toast
    assert "no training images" in w.status.text()
    assert len(notification_manager.records) == before


def test_outputs_take_the_units_of_their_source(make_napari_viewer):
    from matrestore._layerdata import image_layer_tuple
    from matrestore._widgets._layers import put_image, spatial_units

    viewer = make_napari_viewer()
    data, kw, _ = image_layer_tuple(np.zeros((32, 32), np.float32), {"pixel_size": 90.9}, "sem")
    src = viewer.add_image(data, **kw)  # as the reader adds it: 90.9 nm/px with napari units
    assert [str(u) for u in src.units] == ["nanometer", "nanometer"]
    out = put_image(viewer, "sem_sr", np.zeros((128, 128), np.float32), (90.9 / 4,) * 2, (0.0, 0.0), {},
                    units=spatial_units(src))
    assert tuple(out.units) == tuple(src.units)
    plain = viewer.add_image(np.zeros((8, 8)), name="plain")  # no calibration: pixels, and so its outputs
    assert [str(u) for u in spatial_units(plain)] == ["pixel", "pixel"]
