"""The "Denoise: synthetic data and training" dock widget: sample pairs, a tiny training run, cancel →
checkpoint → resume, saving and handing the model to "Denoise: apply"."""

import numpy as np
import pytest
from napari.layers import Labels

from matrestore._layerdata import OUTPUT_KEY
from matrestore._widgets._worker import ERROR_STYLE, State
from matrestore._widgets.denoise_train import PREVIEW_LAYER_NAMES, SYNTH_KIND, DenoiseTrainWidget
from _util import assert_unchanged, snapshot, wait_done

TIMEOUT = 90000


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def real():
    """A stand-in real micrograph (uint8 texture with dark spots, 120×140)."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(5)
    t = ndi.gaussian_filter(rng.standard_normal((120, 140)), 3) * 40 + 150
    t[rng.random(t.shape) < 0.003] = 30
    return np.clip(t, 0, 255).astype(np.uint8)


@pytest.fixture
def setup(make_napari_viewer, real):
    viewer = make_napari_viewer()
    viewer.add_image(real, name="steel", scale=(0.5, 0.5), translate=(2.0, 3.0))
    w = DenoiseTrainWidget(viewer)
    viewer.window.add_dock_widget(w)
    return viewer, w


def tiny(w, tmp_path, epochs=1, steps=2):
    w.set_base("new")
    f, a = w.train_form, w.train_advanced
    for name, v in (("preset", "tiny"), ("epochs", epochs), ("steps_per_epoch", steps), ("batch_size", 2),
                    ("patch", 32), ("structures", 3), ("val_structures", 1)):
        f.set_value(name, v)
    a.set_value("structure_size", 64)
    a.set_value("checkpoint_every", 1000)
    w.out_folder.setText(str(tmp_path / "runs"))


def test_sample_pair_layers_show_what_the_network_learns_from(qtbot, setup):
    viewer, w = setup
    assert [lyr.name for lyr in w.real_layers()] == ["steel"]  # a real micrograph is checked for you
    snap = snapshot(viewer.layers["steel"])
    w.synth_form.set_value("size", 64)
    w.synth_form.set_value("n_grains", 15)
    w.synth_form.set_value("steps", 50)
    w.synth_advanced.set_value("kappa", 0.8)
    w.make_pair()
    wait_done(qtbot, w, TIMEOUT)
    assert w.runner.state is State.DONE, w.status.text()
    for name in ("synth_clean", "synth_labels", "synth_noisy", "synth_artefacts"):
        layer = viewer.layers[name]
        assert layer.data.shape == (64, 64) and layer.metadata[OUTPUT_KEY]["made_by"] == SYNTH_KIND
        assert tuple(layer.scale) == (0.5, 0.5)
    assert isinstance(viewer.layers["synth_labels"], Labels) and isinstance(viewer.layers["synth_artefacts"], Labels)
    lab = np.asarray(viewer.layers["synth_labels"].data)
    assert lab.max() == w.last_pair["grains"] > 3
    assert set(np.unique(viewer.layers["synth_artefacts"].data)) <= {0, 1, 2, 3}
    assert viewer.layers["synth_noisy"].metadata[OUTPUT_KEY]["real"] == "steel"
    assert viewer.layers["synth_clean"].metadata[OUTPUT_KEY]["phase_field"]["kappa"] == 0.8
    # the pair sits to the right of the real micrograph: it hides nothing
    assert viewer.layers["synth_clean"].extent.world[0][-1] > viewer.layers["steel"].extent.world[1][-1]
    # the synthetic layers are not offered as texture sources; a second pair updates them in place
    assert [lyr.name for lyr in w.real_layers()] == ["steel"]
    n = len(viewer.layers)
    w.synth_form.set_value("seed", 3)
    w.make_pair()
    wait_done(qtbot, w, TIMEOUT)
    assert len(viewer.layers) == n and not np.array_equal(np.asarray(viewer.layers["synth_labels"].data), lab)
    assert_unchanged(viewer.layers["steel"], snap)


def test_sample_pair_bad_input_is_a_red_message(qtbot, setup):
    viewer, w = setup
    w.synth_form.set_value("size", 256)  # larger than the 120×140 micrograph
    w.make_pair()
    wait_done(qtbot, w, TIMEOUT)
    assert w.runner.state is State.FAILED and w.status.styleSheet() == ERROR_STYLE
    assert "too small" in w.status.text() and "synth_clean" not in viewer.layers
    w.set_real_layers([])
    w.make_pair()
    assert "check at least one real" in w.status.text()


def test_train_previews_cancel_checkpoint_resume_save_and_use(qtbot, setup, tmp_path):
    from matrestore._widgets.denoise import DenoiseWidget
    from matrestore.denoise import load_model

    viewer, w = setup
    snap = snapshot(viewer.layers["steel"])
    apply_w = DenoiseWidget(viewer)  # an open "Denoise: apply" takes the trained model at once
    tiny(w, tmp_path, epochs=2, steps=15)
    w.run()
    qtbot.waitUntil(lambda: w.progress.get("step", 0) >= 1, timeout=TIMEOUT)
    w.cancel()
    wait_done(qtbot, w, TIMEOUT)
    assert w.runner.state is State.STOPPED, w.status.text()
    stopped_at = w.progress["step"]
    assert 0 < stopped_at < 30 and (w.run_dir / "checkpoint.pt").is_file()
    assert "Resume" in w.status.text() and w.resume_btn.isEnabled()
    w.resume()
    wait_done(qtbot, w, TIMEOUT)
    assert w.runner.state is State.DONE, w.status.text()
    assert w.progress["step"] == 30 and [h["epoch"] for h in w.history][-1] == 2
    assert w.loss_plot.n_points() > 0 and w.val_table.rowCount() >= 1
    assert "boundary F1" in w.validation_text()
    pv = w.preview_layers()
    assert set(pv) == set(PREVIEW_LAYER_NAMES) and pv["prediction"].data.shape == (32, 32)
    assert pv["clean"].extent.world[0][-1] > viewer.layers["steel"].extent.world[1][-1]  # beside, not over
    dst = w.save_model(tmp_path / "mine")
    assert dst == tmp_path / "mine.safetensors" and load_model(dst).cfg.preset == "tiny"
    assert w.use_in_apply() == dst
    assert apply_w.model_file_radio.isChecked() and apply_w.model_path.text() == str(dst)
    assert "tiny preset" in apply_w.model_note.text()
    later = DenoiseWidget(viewer)  # ... and one opened later
    assert later.model_file_radio.isChecked() and later.model_path.text() == str(dst)
    assert w.save_model(w.run_dir / "x") is None and "outside the run folder" in w.status.text()
    assert_unchanged(viewer.layers["steel"], snap)


def test_train_bad_options_are_red_messages(qtbot, setup, tmp_path):
    viewer, w = setup
    tiny(w, tmp_path)
    w.train_form.set_value("patch", 256)
    w.run()
    assert w.runner.state is State.FAILED and "patch" in w.status.text()
    w.train_form.set_value("patch", 32)
    w.train_form.set_value("val_structures", 3)
    w.run()
    assert "fewer than structures" in w.status.text()
    w.train_form.set_value("val_structures", 1)
    w.set_base("file", tmp_path / "missing.safetensors")
    w.run()
    assert "not found" in w.status.text() and w.status.styleSheet() == ERROR_STYLE
    assert w.run_dir is None


def test_opened_from_the_plugins_menu(make_napari_viewer, real):
    viewer = make_napari_viewer()
    viewer.add_image(real, name="a")
    viewer.add_image(np.zeros((3, 20, 20)), name="stack")
    _, w = viewer.window.add_plugin_dock_widget("napari-matrestore", "Denoise: synthetic data and training")
    assert type(w.viewer).__name__ == "PublicOnlyProxy"
    assert [lyr.name for lyr in w.real_layers()] == ["a"]
    assert {lyr.name for lyr in w.real_list.layers} == {"a", "stack"}  # the 3-D one greyed out with the reason
    viewer.add_image(real[:64, :64], name="b")
    assert [lyr.name for lyr in w.real_layers()] == ["a", "b"]
    assert w.sizeHint().height() <= 700  # the rest scrolls
