"""The "LabDCT: train" widget: a tiny run on a small real-like stack (backgrounds extracted, loss plot,
validation table, preview layers), cancel -> checkpoint -> resume, save -> the Clean widget's model."""

import numpy as np
import pytest

from matrestore._widgets._settings import qsettings
from matrestore._widgets._worker import State
from matrestore._widgets.labdct_train import CLEAN_GROUP, PREVIEW_LAYERS, LabdctTrainWidget, train_job
from matrestore.labdct import load_model
from matrestore.progress import Kind
from _util import assert_unchanged, snapshot
from _util import run_and_wait as _run_and_wait
from _util import wait_done

TIMEOUT = 90000
TINY = {"preset": "tiny", "steps": 6, "batch": 2, "lr": 3e-3, "val_every": 3, "scenes": 1, "scene_frames": 3,
        "val_scenes": 1, "scene_size": 64, "patch": 32, "seed": 0}


def real_like_stack(n=6, size=64, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    bg = 200 * (0.6 + 0.3 * np.cos(3 * xx + 2 * yy))
    out = []
    for k in range(n):
        f = rng.poisson(bg).astype(np.float32)
        r, c = 10 + 7 * k, 50 - 6 * k
        f[r - 1:r + 2, c - 1:c + 2] += 300
        out.append(f)
    return np.stack(out)


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def setup(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    lyr = viewer.add_image(real_like_stack(), name="real", scale=(1.0, 3.0, 3.0))
    viewer.add_image(np.ones((16, 16), np.float32), name="flat2d")  # 2-D: not offered
    w = LabdctTrainWidget(viewer)
    viewer.window.add_dock_widget(w)
    for k, v in TINY.items():
        w.options.set_value(k, v)
    w.window_spin.setValue(5)
    w.out_folder.setText(str(tmp_path / "runs"))
    return viewer, w, lyr


def test_train_job_without_qt(tmp_path):
    gen = train_job(real_like_stack(), out_dir=tmp_path / "r", options=TINY, window=5)
    kinds = []
    while True:
        try:
            kinds.append(next(gen).get("kind"))
        except StopIteration as stop:
            res = stop.value
            break
    assert Kind.EPOCH in kinds and Kind.PREVIEW in kinds
    assert res["i_bg"].shape == (6, 64, 64) and 0 <= res["i_bg"].min() and res["i_bg"].max() <= 1
    assert load_model(res["best"]).cfg.preset == "tiny"


def test_train_previews_save_and_use_in_clean(qtbot, setup, tmp_path):
    viewer, w, lyr = setup
    assert [w.stack_combo.itemText(i) for i in range(w.stack_combo.count())] == ["real"]
    snap = snapshot(lyr)
    assert _run_and_wait(qtbot, w, TIMEOUT) is State.DONE, w.status.text()
    assert_unchanged(lyr, snap)
    assert w.loss_plot.n_points() >= 6 and w.val_table.rowCount() == 2
    pv = w.preview_layers()
    assert set(pv) == set(PREVIEW_LAYERS) and pv["input"].data.shape == (32, 32)
    assert tuple(pv["input"].scale) == (3.0, 3.0)
    assert "Best validation spot F1" in w.status.text()
    dst = w.save_model(tmp_path / "mine")
    assert dst.name == "mine.safetensors" and load_model(dst).cfg.preset == "tiny"
    s = qsettings()
    assert s.value(f"{CLEAN_GROUP}/model_path") == str(dst)
    from matrestore._widgets import labdct  # the Clean widget opened now takes the saved model

    cw = labdct.CleanWidget(viewer)
    assert cw.model_spec() == str(dst) and cw.method() == "network"


def test_cancel_keeps_checkpoint_and_resume_finishes(qtbot, setup):
    viewer, w, lyr = setup
    w.options.set_value("steps", 400)
    w.options.set_value("val_every", 2)

    show = w._on_record

    def stop_after_a_validation(rec):
        show(rec)
        if isinstance(rec, dict) and rec.get("kind") == Kind.EPOCH:
            w.cancel()

    w._on_record = stop_after_a_validation  # bound when the run starts
    w.run()
    wait_done(qtbot, w, TIMEOUT)
    assert w.runner.state is State.STOPPED
    assert (w.run_dir / "checkpoint.pt").is_file() and w.resume_btn.isEnabled()
    stopped_at = w.current.progress["step"]
    assert stopped_at < 400
    w.current.job["options"]["steps"] = stopped_at + 2  # resume shortens the run's schedule
    w._on_record = show
    w.resume()
    wait_done(qtbot, w, TIMEOUT)
    assert w.runner.state in (State.DONE, State.STOPPED)
    assert w.current.progress["step"] > stopped_at


def test_bad_input_red_message(qtbot, make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.ones((16, 16), np.float32), name="flat2d")
    w = LabdctTrainWidget(viewer)
    viewer.window.add_dock_widget(w)
    assert _run_and_wait(qtbot, w, TIMEOUT) is State.FAILED
    assert "real projection stack" in w.status.text() and "ff6060" in w.status.styleSheet()


def test_grain_sizes_reach_the_engine_and_are_checked(qtbot, setup):
    viewer, w, lyr = setup
    w.options.set_value("grain_min_um", 300.0)
    w.options.set_value("grain_max_um", 100.0)
    assert _run_and_wait(qtbot, w, TIMEOUT) is State.FAILED
    assert "grain sizes" in w.status.text() and "ff6060" in w.status.styleSheet()
    from matrestore.labdct.data import default_scenes

    specs = default_scenes(6, grain_mm=(0.1, 0.12))
    assert all(0.1 <= s.grain_size_mm <= 0.12 for s in specs)


def test_opened_from_the_plugins_menu(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(real_like_stack(), name="real")
    _, w = viewer.window.add_plugin_dock_widget("napari-matrestore", "LabDCT: train")
    assert type(w.viewer).__name__ == "PublicOnlyProxy" and w.stack_combo.layer().name == "real"
