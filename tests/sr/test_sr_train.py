import threading

import numpy as np
import pytest
import torch

from matrestore._validate import InputError
from matrestore.degrade import downsample
from matrestore.sr import load_model, train
from matrestore.sr.data import align_patch, augment, build_training_data, split_indices
from matrestore.sr.losses import gradient_penalty

OPTS = dict(preset="tiny", batch_size=2, patch=8, cell=16, checkpoint_every=0, max_val_cells=4)


@pytest.fixture(scope="module")
def images():
    from skimage import data

    return [data.camera()[:192, :256], data.moon()[:160, :192]]


def test_split_is_fixed_and_80_10_10():
    a = split_indices(100, seed=3)
    assert a == split_indices(100, seed=3) and a != split_indices(100, seed=4)
    assert (a.count("train"), a.count("val"), a.count("test")) == (80, 10, 10)
    assert split_indices(2).count("val") == 1


def test_augment_commutes_with_degradation():
    hr = np.random.default_rng(0).random((16, 16))
    outs = set()
    for code in range(8):
        a_hr, a_lr = augment([hr, downsample(hr, 4)], code)
        np.testing.assert_allclose(downsample(a_hr, 4), a_lr, atol=1e-12)
        outs.add(a_hr.tobytes())
    assert len(outs) == 8


def test_alignment_search_recovers_a_drift(images):
    hr = images[0].astype(np.float64)
    lr = downsample(hr[13:13 + 64, 22:22 + 96], 4)  # the LR scan drifted by (13, 22) HR px
    y, x, score = align_patch(lr, hr, 8, 16, scale=4, search=8)
    assert (y, x) == (13, 22) and score > 0.99
    y, x, _ = align_patch(lr, hr, 8, 16, scale=4, search=8, method="nearest")
    assert abs(y - 13) <= 2 and abs(x - 22) <= 2


def test_training_data_from_hr_and_pairs(images):
    d = build_training_data(images, scale=4, patch=8, cell=16, ref_crop=32)
    n = len(d.cells)
    assert n == (48 // 16) * (64 // 16) + (40 // 16) * (48 // 16)
    assert {c.split for c in d.cells} == {"train", "val", "test"}
    assert len(d.bank) == len(d.split("train"))
    c = d.cells[0]
    assert c.lr.shape == (16, 16) and c.hr.shape == (64, 64)
    np.testing.assert_allclose(downsample(c.hr.astype(np.float64), 4), c.lr, atol=1e-4)
    hr = images[0]
    lr = downsample(hr[2:, 3:], 4)  # a real-pair stand-in with a (2, 3) px drift
    dp = build_training_data(pairs=[(lr, hr)], scale=4, patch=8, cell=16, ref_crop=32)
    for cell in dp.cells[:4]:
        np.testing.assert_allclose(downsample(cell.hr.astype(np.float64), 4), cell.lr, atol=0.02)
    with pytest.raises(InputError):
        build_training_data([np.zeros((20, 20))], cell=16)
    with pytest.raises(InputError, match="no training"):
        build_training_data()


def test_gradient_penalty_of_linear_critics():
    real, fake = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    for norm in (1.0, 2.0):
        w = torch.randn(1, 1, 8, 8)
        w = w / w.norm() * norm
        gp = gradient_penalty(lambda x: (x * w).flatten(1).sum(1), real, fake, lam=10.0)
        assert float(gp) == pytest.approx(10.0 * (norm - 1) ** 2, abs=1e-4)


def _run(images, out, **kw):
    return list(train(images, out_dir=out, **{**OPTS, **kw}))


def test_train_records_files_and_validation(images, tmp_path):
    recs = _run(images, tmp_path / "a", epochs=2, steps_per_epoch=2)
    kinds = [r["kind"] for r in recs]
    assert kinds[:2] == ["setup", "setup"] and kinds[-1] == "done"
    steps = [r for r in recs if r["kind"] == "step"]
    assert [r["step"] for r in steps] == [1, 2, 3, 4] and all(r["total"] == 4 for r in steps)
    assert [r["phase"] for r in steps] == ["reconstruction"] * 2 + ["full"] * 2  # first half: L1 only
    assert set(steps[0]["losses"]) == {"rec", "total"}
    assert {"rec", "per", "tper", "adv", "critic"} <= set(steps[-1]["losses"])
    setup = [r for r in recs if r["kind"] == "setup" and "total" in r][-1]
    first_full = next(r["step"] for r in steps if r["phase"] == "full")
    assert setup["phase2_step"] == first_full - 1 == 2  # the engine says where phase 2 starts
    ep = [r for r in recs if r["kind"] == "epoch"]
    assert len(ep) == 2 and ep[0]["best"]
    v = ep[-1]["val"]
    assert {"ttsr", "bicubic"} <= set(v) and v["n"] >= 1 and np.isfinite(v["ttsr"]["essim"])
    for f in ("best.safetensors", "last.safetensors", "checkpoint.pt", "log.jsonl"):
        assert (tmp_path / "a" / f).exists()
    m = load_model(tmp_path / "a" / "best.safetensors")
    assert m.meta["lte_init"] == "random initialisation" and "LTE snapshot" in m.meta["perceptual"]
    assert m.meta["training"]["cells"]["train"] > 0 and "validation" in m.meta["metrics"]
    assert m.cfg.receptive_radius is not None


def test_cancel_then_resume_equals_uninterrupted(images, tmp_path):
    kw = dict(epochs=2, steps_per_epoch=3, adv_from=1.0)
    _run(images, tmp_path / "full", **kw)
    ev = threading.Event()
    recs = []
    for r in train(images, out_dir=tmp_path / "cut", cancel=ev, **{**OPTS, **kw}):
        recs.append(r)
        if r["kind"] == "step" and r["step"] == 4:
            ev.set()
    assert recs[-1]["kind"] == "stopped" and (tmp_path / "cut" / "checkpoint.pt").exists()
    assert (tmp_path / "cut" / "last.safetensors").exists()  # a usable model after a stop
    rest = list(train(images, out_dir=tmp_path / "cut", resume=True, **{**OPTS, **kw}))
    assert [r["step"] for r in rest if r["kind"] == "step"] == [5, 6]
    a = load_model(tmp_path / "full" / "last.safetensors").state_dict()
    b = load_model(tmp_path / "cut" / "last.safetensors").state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5)


def test_fine_tune_existing_model(images, tmp_path):
    _run(images, tmp_path / "base", epochs=1, steps_per_epoch=1)
    base = tmp_path / "base" / "best.safetensors"
    recs = _run([images[1]], tmp_path / "ft", epochs=1, steps_per_epoch=2, init=str(base))
    assert recs[-1]["kind"] == "done"
    m0, m1 = load_model(base), load_model(tmp_path / "ft" / "last.safetensors")
    assert m1.cfg.to_dict() == m0.cfg.to_dict()
    assert "fine-tuned" in m1.meta["lte_init"]
    assert any(not torch.equal(m0.state_dict()[k], v) for k, v in m1.state_dict().items())


def test_bad_options(images, tmp_path):
    with pytest.raises(InputError, match="unknown training option"):
        next(train(images, out_dir=tmp_path, colour=True))
    with pytest.raises(InputError, match="checkpoint not found"):
        next(train(images, out_dir=tmp_path, resume=tmp_path / "none.pt"))


def test_engine_rules_the_widget_uses():
    from matrestore._validate import InputError
    from matrestore.sr.data import check_cell_count, check_pair_shapes

    check_pair_shapes((50, 60), (200, 240), 4)
    check_pair_shapes((50, 60), (210, 236), 4)  # a few rows or columns off: fine
    with pytest.raises(InputError, match="about 4×"):
        check_pair_shapes((50, 60), (100, 120), 4)
    check_cell_count(10, 16)
    with pytest.raises(InputError, match="at least 2 cells"):
        check_cell_count(1, 16)
    with pytest.raises(InputError, match="references"):
        check_cell_count(2, 16)  # 2 cells: one for training, one for validation — too few to cut references
    check_cell_count(2, 16, has_references=True)
