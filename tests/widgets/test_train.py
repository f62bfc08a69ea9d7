"""Train / fine-tune widget: runs, progress, live plot and previews, cancel + checkpoint, save, fine-tune,
LR/HR pairs with their offsets, bad inputs, remembered settings. Tiny configurations: seconds per run."""


import numpy as np
import pytest
from qtpy.QtWidgets import QAbstractButton, QComboBox, QFileDialog, QLineEdit, QListWidget

from matrestore._widgets._worker import State
from matrestore._widgets.rescan import ROLE_KEY
from matrestore._widgets.train import TrainWidget, train_job
from matrestore.degrade import downsample
from _util import assert_unchanged, snapshot
from _util import run_and_wait as _run_and_wait
from _util import wait_done as _wait_done

TIMEOUT = 60000


def wait_done(qtbot, w):
    _wait_done(qtbot, w, TIMEOUT)


def run_and_wait(qtbot, w):
    return _run_and_wait(qtbot, w, TIMEOUT)
TINY = dict(batch=2, patch=8, cell=16)


@pytest.fixture(scope="module", autouse=True)
def _few_threads():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core machine: more threads only spin
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def images():
    from skimage import data

    cam = data.camera().astype(np.float32)
    return {"hr": np.ascontiguousarray(cam[240:368, 200:328]),  # 128×128, textured: 4 cells of 16 LR px
            "ref": np.ascontiguousarray(cam[40:104, 330:394])}


def configure(w, epochs=2, steps=2, base="new"):
    if base == "new":
        w.set_base("new", preset="tiny")
    else:
        w.set_base(base)
    w.epochs_spin.setValue(epochs)
    w.steps_spin.setValue(steps)
    w.schedule_combo.setCurrentText("two phases (paper)")  # the paper's schedule (the default is reconstruction)
    w.batch_spin.setValue(TINY["batch"])
    w.patch_spin.setValue(TINY["patch"])
    w.cell_spin.setValue(TINY["cell"])


@pytest.fixture
def setup(make_napari_viewer, images):
    viewer = make_napari_viewer()
    viewer.add_image(images["hr"], name="hr", scale=(2.0, 2.0), translate=(10.0, 20.0), metadata={"unit": "nm"})
    w = TrainWidget(viewer)
    viewer.window.add_dock_widget(w)
    configure(w)
    w.set_hr_layers(["hr"])
    return viewer, w


def test_previews_are_placed_right_of_every_user_layer(setup, qtbot):
    viewer, w = setup
    # a second image to the right of the training image (as SEM_010 lay beside SEM_003)
    viewer.add_image(np.zeros((64, 300), np.float32), name="beside", scale=(2.0, 2.0), translate=(10.0, 400.0))
    assert run_and_wait(qtbot, w) is State.DONE, w.status.text()
    pv = w.preview_layers()
    beside_right = 400.0 + 300 * 2.0
    for layer in pv.values():
        assert layer.extent.world[0][-1] >= beside_right  # no preview over a user layer


def test_training_runs_with_progress_plot_metrics_and_previews(setup, qtbot):
    viewer, w = setup
    snaps = {lyr.name: snapshot(lyr) for lyr in viewer.layers}
    assert run_and_wait(qtbot, w) is State.DONE, w.status.text()
    # epoch and step progress
    assert w.progress_bar.maximum() == 4 and w.progress_bar.value() == 4
    assert w.epoch_bar.maximum() == 2 and w.epoch_bar.value() == 2 and w.epoch_bar.isVisibleTo(w)
    assert w.progress["step"] == 4 and w.progress["epoch"] == 2
    # live loss plot: total and reconstruction loss of every step, phase 2 marked after epoch 1
    assert len(w.loss_plot.series["total"]) == 4 and len(w.loss_plot.series["rec"]) == 4
    assert w.loss_plot.marks == [(2, "phase 2")]
    # validation metrics: bicubic row + one row per epoch, the best in bold
    t = w.val_table
    assert t.rowCount() == 3 and t.item(0, 0).text() == "bicubic"
    assert [t.item(r, 0).text() for r in (1, 2)] == ["1", "2"]
    assert any(t.item(r, 1).font().bold() for r in (1, 2))
    assert float(t.item(2, 1).text()) > 10 and "dB" in t.item(2, 4).text()
    assert "Done" in w.status.text() and "Best: epoch" in w.status.text()
    # preview layers: LR (16 px, ×4 pixel size), SR and HR (64 px), to the right of the source, in a row
    pv = w.preview_layers()
    assert set(pv) == {"lr", "sr", "hr"}
    assert pv["lr"].data.shape == (16, 16) and pv["sr"].data.shape == pv["hr"].data.shape == (64, 64)
    assert tuple(pv["lr"].scale) == (8.0, 8.0) and tuple(pv["sr"].scale) == (2.0, 2.0)
    assert pv["sr"].translate[1] > 20.0 + 128 * 2.0 and pv["hr"].translate[1] > pv["sr"].translate[1]
    from matrestore.baselines import upsampled_geometry

    x0 = 20.0 + (128 + 8) * 2.0  # right of the source, an 8 px gap
    assert tuple(pv["sr"].translate) == pytest.approx((10.0, x0 + 72 * 2.0))
    assert tuple(pv["hr"].translate) == pytest.approx((10.0, x0 + 2 * 72 * 2.0))
    # the LR preview covers the same area as the 64 px SR/HR previews would in the first column
    sr_scale, sr_translate = upsampled_geometry(tuple(pv["lr"].scale), tuple(pv["lr"].translate), 4)
    assert sr_scale == pytest.approx((2.0, 2.0)) and sr_translate == pytest.approx((10.0, x0))
    assert pv["sr"].metadata["matrestore"]["made_by"] == "train preview"
    assert np.all(np.isfinite(pv["sr"].data)) and not np.array_equal(pv["sr"].data, pv["hr"].data)
    # the preview layers are not offered as training data
    listed = [w.hr_list.item(i).text() for i in range(w.hr_list.count())]
    assert listed == ["hr"] and w.ref_list.count() == 1
    assert w.save_btn.isEnabled() and not w.resume_btn.isEnabled() and w.model_file().name == "best.safetensors"
    for name, snap in snaps.items():
        assert_unchanged(viewer.layers[name], snap)

    # a second run updates the same preview layers in place: no new layers
    n = len(viewer.layers)
    first_sr = np.array(pv["sr"].data)
    w.seed_spin.setValue(1)
    assert run_and_wait(qtbot, w) is State.DONE, w.status.text()
    assert len(viewer.layers) == n
    pv2 = w.preview_layers()
    assert all(pv2[k] is pv[k] for k in pv)
    assert not np.array_equal(pv2["sr"].data, first_sr)
    assert len(w.loss_plot.series["total"]) == 4 and w.val_table.rowCount() == 3  # cleared for the new run
    for name, snap in snaps.items():
        assert_unchanged(viewer.layers[name], snap)


def test_cancel_keeps_checkpoint_then_resume_and_save(setup, qtbot, monkeypatch, tmp_path):
    from matrestore.sr import load_model

    viewer, w = setup
    configure(w, epochs=20, steps=5)
    w.run()
    qtbot.waitUntil(lambda: w.progress_bar.value() >= 2, timeout=TIMEOUT)
    w.cancel()
    wait_done(qtbot, w)
    assert w.runner.state is State.STOPPED
    assert "Stopped" in w.status.text() and "Resume" in w.status.text()
    assert (w.run_dir / "checkpoint.pt").is_file() and (w.run_dir / "last.safetensors").is_file()
    assert w.progress["step"] < 100 and w.run_btn.isEnabled() and not w.cancel_btn.isEnabled()
    assert w.resume_btn.isEnabled() and w.save_btn.isEnabled()
    stopped_at = w.progress["step"]

    # Save: a loadable model file, its path shown
    target = tmp_path / "out" / "my_model"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), "Model files (*.safetensors)"))
    w.save_btn.click()
    saved = tmp_path / "out" / "my_model.safetensors"
    assert w.saved_path == saved and saved.is_file() and str(saved) in w.saved_label.text()
    m = load_model(saved)
    assert m.cfg.preset == "tiny"

    # Resume continues from the checkpoint
    w.epochs_spin.setValue(1)  # the settings of the stopped run are kept for Resume, not the widget's new ones
    w.resume()
    qtbot.waitUntil(lambda: w.progress.get("step", 0) >= stopped_at + 1, timeout=TIMEOUT)
    w.cancel()
    wait_done(qtbot, w)
    assert w.runner.state is State.STOPPED and w.progress["total"] == 100
    assert len(w.loss_plot.series["total"]) >= stopped_at + 1  # the plot goes on


def test_save_never_overwrites_the_base_model(setup, qtbot, tmp_path):
    from matrestore import sr

    viewer, w = setup
    base = sr.save_model(sr.build_model("tiny", seed=3), tmp_path / "base.safetensors")
    before = base.read_bytes()
    w.set_base("file", base)
    w.epochs_spin.setValue(1)
    w.steps_spin.setValue(1)
    assert run_and_wait(qtbot, w) is State.DONE, w.status.text()
    assert w.save_model(base) is None
    assert w.runner.state is State.FAILED and "never overwritten" in w.status.text()
    assert base.read_bytes() == before
    assert "fine-tuned" in sr.load_model(w.model_file()).meta["lte_init"]


def test_fine_tune_the_default_model_one_step(setup, qtbot):
    from matrestore.sr import load_model
    from matrestore.sr.modelio import DEFAULT_MODEL

    if not DEFAULT_MODEL.is_file():
        pytest.skip("no default model installed")
    viewer, w = setup
    configure(w, epochs=1, steps=1, base="default")
    assert not w.preset_combo.isEnabled() and "default" in w.model_note.text()
    assert run_and_wait(qtbot, w) is State.DONE, w.status.text()
    m = load_model(w.model_file())
    assert m.cfg.preset == load_model("default").cfg.preset
    assert "fine-tuned" in m.meta["lte_init"] and "bundled default" in w.status.text()
    assert w.preview_layers()["sr"].data.shape == (64, 64)


def test_lr_hr_pairs_are_realigned_and_offsets_shown(make_napari_viewer, qtbot, images):
    from skimage import data

    viewer = make_napari_viewer()
    cam = data.camera().astype(np.float32)
    hr = np.ascontiguousarray(cam[200:344, 180:324])  # 144×144
    lr = downsample(np.ascontiguousarray(cam[203:347, 185:329]), 4)  # 36×36; the LR scan drifted by (3, 5) HR px
    viewer.add_image(lr, name="lr_scan")
    viewer.add_image(hr, name="hr_scan")
    w = TrainWidget(viewer)
    viewer.window.add_dock_widget(w)
    configure(w, epochs=1, steps=1)
    w.add_pair("lr_scan", "hr_scan")
    assert w.mode_pairs.isChecked() and w.pair_box.isVisibleTo(w) and not w.hr_list.isVisibleTo(w)
    assert w.pair_table.rowCount() == 1 and "when training starts" in w.pair_table.item(0, 2).text()
    assert run_and_wait(qtbot, w) is State.DONE, w.status.text()
    a = w.alignment[0]
    assert a["layers"] == ("lr_scan", "hr_scan") and a["cells"] == 4
    assert (a["dy"], a["dx"]) == (3, 5)
    assert "(+3, +5)" in w.pair_table.item(0, 2).text()
    assert w.preview_layers()["hr"].data.shape == (64, 64)


BAD = {"rgb": "RGB", "nan": "NaN", "small": "too small", "labels": "Labels layer", "none": "no training images",
       "pair_labels": "Labels layer", "ref_is_data": "also training data", "missing_model": "not found",
       "bad_pair_size": "about 4×", "patch_over_cell": "must not be larger"}


def _make_bad(case, viewer, w, mp, images, tmp_path):
    if case == "rgb":
        viewer.add_image(np.zeros((128, 128, 3), np.uint8), name="rgb", rgb=True)
        texts = [w.hr_list.item(i).text() for i in range(w.hr_list.count())]
        idx = texts.index("rgb  (RGB: convert it to greyscale first)")
        assert not w.hr_list.item(idx).flags()  # offered greyed out, with the reason
        mp.setattr(w, "hr_layers", lambda: [viewer.layers["rgb"]])  # forced past the picker: still refused
    elif case == "nan":
        bad = images["hr"].copy()
        bad[3, 4] = np.nan
        viewer.add_image(bad, name="nan_layer")
        w.set_hr_layers(["nan_layer"])
    elif case == "small":
        viewer.add_image(images["hr"][:40, :40], name="small")
        w.set_hr_layers(["small"])
    elif case == "labels":
        viewer.add_labels(np.zeros((128, 128), int), name="labels")
        mp.setattr(w, "hr_layers", lambda: [viewer.layers["labels"]])
    elif case == "none":
        w.set_hr_layers([])
    elif case == "pair_labels":
        viewer.add_labels(np.zeros((32, 32), int), name="labels")
        w.add_pair("labels", "hr")
    elif case == "ref_is_data":
        w.set_references(["hr"])
    elif case == "missing_model":
        w.set_base("file", tmp_path / "nothing.safetensors")
        assert "not found" in w.model_note.text()
    elif case == "bad_pair_size":
        viewer.add_image(images["hr"][:64, :64], name="lr_wrong")
        w.add_pair("lr_wrong", "hr")
    elif case == "patch_over_cell":
        w.patch_spin.setValue(32)


def test_bad_inputs_give_a_message_and_start_nothing(setup, qtbot, monkeypatch, images, tmp_path):
    viewer, w = setup  # one viewer for every case (a viewer per case would double the test time)
    base_layers = [lyr.name for lyr in viewer.layers]
    for case, expect in BAD.items():
        with monkeypatch.context() as mp:
            _make_bad(case, viewer, w, mp, images, tmp_path)
            snaps = {lyr.name: snapshot(lyr) for lyr in viewer.layers}
            n = len(viewer.layers)
            assert run_and_wait(qtbot, w) is State.FAILED, case
            assert expect in w.status.text() and "ff6060" in w.status.styleSheet(), (case, w.status.text())
            assert "Traceback" not in w.status.text()
            assert w.run_dir is None and len(viewer.layers) == n and not w.preview_layers(), case
            assert w.run_btn.isEnabled() and not w.save_btn.isEnabled()
            for name, snap in snaps.items():
                assert_unchanged(viewer.layers[name], snap)
        for name in [lyr.name for lyr in viewer.layers if lyr.name not in base_layers]:
            viewer.layers.remove(name)
        w._pairs.clear()
        w.mode_hr.setChecked(True)
        w.set_hr_layers(["hr"])
        w.set_references([])
        configure(w)
    assert run_and_wait(qtbot, w) is State.DONE, w.status.text()  # and the fixed inputs train


def test_settings_are_remembered_and_restore_defaults(setup, make_napari_viewer):
    viewer, w = setup
    from matrestore.sr.train import FINE_TUNE

    w.epochs_spin.setValue(7)
    w.schedule_combo.setCurrentText("all losses from the start")
    w.cell_spin.setValue(24)
    w2 = TrainWidget(viewer)  # e.g. the next napari session
    assert w2.epochs_spin.value() == 7 and w2.cell_spin.value() == 24
    assert w2.schedule_combo.currentText() == "all losses from the start" and not w2.phase_spin.isEnabled()
    assert w2.base() == "new" and w2.preset_combo.currentText() == "tiny"
    assert w2.adv_from() == 0.0
    w2.restore_defaults()  # the ten-minute fine-tune of the bundled model (sr.train.FINE_TUNE)
    assert w2.epochs_spin.value() == FINE_TUNE["epochs"] and w2.steps_spin.value() == FINE_TUNE["steps_per_epoch"]
    assert w2.cell_spin.value() == 64 and w2.batch_spin.value() == 8
    assert w2.base() == "default" and w2.adv_from() == FINE_TUNE["adv_from"] and w2.mode_hr.isChecked()
    w3 = TrainWidget(viewer)
    assert w3.epochs_spin.value() == FINE_TUNE["epochs"] and w3.base() == "default"
    w2.close()
    w3.close()


def test_every_control_has_a_tooltip_and_device_is_shown(setup):
    _, w = setup
    from qtpy.QtWidgets import QAbstractItemView, QAbstractSpinBox

    kinds = (QAbstractButton, QComboBox, QLineEdit, QListWidget, QAbstractSpinBox)
    internal = (QAbstractSpinBox, QLineEdit, QAbstractItemView, QComboBox)  # spin box edits, clear buttons
    missing = [f"{type(c).__name__} {getattr(c, 'text', lambda: '')()}" for c in w.findChildren(kinds)
               if not c.toolTip() and not isinstance(c.parent(), internal)]
    assert not missing
    assert "auto →" in w.device_note.text() and w.device_combo.itemText(0) == "auto"
    assert not w.adv_box.isVisibleTo(w)
    w.adv_toggle.setChecked(True)
    assert w.adv_box.isVisibleTo(w)


def test_reference_layers_are_prechecked_and_used(setup, qtbot, images):
    viewer, w = setup
    viewer.add_image(images["ref"], name="ref", metadata={ROLE_KEY: "reference"})
    assert [lyr.name for lyr in w.reference_layers()] == ["ref"]
    w.epochs_spin.setValue(1)
    w.steps_spin.setValue(1)
    assert run_and_wait(qtbot, w) is State.DONE, w.status.text()


def test_close_stops_a_running_job(setup, qtbot, tmp_path):
    viewer, w = setup
    configure(w, epochs=50, steps=10)
    w.out_folder.setText(str(tmp_path / "runs"))
    w.run()
    qtbot.waitUntil(lambda: w.progress_bar.value() >= 1, timeout=TIMEOUT)
    w.close()
    assert w.runner.wait(30)
    assert w.runner.state is not State.RUNNING
    # the job ended through the engine's cancel branch: checkpoint and last model of the step reached
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1
    assert (runs[0] / "checkpoint.pt").is_file() and (runs[0] / "last.safetensors").is_file()


def test_train_job_without_qt(images, tmp_path):
    gen = train_job([images["hr"]], out_dir=tmp_path, options=dict(preset="tiny", epochs=1, steps_per_epoch=1,
                                                                   batch_size=2, patch=8, cell=16))
    recs = []
    try:
        while True:
            recs.append(next(gen))
    except StopIteration as stop:
        res = stop.value
    assert all("message" in r for r in recs)
    assert any("step 1/1" in r["message"] for r in recs if r.get("kind") == "step")
    assert res["status"] == "done" and res["device"].startswith(("CPU", "CUDA", "MPS")) and res["elapsed_s"] > 0
    ep = [r for r in recs if r.get("kind") == "epoch"][0]
    assert set(ep["preview"]) >= {"lr", "sr", "hr"}
    assert "preview" not in (tmp_path / "log.jsonl").read_text()
