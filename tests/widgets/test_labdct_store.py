"""The "LabDCT: clean spots" widget writing to an OME-Zarr store: forced for stacks above the size
threshold, the cleaned layer shown from the store's Zarr array, masks as a Labels layer, the spot table
equal to the in-memory run, export from the store."""

import numpy as np
import pytest
import zarr

from matrestore._layerdata import OUTPUT_KEY
from matrestore._widgets import _store
from matrestore._widgets._worker import State
from matrestore._widgets.labdct import CleanWidget, clean_job
from matrestore.progress import drive
from _util import run_and_wait
from test_labdct_widget import make_stack

TIMEOUT = 60000


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    import torch

    from matrestore import labdct

    torch.set_num_threads(1)
    torch.manual_seed(0)
    return labdct.save_model(labdct.build_model("tiny").eval(), tmp_path_factory.mktemp("m") / "tiny.safetensors")


def test_large_stack_goes_to_a_store_and_matches_the_in_memory_run(qtbot, make_napari_viewer, tiny_path, tmp_path,
                                                                    monkeypatch):
    import dask.array as da

    stack, _ = make_stack()
    ref = drive(clean_job(stack, model=str(tiny_path), omegas=None))
    monkeypatch.setattr(_store, "STORE_BYTES", 1000)  # this small stack counts as large
    viewer = make_napari_viewer()
    lyr = viewer.add_image(da.from_array(stack, chunks=(1, 48, 48)), name="frames", scale=(1.0, 2.0, 2.0),
                           metadata={"source": str(tmp_path / "frames.tif")})
    w = CleanWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.input_combo.setCurrentText("frames")
    w.set_method("network")
    w.set_model(tiny_path)
    w._sync_store()
    assert w.store_part.use.isChecked() and not w.store_part.use.isEnabled()
    assert w.store_part.path.text() == str(tmp_path / "frames_cleaned.zarr")
    assert run_and_wait(qtbot, w, TIMEOUT) is State.DONE, w.status.text()
    cl = viewer.layers["frames_cleaned"]
    assert isinstance(cl.data, zarr.Array)  # shown from the store, not a dask graph
    np.testing.assert_array_equal(np.asarray(cl.data[:]), ref["cleaned"])
    assert cl.metadata[OUTPUT_KEY]["store"].endswith("frames_cleaned.zarr")
    spots = viewer.layers["frames_spots"]
    np.testing.assert_array_equal(np.asarray(spots.data[:]) > 0, ref["labels"] > 0)
    assert w.spot_rows() == ref["rows"] and len(ref["rows"]) > 0
    files = w.export_tiffs(tmp_path / "export")
    assert len(files) == 2 * len(stack)
    # the standard routine goes to a store as well (its frames in counts), with the in-memory routine's masks
    w.set_method("routine")
    w.options.set_value("window", 5)  # 9 frames
    assert not w.output_box.isHidden() and w.model_box.isHidden() and w.store_part.use.isChecked()
    w.store_part.path.setText(str(tmp_path / "frames_routine.zarr"))
    ref_r = drive(clean_job(stack, method="routine", routine=w.routine_options(), omegas=None))
    assert run_and_wait(qtbot, w, TIMEOUT) is State.DONE, w.status.text()
    assert "(routine)" in w.status.text()
    cl = viewer.layers["frames_cleaned"]
    assert isinstance(cl.data, zarr.Array) and cl.metadata[OUTPUT_KEY]["method"] == "routine"
    np.testing.assert_allclose(np.clip(np.asarray(cl.data[:]), 0, None), ref_r["cleaned"])
    assert cl.contrast_limits[1] > 1.0  # counts, not the network's [0, 1]
    np.testing.assert_array_equal(np.asarray(viewer.layers["frames_spots"].data[:]) > 0, ref_r["labels"] > 0)
    assert w.spot_rows() == ref_r["rows"] and len(ref_r["rows"]) > 0
