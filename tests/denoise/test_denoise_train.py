import numpy as np
import pytest
import torch

from matrestore import InputError
from matrestore.denoise import load_model, train
from matrestore.progress import drive

OPTS = dict(preset="tiny", epochs=2, steps_per_epoch=4, batch_size=4, patch=32, structures=3, val_structures=1,
            structure_size=64, grains=(8, 12), pf_steps=(10, 20), val_pairs=2, lr=3e-3, checkpoint_every=2, seed=1)


def _run(tmp, real, **kw):
    recs = []
    res = drive(train([real], tmp, **{**OPTS, **kw}), recs.append)
    return res, recs


def test_short_training_lowers_the_loss(tmp_path, real_texture):
    res, recs = _run(tmp_path, real_texture, epochs=3, steps_per_epoch=8)
    assert res["status"] == "done"
    mse = [r["losses"]["mse"] for r in recs if r["kind"] == "step"]
    assert np.mean(mse[-6:]) < 0.8 * np.mean(mse[:4])
    ep = [r for r in recs if r["kind"] == "epoch"]
    assert len(ep) == 3 and {"f1", "psnr", "mse"} <= set(ep[-1]["val"])
    m = load_model(res["best"])
    assert m.meta["training"]["structures"]["val"] == [2]
    assert (tmp_path / "log.jsonl").read_text().count("\n") >= 4


def test_cancel_leaves_checkpoint_and_resume_equals_uninterrupted(tmp_path, real_texture):
    full, _ = _run(tmp_path / "full", real_texture)
    import threading

    stop = threading.Event()
    recs = []

    def progress(rec):  # cancel after the 5th step (mid-epoch), as a widget's Stop button would
        recs.append(rec)
        if rec["kind"] == "step" and rec["step"] == 5:
            stop.set()

    res = drive(train([real_texture], tmp_path / "part", cancel=stop, **OPTS), progress)
    assert res["status"] == "stopped" and recs[-1]["kind"] == "stopped"
    assert (tmp_path / "part" / "checkpoint.pt").is_file() and (tmp_path / "part" / "last.safetensors").is_file()
    ck = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 5
    res2 = drive(train([real_texture], tmp_path / "part", resume=True, **OPTS))
    assert res2["status"] == "done"
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_bad_training_input(tmp_path, real_texture):
    with pytest.raises(InputError, match="real micrograph"):
        drive(train([], tmp_path, **OPTS))
    with pytest.raises(InputError, match="smaller than the training patch"):
        drive(train([real_texture[:20, :20]], tmp_path, **OPTS))
    with pytest.raises(InputError, match="unknown training option"):
        drive(train([real_texture], tmp_path, epoks=3))
    with pytest.raises(InputError, match="checkpoint not found"):
        drive(train([real_texture], tmp_path, resume=str(tmp_path / "nope.pt"), **OPTS))


def test_edge_magnitude_loss_is_blind_to_the_sign_of_a_step():
    from matrestore.denoise.train import edge_magnitude_l1

    truth = torch.zeros(1, 1, 16, 16)
    truth[..., 8:] = 0.6  # two grains, the right one brighter
    flipped = 0.6 - truth  # the same boundary, the left one brighter
    flat = torch.full_like(truth, 0.3)  # the two merged (what MSE prefers when the order is unknown)
    assert float(edge_magnitude_l1(flipped, truth)) < 1e-3
    assert float(edge_magnitude_l1(flat, truth)) > 0.02
    # MSE ranks them the other way round: the flipped step costs more than merging
    assert float(((flipped - truth) ** 2).mean()) > float(((flat - truth) ** 2).mean())
    # and it charges for an edge the truth does not have
    assert float(edge_magnitude_l1(truth, flat)) > 0.02


def test_training_with_the_edge_loss_runs_and_records_it(tmp_path, real_texture):
    res, recs = _run(tmp_path, real_texture, epochs=1, steps_per_epoch=3, edge_weight=1.0)
    assert res["status"] == "done"
    assert load_model(res["last"]).meta["training"]["config"]["edge_weight"] == 1.0


def test_step_floor_asks_for_a_step_of_either_sign_only_at_true_boundaries():
    from matrestore.denoise.train import step_floor

    truth = torch.zeros(1, 1, 24, 24)
    truth[..., 12:] = 0.6
    near = torch.zeros_like(truth, dtype=torch.bool)
    near[..., 11:13] = True  # within 1 px of the boundary
    flat = torch.full_like(truth, 0.3)
    assert float(step_floor(truth, truth, near)) == 0.0
    assert float(step_floor(0.6 - truth, truth, near)) == 0.0  # the wrong sign pays nothing
    assert float(step_floor(2 * truth, truth, near)) == 0.0  # nor a stronger step
    assert float(step_floor(0.4 * truth, truth, near)) > 0.0  # a step below half the true one pays
    assert float(step_floor(flat, truth, near)) == pytest.approx(0.5, abs=0.01)  # merged: the whole half
    noisy_inside = truth.clone()
    noisy_inside[..., 2:6, 2:6] += 0.5  # an edge where the truth has none costs nothing
    assert float(step_floor(noisy_inside, truth, near)) == 0.0
    for sign in (1.0, -1.0):  # a faint step of either sign is pushed to grow in its own direction
        pred = (flat + sign * 0.05 * truth).requires_grad_(True)
        step_floor(pred, truth, near).backward()
        right, left = float(pred.grad[..., 12:].sum()), float(pred.grad[..., :12].sum())
        assert sign * right < 0 < sign * left  # descent raises the brighter side, lowers the darker


def test_interior_edges_charge_edges_inside_grains_only():
    from matrestore.denoise.train import interior_edges

    truth = torch.zeros(1, 1, 32, 32)
    truth[..., 16:] = 0.6
    near = torch.zeros_like(truth, dtype=torch.bool)
    near[..., 15:17] = True
    base = float(interior_edges(truth, truth, near))  # the smoothed true step reaches a little past the band
    assert base < 0.1
    assert float(interior_edges(2 * truth, truth, near)) == pytest.approx(2 * base, rel=1e-2)  # only its spill-over
    blotch = truth.clone()
    blotch[..., 4:10, 4:10] += 0.3  # an invented edge inside the left grain
    assert float(interior_edges(blotch, truth, near)) > base + 0.2


def test_training_with_the_boundary_losses_runs_and_records_them(tmp_path, real_texture):
    res, recs = _run(tmp_path, real_texture, epochs=1, steps_per_epoch=3, step_weight=0.5, interior_weight=0.1)
    assert res["status"] == "done"
    cfg = load_model(res["last"]).meta["training"]["config"]
    assert (cfg["step_weight"], cfg["interior_weight"]) == (0.5, 0.1)


def test_uniform_grain_pairs_have_one_bright_grey_and_dark_boundaries(real_texture):
    from matrestore.denoise.phasefield import phase_field
    from matrestore.denoise.synth import texture_source
    from matrestore.denoise.train import TrainConfig, make_pair

    lab = phase_field((96, 96), 20, 20, seed=3).labels
    real, _ = texture_source(real_texture, "real")
    cfg = TrainConfig(preset="tiny", patch=64, uniform=1.0)
    for k in range(3):
        x, clean, near, labels = make_pair(lab, real, cfg, np.random.default_rng(k))
        from scipy import ndimage as ndi

        bright, dark = clean > 0.5, clean < 0.2
        assert bright.mean() + dark.mean() == 1.0  # nothing in between
        assert 0.7 < clean[bright].max() <= 0.95 and np.ptp(clean[bright]) <= 0.1  # one bright band
        assert 0.02 < dark.mean() < 0.5 and near.any()
        inner = np.zeros_like(dark)
        inner[1:-1, 1:-1] = True  # (even widths thicken by a wrapped shift, which may reach row/column 0)
        assert ndi.distance_transform_edt(~near)[dark & inner].max() <= 2  # the dark pixels are etched boundaries
    # off (the default) keeps the paper's distinct grey levels
    x, clean, near, labels = make_pair(lab, real, TrainConfig(preset="tiny", patch=64), np.random.default_rng(0))
    assert np.ptp(clean[clean > 0.2]) > 0.3


def test_fine_tuning_can_deepen_the_base_model(tmp_path, real_texture):
    from matrestore.denoise import build_model

    base = build_model("tiny", seed=2)  # 2 blocks
    with pytest.raises(InputError, match="base model"):
        drive(train([real_texture], tmp_path / "new", **{**OPTS, "deepen": 4}))
    out = drive(train([real_texture], tmp_path / "deep", init=base, **{**OPTS, "epochs": 1, "steps_per_epoch": 2,
                                                                          "deepen": 4}))
    m = load_model(out["last"])
    assert m.cfg.n_blocks == 4 and len(m.blocks) == 4 and base.cfg.n_blocks == 2
    assert "deepened from 2 to 4 blocks" in m.meta["training"]["init"]
    assert m.meta["training"]["config"]["deepen"] == 4
    # the shipped-size model deepened to 12 blocks is named after the cpu-deep preset
    from matrestore.denoise.train import _deepened

    assert _deepened(build_model("cpu", seed=0), 12, 0).cfg.preset == "cpu-deep"
