import time

import numpy as np
import pytest
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QAbstractButton, QApplication, QComboBox, QLineEdit, QListWidget, QSpinBox

from matrestore import evaluation
from matrestore._widgets._worker import State
from matrestore._widgets.enhance import EnhanceWidget
from matrestore._widgets.rescan import ROLE_KEY
from matrestore.baselines import upsampled_geometry
from matrestore.degrade import downsample
from _util import assert_unchanged, snapshot
from _util import run_and_wait as _run_and_wait
from _util import wait_done as _wait_done

TIMEOUT = 60000


def wait_done(qtbot, w):
    _wait_done(qtbot, w, TIMEOUT)


def run_and_wait(qtbot, w):
    return _run_and_wait(qtbot, w, TIMEOUT)


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    import torch

    from matrestore import sr

    torch.set_num_threads(min(torch.get_num_threads(), 2))
    model = sr.build_model("tiny", seed=0)
    sr.measure_receptive_radius(model)  # stored in the file's config: no measuring in every test
    return sr.save_model(model, tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture(scope="module")
def images():
    from skimage import data

    cam = data.camera().astype(np.float32)
    hr = np.ascontiguousarray(cam[200:296, 200:296])  # 96×96 ground truth
    return {"hr": hr, "lr": downsample(hr, 4), "ref": np.ascontiguousarray(cam[20:84, 300:364])}  # 24×24, 64×64


@pytest.fixture
def setup(make_napari_viewer, images, tiny_path):
    viewer = make_napari_viewer()
    viewer.add_image(images["hr"], name="hr", scale=(2.0, 2.0), translate=(10.0, 20.0))
    viewer.add_image(images["ref"], name="ref", scale=(2.0, 2.0), metadata={ROLE_KEY: "reference"})
    viewer.add_image(images["lr"], name="lr", scale=(8.0, 8.0), translate=(13.0, 23.0),
                     metadata={"unit": "nm", "pixel_size_nm": 8.0})
    w = EnhanceWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.input_combo.setCurrentText("lr")
    w.set_model(tiny_path)
    return viewer, w


def test_pickers_follow_the_viewer_and_references_are_prechecked(setup, images):
    viewer, w = setup
    names = lambda c: [c.itemText(i) for i in range(c.count())]  # noqa: E731
    assert names(w.input_combo) == ["hr", "ref", "lr"]
    assert names(w.gt_combo) == ["(none)", "hr", "ref", "lr"] and w.gt_combo.currentText() == "(none)"
    assert [lyr.name for lyr in w.reference_layers()] == ["ref"]  # marked as reference: pre-checked
    viewer.add_image(np.zeros((16, 16, 3), np.uint8), name="rgb", rgb=True)
    viewer.add_labels(np.zeros((16, 16), int), name="labels")
    viewer.add_points([[1, 1]], name="points")
    viewer.add_image(images["ref"], name="rescan2", metadata={ROLE_KEY: "reference"})
    assert "rgb" not in names(w.input_combo) and "labels" not in names(w.input_combo)
    assert "points" not in names(w.gt_combo)
    assert "rgb" in w.invalid_note.text() and "RGB" in w.invalid_note.text()
    assert [lyr.name for lyr in w.reference_layers()] == ["ref", "rescan2"]
    assert w.input_combo.currentText() == "lr"  # the choice survives layer-list changes
    viewer.layers.remove("rescan2")
    assert [lyr.name for lyr in w.reference_layers()] == ["ref"]
    w.set_references([])
    viewer.add_image(images["hr"], name="another")
    assert w.reference_layers() == []  # an unchecked reference stays unchecked


def test_every_control_has_a_tooltip(setup):
    _, w = setup
    from qtpy.QtWidgets import QAbstractItemView

    kinds = (QAbstractButton, QComboBox, QLineEdit, QListWidget, QSpinBox)
    internal = (QSpinBox, QLineEdit, QAbstractItemView, QComboBox)  # spin box edits, clear buttons, table corner
    missing = [f"{type(c).__name__} {getattr(c, 'text', lambda: '')()}" for c in w.findChildren(kinds)
               if not c.toolTip() and not isinstance(c.parent(), internal)]
    assert not missing
    assert w.device_combo.itemText(0) == "auto" and "cpu" in [w.device_combo.itemText(i) for i in range(w.device_combo.count())]
    assert "auto →" in w.device_note.text()
    assert not w.adv_box.isVisibleTo(w)
    w.adv_toggle.setChecked(True)
    assert w.adv_box.isVisibleTo(w)


def test_enhance_adds_one_layer_then_updates_it(setup, qtbot, monkeypatch, images, tiny_path):
    from matrestore import sr

    viewer, w = setup
    snaps = {lyr.name: snapshot(lyr) for lyr in viewer.layers}
    n = len(viewer.layers)
    loads = []
    real_load = sr.load_model
    monkeypatch.setattr(sr, "load_model", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    assert run_and_wait(qtbot, w) is State.DONE, w.status.text()
    assert len(viewer.layers) == n + 1
    out = viewer.layers["lr_sr"]
    assert out.data.shape == (96, 96) and out.data.dtype == np.float32
    scale, translate = upsampled_geometry((8.0, 8.0), (13.0, 23.0), 4)
    assert tuple(out.scale) == pytest.approx(scale) and tuple(out.translate) == pytest.approx(translate)
    assert tuple(out.scale) == (2.0, 2.0) and tuple(out.translate) == pytest.approx((10.0, 20.0))  # overlays hr
    md = out.metadata
    assert md["unit"] == "nm" and md["pixel_size_nm"] == 2.0
    # napari's units exactly as the input's (pixels here: the test layer has none; nm from the reader), so
    # napari never finds "inconsistent units across layers"
    assert tuple(out.units) == tuple(viewer.layers["lr"].units)
    info = md["matrestore"]
    assert info["made_by"] == "enhance" and info["source"] == "lr" and info["model"] == str(tiny_path)
    assert info["model_meta"]["preset"] == "tiny" and info["references"] == ["ref"] and info["scale_factor"] == 4
    assert info["device"].startswith("CPU") and info["elapsed_s"] >= 0 and info["parameters"]["mode"] == "fast"
    assert "Done" in w.status.text() and not w.table_box.isVisibleTo(w)
    for name, snap in snaps.items():
        assert_unchanged(viewer.layers[name], snap)
    assert len(loads) == 1

    # second run, after moving the input: the same layer is updated (data, geometry), the model is not reloaded
    first = np.array(out.data)
    viewer.layers["lr"].translate = (5.0, 7.0)
    viewer.layers["lr"].data = images["lr"][::-1].copy()
    assert run_and_wait(qtbot, w) is State.DONE, w.status.text()
    assert len(viewer.layers) == n + 1 and viewer.layers["lr_sr"] is out
    assert tuple(out.translate) == pytest.approx(upsampled_geometry((8.0, 8.0), (5.0, 7.0), 4)[1])
    assert not np.allclose(out.data, first)
    assert len(loads) == 1 and w.model_cache["model"] is not None


def test_references_from_a_folder(setup, qtbot, tmp_path, images):
    import tifffile

    viewer, w = setup
    tifffile.imwrite(tmp_path / "r1.tif", images["ref"].astype(np.uint8))
    w.set_references([])
    w.ref_folder.setText(str(tmp_path))
    assert run_and_wait(qtbot, w) is State.DONE, w.status.text()
    assert viewer.layers["lr_sr"].metadata["matrestore"]["references"] == [f"folder {tmp_path}"]


def test_ground_truth_table(setup, qtbot, images):
    viewer, w = setup
    w.set_references(["hr", "ref"])
    assert [lyr.name for lyr in w.reference_layers()] == ["hr", "ref"]
    w.gt_combo.setCurrentText("hr")
    # the ground truth can no longer be a reference (it would show the scored field to the network)
    assert [lyr.name for lyr in w.reference_layers()] == ["ref"]
    assert "ground truth" in w.ref_list.item(0).text()
    snaps = {lyr.name: snapshot(lyr) for lyr in viewer.layers}
    assert run_and_wait(qtbot, w) is State.DONE, w.status.text()
    t = w.table
    assert t.rowCount() == 4 and w.table_box.isVisibleTo(w)
    assert [t.item(r, 0).text() for r in range(4)] == ["nearest", "bicubic", "lanczos", "ttsr"]
    sr_img = np.asarray(viewer.layers["lr_sr"].data)
    ref = evaluation.evaluate_baselines(images["hr"], lr=images["lr"], scale=4, extra={"ttsr": sr_img})["metrics"]
    assert w.last_results["metrics"] == ref
    for c, m in enumerate(("psnr", "ssim", "essim"), start=1):
        assert t.item(3, c).data(Qt.UserRole) == ref["ttsr"][m]
        best = max(ref, key=lambda k: ref[k][m])
        assert t.item(list(ref).index(best), c).font().bold()
    assert viewer.layers["lr_sr"].metadata["matrestore"]["metrics"]["ttsr"] == ref["ttsr"]
    w.copy_table()
    lines = QApplication.clipboard().text().splitlines()
    assert len(lines) == 5 and lines[0].split("\t") == ["method", "psnr", "ssim", "essim"]
    for name, snap in snaps.items():
        assert_unchanged(viewer.layers[name], snap)


def test_cancel_immediately(setup, qtbot, images):
    viewer, w = setup
    viewer.layers["lr"].data = np.tile(images["lr"], (4, 4))  # 96×96 in 32 px paper tiles: many batches
    w.mode_combo.setCurrentIndex(1)
    w.batch_spin.setValue(1)
    w.run()
    w.cancel()
    wait_done(qtbot, w)
    assert w.runner.state is State.STOPPED
    assert "lr_sr" not in viewer.layers and "stopped" in w.status.text()
    assert w.run_btn.isEnabled() and not w.cancel_btn.isEnabled()


def test_cancel_during_tiles_stops_within_a_batch(setup, qtbot, monkeypatch):
    from matrestore import sr

    viewer, w = setup
    seen = []

    from matrestore.sr.enhance import _tile_message

    def slow(lr, refs, model, cancel=None, **kw):  # the engine's contract: cancel checked between batches
        for i in range(200):
            if cancel.is_set():
                return None
            time.sleep(0.02)
            seen.append(i)
            yield {"step": i + 1, "total": 200, "phase": "tiles", "message": _tile_message(i + 1, 200, 0.02 * (i + 1)),
                   "elapsed_s": 0.02 * (i + 1)}
        return np.zeros((96, 96), np.float32)

    monkeypatch.setattr(sr, "enhance_iter", slow)
    w.run()
    qtbot.waitUntil(lambda: w.progress_bar.value() >= 3, timeout=TIMEOUT)
    assert "left" in w.progress_label.text()  # estimated time left
    w.cancel()
    wait_done(qtbot, w)
    assert w.runner.state is State.STOPPED and "lr_sr" not in viewer.layers
    n = len(seen)
    time.sleep(0.1)
    assert len(seen) == n < 200  # nothing computed after the cancel


@pytest.mark.parametrize("case", ["nan", "small", "no_refs", "missing_model", "corrupt_model", "no_default", "bad_folder"])
def test_bad_inputs_give_messages(setup, qtbot, monkeypatch, tmp_path, images, case):
    viewer, w = setup
    expect = {"nan": "NaN", "small": "too small", "no_refs": "no references", "missing_model": "not found",
              "corrupt_model": "not a readable", "no_default": "no default super-resolution model",
              "bad_folder": "folder not found"}[case]
    if case == "nan":
        bad = images["lr"].copy()
        bad[3, 4] = np.nan
        viewer.add_image(bad, name="nan_layer")
        w.input_combo.setCurrentText("nan_layer")
    elif case == "small":
        viewer.add_image(images["lr"][:4, :4], name="small")
        w.input_combo.setCurrentText("small")
    elif case == "no_refs":
        w.set_references([])
    elif case == "missing_model":
        w.set_model(tmp_path / "nothing.safetensors")
        assert "not found" in w.model_note.text()
    elif case == "corrupt_model":
        p = tmp_path / "corrupt.safetensors"
        p.write_bytes(b"not a model at all")
        w.set_model(p)
        assert "not a readable" in w.model_note.text()  # said before running
    elif case == "no_default":
        import matrestore.sr.modelio as modelio

        monkeypatch.setattr(modelio, "DEFAULT_MODEL", tmp_path / "missing" / "default.safetensors")
        w.set_model("default")
        assert "No default model" in w.model_note.text()
    elif case == "bad_folder":
        w.ref_folder.setText(str(tmp_path / "no_such_folder"))
    snaps = {lyr.name: snapshot(lyr) for lyr in viewer.layers}
    n = len(viewer.layers)
    state = run_and_wait(qtbot, w)
    assert state is State.FAILED
    assert expect in w.status.text() and "ff6060" in w.status.styleSheet()
    assert "Traceback" not in w.status.text()
    assert len(viewer.layers) == n
    for name, snap in snaps.items():
        assert_unchanged(viewer.layers[name], snap)


def test_model_note_describes_the_model(setup, tiny_path):
    from matrestore.sr.modelio import DEFAULT_MODEL

    _, w = setup
    assert "tiny preset" in w.model_note.text() and "×4" in w.model_note.text()  # from the file's metadata
    w.set_model("default")
    if DEFAULT_MODEL.is_file():
        assert w.model_note.text().startswith("default model installed: ")
        assert "preset" in w.model_note.text() and w.model_note.styleSheet() == ""
        assert "held-out micrographs" in w.model_note.text()  # the shipped model records its held-out figures


def test_model_note_prefers_held_out_figures(tmp_path):
    """A file with held-out figures shows them (what to expect on new images), else the validation gain."""
    from matrestore import sr
    from matrestore._widgets.enhance import describe_model_file

    model = sr.build_model("tiny", seed=0)
    val = {"validation": {"psnr_gain_db": 1.5}}
    p1 = sr.save_model(model, tmp_path / "a.safetensors", metrics=val)
    assert describe_model_file(p1).endswith("validation: +1.50 dB PSNR over bicubic")
    held = {"n": 3, "psnr_gain_db": 0.24, "essim_ratio": 1.156}
    p2 = sr.save_model(model, tmp_path / "b.safetensors", metrics={**val, "held_out": held})
    text = describe_model_file(p2)
    assert text.endswith("on 3 held-out micrographs: +0.24 dB PSNR, ESSIM ×1.16 vs bicubic") and "validation" not in text


def test_rgb_input_refused(setup, qtbot):
    viewer, w = setup
    viewer.add_image(np.zeros((32, 32, 3), np.uint8), name="rgb", rgb=True)
    assert "rgb" not in [w.input_combo.itemText(i) for i in range(w.input_combo.count())]
    w._input_choices.append(viewer.layers["rgb"])  # forced past the picker: still refused
    w.input_combo.addItem("rgb")
    w.input_combo.setCurrentText("rgb")
    assert run_and_wait(qtbot, w) is State.FAILED and "RGB" in w.status.text()


def test_close_stops_the_runner(setup, qtbot, monkeypatch):
    from matrestore import sr

    viewer, w = setup

    def slow(lr, refs, model, cancel=None, **kw):
        for i in range(500):
            if cancel.is_set():
                return None
            time.sleep(0.02)
            yield {"step": i + 1, "total": 500, "message": "tile"}
        return None

    monkeypatch.setattr(sr, "enhance_iter", slow)
    w.run()
    qtbot.waitUntil(lambda: w.progress_bar.value() >= 1, timeout=TIMEOUT)
    w.close()
    assert w.runner.wait(5)
    assert w.runner.state is not State.RUNNING


def test_uncertainty_map_layer_feeds_scan_enhance_rescan(setup, qtbot):
    from matrestore._widgets.rescan import RescanWidget

    viewer, w = setup
    w.unc_spin.setValue(2)
    assert run_and_wait(qtbot, w) is State.DONE, w.status.text()
    sr_layer, unc = viewer.layers["lr_sr"], viewer.layers["lr_sr_uncertainty"]
    assert unc.data.shape == sr_layer.data.shape
    assert tuple(unc.scale) == tuple(sr_layer.scale) and tuple(unc.translate) == tuple(sr_layer.translate)
    assert unc.data.min() >= 0 and float(unc.data.max()) > 0  # an untrained net is not rotation-equivariant
    assert "flips/rotations" in unc.metadata["matrestore"]["what"]
    # the ROI widget proposes regions where the enhancement is unsure
    r = RescanWidget(viewer)
    r.image_combo.setCurrentText("lr_sr")
    r.source_combo.setCurrentText("high values of a map layer (e.g. uncertainty)")
    r.map_combo.setCurrentText("lr_sr_uncertainty")
    r.min_size.setValue(2)
    r.margin.setValue(1)
    r.propose()
    qtbot.waitUntil(lambda: len(r.rois()) > 0, timeout=10000)
    assert 0 < r.last_stats["area_fraction"] < 1
