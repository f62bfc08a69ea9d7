"""Enhance widget, out of core: multiscale / Zarr-backed inputs and large outputs go to an OME-Zarr store
shown as a multiscale layer that fills in."""

import numpy as np
import pytest
import zarr

from matrestore import ngff
from matrestore._widgets._store import StoreOutputPart, default_store_path, needs_store
from matrestore._widgets._worker import State
from matrestore._widgets.enhance import EnhanceWidget
from matrestore._widgets.rescan import ROLE_KEY
from _util import assert_unchanged, snapshot
from _util import run_and_wait


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    import torch

    from matrestore import sr

    torch.set_num_threads(min(torch.get_num_threads(), 2))
    model = sr.build_model("tiny", seed=0)
    sr.measure_receptive_radius(model)
    return sr.save_model(model, tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture
def images():
    from skimage import data

    cam = data.camera()
    return {"lr": np.ascontiguousarray(cam[100:170, 150:230]), "ref": np.ascontiguousarray(cam[20:84, 300:364])}


def test_store_output_follows_the_input(make_napari_viewer, images, tmp_path):
    viewer = make_napari_viewer()
    small = viewer.add_image(images["lr"], name="small")
    assert needs_store(small, 4) is None
    lazy = viewer.add_image(zarr.array(images["lr"]), name="lazy")
    assert "not in memory" in needs_store(lazy, 4)
    multi = viewer.add_image([images["lr"], images["lr"][::2, ::2]], name="multi", multiscale=True,
                             metadata={"source": str(tmp_path / "scan.tif")})
    assert "multiscale" in needs_store(multi, 4)
    assert default_store_path(multi, "sr") == tmp_path / "scan_sr.zarr"
    part = StoreOutputPart("sr")
    part.sync(multi, 4)
    assert part.use.isChecked() and not part.use.isEnabled()  # forced on
    assert part.path.text() == str(tmp_path / "scan_sr.zarr")
    part.sync(small, 4)
    assert part.use.isEnabled() and part.path.text() == ""  # the default path followed the input
    part.path.setText("")
    part.use.setChecked(True)
    with pytest.raises(Exception, match="choose where to write"):
        part.values()


def test_enhance_a_multiscale_layer_into_a_store_equals_the_in_memory_result(make_napari_viewer, qtbot, images,
                                                                             tiny_path, tmp_path):
    from matrestore import sr

    viewer = make_napari_viewer()
    viewer.add_image(images["ref"], name="ref", metadata={ROLE_KEY: "reference"})
    lr = images["lr"]
    inp = viewer.add_image([lr, lr[::2, ::2]], name="scan", multiscale=True, scale=(8.0, 8.0),
                           contrast_limits=(0, 255))
    snap = [np.array(a) for a in inp.data]
    w = EnhanceWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.set_model(tiny_path)
    w.input_combo.setCurrentText("scan")
    assert w.input_combo.currentText() == "scan"  # multiscale layers are offered as inputs
    assert w.store_part.use.isChecked()
    assert run_and_wait(qtbot, w) == State.FAILED  # no file behind the layer: the user must pick a path
    assert "choose where to write" in w.status.text()
    w.store_part.path.setText(str(tmp_path / "out.zarr"))
    w.options.control("tile").setValue(40)
    assert run_and_wait(qtbot, w, 120000) == State.DONE, w.status.text()
    out = viewer.layers["scan_sr"]
    assert isinstance(out.data[0] if out.multiscale else out.data, zarr.Array)  # read from the store, not a graph
    assert tuple(out.contrast_limits) == (0, 255)
    assert tuple(out.scale) == pytest.approx((2.0, 2.0))
    expect = np.clip(np.rint(sr.enhance(lr, [images["ref"]], sr.load_model(str(tiny_path)), tile=40)), 0, 255)
    got = np.asarray((out.data[0] if out.multiscale else out.data)[:])
    np.testing.assert_array_equal(got, expect.astype(np.uint8))
    assert ngff.read_store(tmp_path / "out.zarr")["complete"] is True
    for a, b in zip(inp.data, snap):
        np.testing.assert_array_equal(np.asarray(a), b)  # the input is untouched
    assert "written to out.zarr" in w.status.text()
    # a rerun resumes the complete store (nothing to compute) and updates the same layer
    assert run_and_wait(qtbot, w, 60000) == State.DONE
    assert [lyr.name for lyr in viewer.layers].count("scan_sr") == 1


def test_store_refuses_ground_truth_and_the_input_store_itself(make_napari_viewer, qtbot, images, tiny_path, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(images["ref"], name="ref", metadata={ROLE_KEY: "reference"})
    inp = viewer.add_image(images["lr"], name="lr")
    viewer.add_image(np.zeros((280, 320), np.uint8), name="gt")
    w = EnhanceWidget(viewer)
    w.set_model(tiny_path)
    w.input_combo.setCurrentText("lr")
    w.store_part.use.setChecked(True)
    w.store_part.path.setText(str(tmp_path / "o.zarr"))
    w.gt_combo.setCurrentText("gt")
    assert run_and_wait(qtbot, w) == State.FAILED and "ground truth" in w.status.text()
    w.gt_combo.setCurrentText("(none)")
    inp.metadata = {**inp.metadata, "store": str(tmp_path / "o.zarr")}
    snap = snapshot(inp)
    assert run_and_wait(qtbot, w) == State.FAILED and "input's own store" in w.status.text()
    assert_unchanged(inp, snap)
    assert not (tmp_path / "o.zarr").exists()
