"""Training generator: loss falls, cancel leaves a checkpoint, resume == uninterrupted."""

import numpy as np
import pytest
import torch

from matrestore.labdct.data import DataConfig, SceneSpec, TrainingData, make_scene
from matrestore.labdct.train import TrainConfig, train
from matrestore.progress import Kind, drive

from labdct_helpers import smooth_background


@pytest.fixture(scope="module")
def data():
    specs = [SceneSpec(material=m, grain_size_mm=0.1, diameter_mm=0.8, height_mm=0.6, frames=4, seed=i, size=96)
             for i, m in enumerate(("Fe", "Al"))]
    scenes = [make_scene(s) for s in specs]
    bg = np.stack([smooth_background((96, 96), seed=k) for k in range(3)])
    cfg = DataConfig(neighbours=1, patch=32, i0=(80.0, 300.0), brightness=(0.5, 2.0))
    return TrainingData(scenes, bg, cfg)


def run(out, data, steps, cancel=None, resume=False, **kw):
    cfg = TrainConfig(preset="tiny", steps=steps, batch=4, lr=3e-3, warmup=2, val_every=kw.pop("val_every", 6),
                      val_patches=8, patch=32, seed=0)
    recs = []
    res = drive(train(None, out, config=cfg, data=data, val_data=data, cancel=cancel, resume=resume, **kw), recs.append)
    return res, recs


def test_short_training_lowers_the_loss(tmp_path, data):
    res, recs = run(tmp_path / "a", data, 48, val_every=8)
    vals = [r["val"]["loss"] for r in recs if r["kind"] == Kind.EPOCH]
    assert len(vals) == 6 and vals[-1] < vals[0]
    steps = [r["losses"]["loss"] for r in recs if r["kind"] == Kind.STEP]
    assert np.mean(steps[-8:]) < np.mean(steps[:8])
    assert res.name == "best.safetensors" and res.exists()
    assert any(r["kind"] == Kind.PREVIEW and {"input", "target", "output"} <= set(r["images"]) for r in recs)
    from matrestore.labdct import load_model

    m = load_model(res)
    assert "calibration" in m.meta and m.meta["training"]["steps"] >= 8


def test_cancel_checkpoint_and_resume_equal_uninterrupted(tmp_path, data):
    full, _ = run(tmp_path / "full", data, 10)
    n = {"k": 0}

    def cancel():
        return n["k"] >= 4

    def counting(rec):
        if rec["kind"] == Kind.STEP:
            n["k"] = rec["step"]

    cfg = TrainConfig(preset="tiny", steps=10, batch=4, lr=3e-3, warmup=2, val_every=6, val_patches=8, patch=32, seed=0)
    res = drive(train(None, tmp_path / "cut", config=cfg, data=data, val_data=data, cancel=cancel), counting)
    assert res is None
    assert (tmp_path / "cut" / "checkpoint.pt").exists() and (tmp_path / "cut" / "last.safetensors").exists()
    resumed, recs = run(tmp_path / "cut", data, 10, resume=True)
    assert recs[0]["kind"] == Kind.SETUP and "starting at step 4" in recs[0]["message"]
    from matrestore.labdct import load_model

    a = load_model(tmp_path / "full" / "last.safetensors").state_dict()
    b = load_model(tmp_path / "cut" / "last.safetensors").state_dict()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k


def test_perceptual_loss_trains(tmp_path, data):
    res, recs = run(tmp_path / "p", data, 4, val_every=4, model_overrides={"loss": "perceptual"})
    assert res.exists()
    parts = [r["losses"] for r in recs if r["kind"] == Kind.STEP][-1]
    assert {"pixel", "feature", "gram"} <= set(parts)
