import threading
import time

import numpy as np
import pytest
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QApplication, QLabel, QProgressBar

from matrestore import evaluation
from matrestore._validate import InputError
from matrestore._widgets._worker import State, TaskRunner
from matrestore._widgets.compare import CompareWidget
from matrestore.baselines import METHODS, upsample, upsampled_geometry
from matrestore.degrade import downsample
from _util import assert_unchanged, snapshot
from _util import wait_done as _wait_done

TIMEOUT = 20000


def wait_done(qtbot, w):
    _wait_done(qtbot, w, TIMEOUT)


@pytest.fixture
def hr():
    from skimage import data

    return np.ascontiguousarray(data.camera()[100:228, 200:328])  # 128×128 uint8


@pytest.fixture
def lr(hr):
    return downsample(hr, 4)  # 32×32


@pytest.fixture
def setup(make_napari_viewer, hr, lr):
    viewer = make_napari_viewer()
    viewer.add_image(hr, name="hr", scale=(2.0, 2.0), translate=(10.0, 20.0))
    viewer.add_image(lr, name="lr", scale=(8.0, 8.0), translate=(13.0, 23.0), metadata={"unit": "nm", "pixel_size_nm": 8.0})
    w = CompareWidget(viewer)
    viewer.window.add_dock_widget(w)
    return viewer, w


def table_rows(w):
    t = w.table
    return [[t.item(r, c).text() for c in range(t.columnCount())] for r in range(t.rowCount())]


def test_lr_mode_adds_baselines_with_cli_numbers(setup, qtbot, hr, lr):
    viewer, w = setup
    assert w.gt_combo.currentText() == "hr" and w.lr_combo.currentText() == "lr"  # defaults: largest / smallest
    assert w.scale_spin.value() == 4 and "layer scales" in w.scale_hint.text()
    snaps = {n: snapshot(viewer.layers[n]) for n in ("hr", "lr")}
    w.mode_lr.setChecked(True)
    w.run()
    assert w.runner.state is State.RUNNING and not w.run_btn.isEnabled() and w.cancel_btn.isEnabled()
    wait_done(qtbot, w)
    assert w.runner.state is State.DONE, w.status.text()
    assert w.run_btn.isEnabled() and not w.cancel_btn.isEnabled()

    ref = evaluation.evaluate_baselines(hr, lr, 4)
    assert w.last_results["metrics"] == ref["metrics"]  # exactly the CLI's numbers
    assert w.last_results["data_range"] == ref["data_range"] == 255
    scale, translate = upsampled_geometry((8.0, 8.0), (13.0, 23.0), 4)
    for m in METHODS:
        layer = viewer.layers[f"lr_{m}"]
        np.testing.assert_array_equal(layer.data, upsample(lr, 4, m))
        np.testing.assert_allclose(layer.scale, scale)
        np.testing.assert_allclose(layer.translate, translate)
        assert layer.metadata["pixel_size_nm"] == 2.0 and layer.metadata["unit"] == "nm"
        assert layer.metadata["matrestore"]["metrics"] == ref["metrics"][m]
    np.testing.assert_allclose(scale, (2.0, 2.0))  # overlays the ground truth exactly
    np.testing.assert_allclose(translate, (10.0, 20.0))
    rows = table_rows(w)
    assert [r[0] for r in rows] == list(METHODS)
    for r in rows:
        assert r[1:] == [evaluation._fmt(m, ref["metrics"][r[0]][m]) for m in ("psnr", "ssim", "essim")]
    # the best value of each column is highlighted
    for c, m in enumerate(("psnr", "ssim", "essim"), start=1):
        best = max(ref["metrics"], key=lambda k: ref["metrics"][k][m])
        for r, name in enumerate(METHODS):
            assert w.table.item(r, c).font().bold() == (name == best)
    assert "255" in w.range_label.text() and "auto" in w.range_label.text()
    for n, s in snaps.items():
        assert_unchanged(viewer.layers[n], s)

    # a second run updates the three layers in place
    n_layers = len(viewer.layers)
    first = viewer.layers["lr_bicubic"]
    w.run()
    wait_done(qtbot, w)
    assert w.runner.state is State.DONE
    assert len(viewer.layers) == n_layers and viewer.layers["lr_bicubic"] is first
    assert w.table.rowCount() == 3


def test_candidate_mode_two_candidates(setup, qtbot, hr, lr):
    viewer, w = setup
    rng = np.random.default_rng(0)
    noisy = np.clip(hr + rng.normal(0, 8, hr.shape), 0, 255).astype(np.uint8)
    blurred = upsample(lr, 4, "bicubic")
    viewer.add_image(noisy, name="noisy")
    viewer.add_image(blurred, name="net_sr")
    w.mode_cand.setChecked(True)
    w.gt_combo.setCurrentText("hr")
    w.set_candidates(["noisy", "net_sr"])
    assert [lyr.name for lyr in w.candidate_layers()] == ["noisy", "net_sr"]
    w.range_auto.setChecked(False)
    w.range_spin.setValue(200.0)
    w.run()
    wait_done(qtbot, w)
    assert w.runner.state is State.DONE, w.status.text()
    ref = evaluation.compare_images(hr, {"noisy": noisy, "net_sr": blurred}, data_range=200.0)
    assert w.last_results["metrics"] == ref
    assert w.last_results["data_range"] == 200.0 and "set by hand" in w.range_label.text()
    assert [r[0] for r in table_rows(w)] == ["noisy", "net_sr"]
    assert "lr_bicubic" not in viewer.layers  # candidate mode adds no baselines


def test_shape_mismatch_message_inputs_unchanged(setup, qtbot, hr):
    viewer, w = setup
    viewer.add_image(hr[::2, ::2].copy(), name="half", scale=(4.0, 4.0))
    snaps = {n: snapshot(viewer.layers[n]) for n in ("hr", "half", "lr")}
    n_layers = len(viewer.layers)
    w.mode_cand.setChecked(True)
    w.gt_combo.setCurrentText("hr")
    w.set_candidates(["half"])
    w.map_combo.setCurrentText("ESSIM map")
    w.run()
    wait_done(qtbot, w)
    assert w.runner.state is State.FAILED
    text = w.status.text()
    assert "(128, 128)" in text and "(64, 64)" in text and "must match" in text
    assert "Traceback" not in text and "color" in w.status.styleSheet()
    assert len(viewer.layers) == n_layers  # no map layer, nothing added
    for n, s in snaps.items():
        assert_unchanged(viewer.layers[n], s)


def test_lr_scale_mismatch_message(setup, qtbot):
    viewer, w = setup
    w.mode_lr.setChecked(True)
    w.scale_spin.setValue(2)  # 32 × 2 = 64 ≠ 128
    snaps = {n: snapshot(viewer.layers[n]) for n in ("hr", "lr")}
    w.run()
    wait_done(qtbot, w)
    assert w.runner.state is State.FAILED
    assert "does not match the ground truth" in w.status.text() and "scale 2" in w.status.text()
    assert "lr_bicubic" not in viewer.layers
    for n, s in snaps.items():
        assert_unchanged(viewer.layers[n], s)


def test_essim_map_layer(setup, qtbot, hr, lr):
    from matrestore.metrics import essim

    viewer, w = setup
    w.map_combo.setCurrentText("ESSIM map")
    w.map_of.setCurrentText("bicubic")
    w.run()
    wait_done(qtbot, w)
    assert w.runner.state is State.DONE, w.status.text()
    layer = viewer.layers["hr_essim_map"]
    value, full = essim(hr, upsample(lr, 4, "bicubic"), data_range=255, full=True)
    np.testing.assert_allclose(layer.data, full.astype(np.float32))
    assert tuple(layer.scale) == (2.0, 2.0) and tuple(layer.translate) == (10.0, 20.0)
    assert tuple(layer.contrast_limits) == (0.0, 1.0) and layer.colormap.name == "magma"
    assert w.last_results["map"]["candidate"] == "bicubic"
    assert w.last_results["map"]["value"] == w.last_results["metrics"]["bicubic"]["essim"]


def test_ssim_map_of_best_candidate(setup, qtbot):
    viewer, w = setup
    w.map_combo.setCurrentText("SSIM map")
    w.run()
    wait_done(qtbot, w)
    scores = w.last_results["metrics"]
    best = max(scores, key=lambda k: scores[k]["ssim"])
    assert w.last_results["map"]["candidate"] == best and "hr_ssim_map" in viewer.layers


def test_csv_export_and_copy(setup, qtbot, tmp_path):
    viewer, w = setup
    w.run()
    wait_done(qtbot, w)
    path = w.save_csv(tmp_path / "table.csv")
    text = path.read_text()
    assert text == evaluation.table_to_csv(w.last_results["metrics"])
    assert text.splitlines()[0] == "method,psnr,ssim,essim" and len(text.splitlines()) == 4
    w.copy_btn.click()
    clip = QApplication.clipboard().text()
    assert clip.splitlines()[0] == "method\tpsnr\tssim\tessim" and clip.splitlines()[2].startswith("bicubic\t")
    QApplication.clipboard().setText("")
    w.table.setFocus()
    qtbot.keyClick(w.table, Qt.Key_C, Qt.ControlModifier)
    assert QApplication.clipboard().text() == clip


def test_pickers_follow_layer_list(setup):
    viewer, w = setup
    viewer.add_image(np.zeros((128, 128), np.uint8), name="extra")
    assert w.gt_combo.findText("extra") >= 0 and w.lr_combo.findText("extra") >= 0
    assert any(w.cand_list.item(i).text() == "extra" for i in range(w.cand_list.count()))
    w.mode_cand.setChecked(True)
    w.set_candidates(["extra"])
    viewer.layers["extra"].name = "renamed"
    assert w.gt_combo.findText("renamed") >= 0 and w.gt_combo.findText("extra") < 0
    assert [lyr.name for lyr in w.candidate_layers()] == ["renamed"]  # still checked after the rename
    assert w.gt_combo.currentText() == "hr"  # selection kept
    viewer.layers.remove("renamed")
    assert w.gt_combo.findText("renamed") < 0 and w.candidate_layers() == []
    viewer.layers.remove("lr")
    assert w.lr_combo.findText("lr") < 0


def test_rgb_and_3d_layers_rejected_with_message(setup, qtbot):
    viewer, w = setup
    viewer.add_image(np.zeros((128, 128, 3), np.uint8), name="colour", rgb=True)
    viewer.add_image(np.zeros((4, 128, 128), np.uint8), name="stack")
    assert w.gt_combo.findText("colour") < 0 and w.lr_combo.findText("colour") < 0
    assert w.gt_combo.findText("stack") < 0
    items = {w.cand_list.item(i).text(): w.cand_list.item(i) for i in range(w.cand_list.count())}
    rgb_item = next(it for t, it in items.items() if t.startswith("colour"))
    assert "RGB" in rgb_item.text() and not (rgb_item.flags() & Qt.ItemIsEnabled)
    assert "'colour' (RGB" in w.invalid_note.text() and "'stack' (3-D" in w.invalid_note.text()
    w.mode_cand.setChecked(True)
    w.set_candidates(["colour", "stack"])  # cannot be checked
    assert w.candidate_layers() == []
    w.run()
    assert w.runner.state is State.FAILED and "check at least one candidate" in w.status.text()
    assert "colour" in viewer.layers and viewer.layers["colour"].rgb


def test_output_name_clash_refused(setup, qtbot):
    viewer, w = setup
    viewer.add_image(np.zeros((128, 128)), name="hr_ssim_map")
    w.mode_cand.setChecked(True)
    w.set_candidates(["hr_ssim_map"])
    w.map_combo.setCurrentText("SSIM map")
    w.run()
    assert w.runner.state is State.FAILED and "would replace an input layer" in w.status.text()


def test_cancel_stops_and_adds_nothing(setup, qtbot, monkeypatch):
    viewer, w = setup
    gate = threading.Event()
    real = evaluation.evaluate_baselines

    def slow(*a, **k):
        gate.wait(5)
        return real(*a, **k)

    monkeypatch.setattr(evaluation, "evaluate_baselines", slow)
    w.run()
    assert w.cancel_btn.isEnabled() and not w.progress_bar.isHidden()
    w.cancel_btn.click()
    gate.set()
    wait_done(qtbot, w)
    assert w.runner.state is State.STOPPED and "stopped" in w.status.text()
    assert "lr_nearest" not in viewer.layers and w.last_results is None
    assert w.run_btn.isEnabled() and w.progress_bar.isHidden()


def test_scale_inferred_from_sizes(make_napari_viewer, hr, lr):
    viewer = make_napari_viewer()
    viewer.add_image(hr, name="hr")
    viewer.add_image(lr[:, :16].copy(), name="lr_half")  # 32×16: sizes disagree, no inference
    w = CompareWidget(viewer)
    assert w.scale_hint.text() == ""
    viewer.add_image(downsample(hr, 2), name="lr2")
    w.lr_combo.setCurrentText("lr2")
    assert w.scale_spin.value() == 2 and "image sizes" in w.scale_hint.text()


def test_every_control_has_a_tooltip(setup):
    from qtpy.QtWidgets import QAbstractButton, QAbstractSpinBox, QComboBox, QListWidget, QTableWidget

    _, w = setup
    kinds = (QAbstractButton, QAbstractSpinBox, QComboBox, QListWidget, QTableWidget, QProgressBar)
    controls = [c for c in w.findChildren(object) if isinstance(c, kinds) and c.parent() is not w.table]  # not Qt's corner button
    assert len(controls) >= 12
    assert all(c.toolTip() for c in controls), [c for c in controls if not c.toolTip()]


# ------------------------------------------------------------------------------------ the runner alone
def _job_steps(n, cancel=None):
    for i in range(n):
        if cancel.is_set():
            return "partial"
        yield {"step": i, "total": n, "message": f"step {i}"}
        time.sleep(0.01)
    return "all"


def test_runner_states_and_errors(qtbot):
    bar, plabel, status = QProgressBar(), QLabel(), QLabel()
    runner = TaskRunner(bar, plabel, status, notify=False)
    states, results, records = [], [], []
    runner.state_changed.connect(states.append)
    runner.start(_job_steps, 3, on_returned=results.append, on_yielded=records.append)
    qtbot.waitUntil(lambda: runner.state is State.DONE, timeout=5000)
    assert results == ["all"] and [r["step"] for r in records] == [0, 1, 2]
    assert states == [State.RUNNING, State.DONE]

    def bad_input(cancel=None):
        raise InputError("image too small")

    runner.start(bad_input)
    qtbot.waitUntil(lambda: runner.state is State.FAILED, timeout=5000)
    assert status.text() == "image too small" and runner.last_error == "image too small"

    def bug(cancel=None):
        yield {"message": "about to fail"}
        raise ZeroDivisionError("oops")

    runner.start(bug)
    qtbot.waitUntil(lambda: runner.state is State.FAILED, timeout=5000)
    assert "ZeroDivisionError" in status.text() and "log" in status.text()


def test_runner_stop_waits_for_thread(qtbot):
    runner = TaskRunner(notify=False)
    started = threading.Event()

    def long(cancel=None):
        started.set()
        while not cancel.is_set():
            time.sleep(0.01)
        return "stopped early"

    runner.start(long)
    assert started.wait(5)
    assert runner.stop(timeout=5)  # sets the cancel event, joins the thread
    assert runner.state is State.STOPPED


def test_closing_the_viewer_stops_the_worker(make_napari_viewer, hr, lr, monkeypatch):
    viewer = make_napari_viewer()
    viewer.add_image(hr, name="hr")
    viewer.add_image(lr, name="lr")
    w = CompareWidget(viewer)
    viewer.window.add_dock_widget(w)
    started = threading.Event()

    def stuck(*a, cancel=None, **k):
        started.set()
        while not cancel.is_set():  # a job that only stops when cancelled
            time.sleep(0.01)
        yield {"message": "cancelled"}

    monkeypatch.setattr("matrestore._widgets.compare.compare_job", stuck)
    w.run()
    assert started.wait(5)
    finished = w.runner._finished
    viewer.close()
    assert finished.is_set()  # stopped and joined before the window went away


def test_a_failed_run_clears_the_previous_table(setup, qtbot):
    viewer, w = setup
    w.mode_lr.setChecked(True)
    w.run()
    wait_done(qtbot, w)
    assert w.table.rowCount() == 3 and w.last_results is not None
    w.scale_spin.setValue(3)  # 32 × 3 does not fit the 128 px ground truth: the run fails
    w.run()
    wait_done(qtbot, w)
    assert w.runner.state is State.FAILED and "does not match" in w.status.text()
    assert w.table.rowCount() == 0 and w.last_results is None  # no stale numbers under the error


def test_auto_data_range_shows_the_value_in_use(setup):
    viewer, w = setup
    viewer.add_image((np.asarray(viewer.layers["hr"].data).astype(np.uint16) * 257), name="hr16",
                     scale=(2.0, 2.0))
    w.gt_combo.setCurrentText("hr16")
    w.range_auto.setChecked(True)
    w._sync_range()
    assert "L = 65535" in w.range_label.text()
    assert w.range_spin.value() == 65535 and not w.range_spin.isEnabled()  # the box shows what is used
    w.gt_combo.setCurrentText("hr")
    w._sync_range()
    assert w.range_spin.value() == 255
