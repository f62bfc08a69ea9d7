"""The "LabDCT: clean spots" widget: network and routine on a tiny synthetic stack, live preview, spot table
(click -> frame), export, bad input, cancel, and opened as the Plugins menu opens it."""

import csv

import numpy as np
import pytest
import tifffile
from qtpy.QtCore import Qt

from matrestore._layerdata import OUTPUT_KEY
from matrestore._widgets._worker import State
from matrestore._widgets.labdct import CleanWidget, _camera, clean_job
from matrestore.labdct.routine import RoutineOptions, standard_routine
from matrestore.progress import Kind
from _util import assert_unchanged, snapshot
from _util import run_and_wait as _run_and_wait
from _util import wait_done as _wait_done

TIMEOUT = 60000
N, H, W = 9, 48, 48


def run_and_wait(qtbot, w):
    return _run_and_wait(qtbot, w, TIMEOUT)


def make_stack(n=N, seed=0):
    """A smooth background with 4 bright 3x3 spots per frame that move from frame to frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W] / H
    bg = 100 * (0.7 + 0.2 * np.sin(2 * np.pi * (xx + yy)))
    frames, truth = [], []
    for k in range(n):
        f = bg + rng.normal(0, 2.0, (H, W))
        m = np.zeros((H, W), bool)
        for j in range(4):
            r, c = 8 + (9 * j + 5 * k) % (H - 16), 8 + (13 * j + 7 * k) % (W - 16)
            f[r - 1:r + 2, c - 1:c + 2] += 90
            m[r - 1:r + 2, c - 1:c + 2] = True
        frames.append(f)
        truth.append(m)
    return np.stack(frames).astype(np.float32), np.stack(truth)


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    import torch

    from matrestore import labdct

    torch.set_num_threads(1)
    torch.manual_seed(0)
    return labdct.save_model(labdct.build_model("tiny").eval(), tmp_path_factory.mktemp("m") / "tiny.safetensors")


@pytest.fixture
def setup(make_napari_viewer, tiny_path):
    viewer = make_napari_viewer()
    stack, truth = make_stack()
    omegas = [180.0 - 3 * k for k in range(N)]
    lyr = viewer.add_image(stack, name="frames", scale=(1.0, 2.0, 2.0), translate=(0.0, 10.0, 20.0),
                           metadata={"omegas": omegas})
    w = CleanWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.input_combo.setCurrentText("frames")
    w.set_model(tiny_path)
    return viewer, w, lyr, truth


def routine(w, **kw):
    w.set_method("routine")
    o = {"window": 5, "beamstop": None, "sigma": 1.0, "percent": 50.0, "min_size": 3, **kw}
    for k, v in o.items():
        w.options.set_value(k, v)
    return RoutineOptions(**{**RoutineOptions().__dict__, **o})


def test_clean_job_without_qt_network_and_routine(tiny_path):
    stack, truth = make_stack()
    gen = clean_job(stack, method="network", model=str(tiny_path), name="s", omegas=list(range(N)))
    recs = []
    while True:
        try:
            recs.append(next(gen))
        except StopIteration as stop:
            res = stop.value
            break
    steps = [r for r in recs if r.get("kind") == Kind.STEP]
    assert len(steps) == N and "left" in steps[1]["message"]  # frames done and the time left
    assert res["cleaned"].shape == stack.shape and res["cleaned"].dtype == np.float32
    assert res["labels"].shape == stack.shape
    o = RoutineOptions(window=5, beamstop=None)
    gen = clean_job(stack, method="routine", routine=o, name="s", omegas=[float(k) for k in range(N)])
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        res = stop.value
    np.testing.assert_array_equal(res["labels"] > 0, standard_routine(stack, **o.kwargs()))
    import dask.array as da

    class Counting:  # a lazy (dask) layer is read frame by frame, never as a whole
        def __init__(self, a):
            self.a, self.shape, self.dtype, self.ndim, self.reads = a, a.shape, a.dtype, a.ndim, []

        def __getitem__(self, k):
            self.reads.append(k)
            return self.a[k]

    lazy = Counting(da.from_array(stack, chunks=(1, H, W)))
    gen = clean_job(lazy, method="routine", routine=o, name="s")
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        np.testing.assert_array_equal(stop.value["labels"], res["labels"])
    assert lazy.reads and all(isinstance(k, int) for k in lazy.reads)
    assert res["rows"] and all(r["omega"] == float(r["frame"]) for r in res["rows"])
    found = sum(truth[r["frame"], int(round(r["centroid_row"])), int(round(r["centroid_col"]))] for r in res["rows"])
    assert found >= 0.9 * 4 * N  # the planted spots are found


def test_routine_run_layers_table_and_rerun_in_place(qtbot, setup):
    viewer, w, lyr, truth = setup
    snap = snapshot(lyr)
    o = routine(w)
    assert run_and_wait(qtbot, w) is State.DONE, w.status.text()
    assert_unchanged(lyr, snap)
    cl, sp = viewer.layers["frames_cleaned"], viewer.layers["frames_spots"]
    assert type(sp).__name__ == "Labels"
    assert cl.data.shape == lyr.data.shape and tuple(cl.scale) == tuple(lyr.scale)
    assert tuple(sp.translate) == tuple(lyr.translate)
    assert cl.metadata[OUTPUT_KEY]["made_by"] == "labdct clean" and cl.metadata["omegas"] == lyr.metadata["omegas"]
    np.testing.assert_array_equal(np.asarray(sp.data) > 0, standard_routine(lyr.data, **o.kwargs()))
    rows = w.spot_rows()
    assert w.table_model.rowCount() == len(rows) > 0
    assert w.table_model.text(0, 2) != ""  # ω shown
    w.options.set_value("min_size", 20)  # no 3x3 spot survives
    assert run_and_wait(qtbot, w) is State.DONE
    assert sorted(lyr.name for lyr in viewer.layers if lyr.name != "frames_preview") == [
        "frames", "frames_cleaned", "frames_spots"]
    assert viewer.layers["frames_spots"].data.max() == 0  # updated in place
    assert w.table_model.rowCount() == 0


def test_network_run(qtbot, setup):
    viewer, w, lyr, truth = setup
    snap = snapshot(lyr)
    w.set_method("network")
    assert run_and_wait(qtbot, w) is State.DONE, w.status.text()
    assert_unchanged(lyr, snap)
    c = np.asarray(viewer.layers["frames_cleaned"].data)
    assert c.shape == lyr.data.shape and 0 <= c.min() and c.max() <= 1
    md = viewer.layers["frames_cleaned"].metadata[OUTPUT_KEY]
    assert md["method"] == "network" and md["model_meta"]["preset"] == "tiny"


def test_preview_follows_parameters_and_frame(qtbot, setup):
    viewer, w, lyr, truth = setup
    routine(w)
    k0 = w.current_frame()
    qtbot.waitUntil(lambda: "frames_preview" in viewer.layers and w.preview_frame == k0, timeout=TIMEOUT)
    k = 7 if k0 != 7 else 2
    w.set_frame(k)
    assert w.current_frame() == k
    qtbot.waitUntil(lambda: w.preview_frame == k, timeout=TIMEOUT)
    o = w.routine_options()
    expect = standard_routine(lyr.data, **o.kwargs())[k]
    qtbot.waitUntil(lambda: np.array_equal(np.asarray(viewer.layers["frames_preview"].data) > 0, expect), timeout=TIMEOUT)
    w.options.set_value("min_size", 20)
    qtbot.waitUntil(lambda: np.asarray(viewer.layers["frames_preview"].data).max() == 0, timeout=TIMEOUT)
    w.options.set_value("window", 31)  # more than the 9 frames: a red note, nothing else changes
    qtbot.waitUntil(lambda: "fewer than the rolling-median window" in w.preview_note.text(), timeout=TIMEOUT)


def test_table_click_jumps_to_frame_and_spot(qtbot, setup):
    viewer, w, lyr, truth = setup
    routine(w)
    assert run_and_wait(qtbot, w) is State.DONE
    w.table.sortByColumn(0, Qt.DescendingOrder)  # descending by frame: table rows no longer in result order
    spot = w.table_model.spot(0)
    assert spot["frame"] == N - 1 and w.table_model.text(0, 0) == str(N - 1)
    areas = [w.table_model.spot(r)["area"] for r in range(w.table_model.rowCount())]
    w.table.sortByColumn(5, Qt.AscendingOrder)
    assert [w.table_model.spot(r)["area"] for r in range(len(areas))] == sorted(areas)
    w.table.sortByColumn(0, Qt.DescendingOrder)
    w.set_frame(0)
    w.go_to_row(0)
    assert w.current_frame() == N - 1
    y, x = _camera(viewer).center[-2:]
    assert y == pytest.approx(10 + 2 * spot["centroid_row"]) and x == pytest.approx(20 + 2 * spot["centroid_col"])


def test_export_tiffs_and_csv(qtbot, setup, tmp_path):
    viewer, w, lyr, truth = setup
    src = tmp_path / "frames"
    src.mkdir()
    for k in range(N):
        tifffile.imwrite(src / f"f_{k + 1:04d}.tif", np.asarray(lyr.data[k]))
    w.last = None
    viewer.layers["frames"].metadata = {**lyr.metadata, "source": str(src)}
    routine(w)
    assert run_and_wait(qtbot, w) is State.DONE
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    files = w.export_tiffs(tmp_path / "out")
    assert len(files) == 2 * N
    m = tifffile.imread(tmp_path / "out" / "frames_spots_0001.tif")
    assert m.dtype == np.uint8 and set(np.unique(m)) <= {0, 255}
    np.testing.assert_array_equal(m > 0, np.asarray(viewer.layers["frames_spots"].data[0]) > 0)
    assert w.export_tiffs(tmp_path / "out")  # a rerun replaces its own files
    p = w.export_csv(tmp_path / "spots.csv")
    rows = list(csv.DictReader(p.open()))
    assert len(rows) == len(w.spot_rows()) and rows[0]["omega"] != ""
    w.export_csv(tmp_path / "spots.csv", overwrite=True)
    with pytest.raises(Exception, match="input"):
        w.export_csv(src / "f_0001.tif", overwrite=True)  # an input: refused even with overwrite
    with pytest.raises(Exception, match="holds the input frames"):
        w.export_tiffs(src)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "frames_cleaned_0001.tif").write_bytes(b"not ours")
    with pytest.raises(Exception, match="not written by matrestore"):
        w.export_tiffs(tmp_path / "foreign")
    assert (tmp_path / "foreign" / "frames_cleaned_0001.tif").read_bytes() == b"not ours"
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before


BAD = {"rgb": "RGB", "nan": "NaN", "tiny": "too small", "missing_model": "not found",
       "single_frame_routine": "single 2-D frame", "two_frames": "at least 3 frames", "zero_frame": "all zero"}


def test_bad_input_gives_a_red_message(qtbot, make_napari_viewer, tiny_path, tmp_path):
    viewer = make_napari_viewer()
    w = CleanWidget(viewer)
    viewer.window.add_dock_widget(w)
    stack, _ = make_stack()
    for case, expect in BAD.items():  # one viewer for all cases (a viewer per case costs seconds)
        viewer.layers.clear()
        if case == "rgb":
            viewer.add_image(np.zeros((32, 32, 3), np.uint8), name="x", rgb=True)
        elif case in ("nan", "zero_frame"):
            bad = stack.copy()
            if case == "nan":
                bad[2, 5, 5] = np.nan
            else:
                bad[0] = 0
            viewer.add_image(bad, name="x")
        elif case == "tiny":
            viewer.add_image(np.ones((1, 1), np.float32), name="x")
        elif case == "two_frames":
            viewer.add_image(stack[:2], name="x")
        else:
            viewer.add_image(stack[0] if case == "single_frame_routine" else stack, name="x")
        lyr = viewer.layers["x"]
        snap = snapshot(lyr)
        w.set_model(tmp_path / "nope.safetensors" if case == "missing_model" else tiny_path)
        w.set_method("routine" if case in ("nan", "single_frame_routine") else "network")
        w.options.set_value("window", 5)
        w.preview_check.setChecked(False)
        state = run_and_wait(qtbot, w)
        assert state is State.FAILED, case
        assert "ff6060" in w.status.styleSheet()
        assert expect in w.status.text(), (case, w.status.text())
        assert_unchanged(lyr, snap)
        assert [x.name for x in viewer.layers] == ["x"], case


def test_cancel_stops_and_adds_nothing(qtbot, make_napari_viewer, tiny_path):
    viewer = make_napari_viewer()
    stack, _ = make_stack(n=40)
    viewer.add_image(stack, name="long")
    w = CleanWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.set_model(tiny_path)
    w.set_method("network")
    w.run()
    w.cancel()
    _wait_done(qtbot, w, TIMEOUT)
    assert w.runner.state is State.STOPPED
    assert "long_cleaned" not in viewer.layers and "long_spots" not in viewer.layers


def test_opened_from_the_plugins_menu(qtbot, make_napari_viewer):
    viewer = make_napari_viewer()
    stack, _ = make_stack()
    viewer.add_image(stack, name="menu_stack")
    _, w = viewer.window.add_plugin_dock_widget("napari-matrestore", "LabDCT: clean spots")
    assert type(w.viewer).__name__ == "PublicOnlyProxy"
    assert w.input_layer().name == "menu_stack"
    routine(w)
    assert run_and_wait(qtbot, w) is State.DONE, w.status.text()
    assert "menu_stack_spots" in viewer.layers and w.table_model.rowCount() > 0
    w.go_to_row(0)
