import threading

import numpy as np
import pytest
import torch

from matrestore._validate import InputError
from matrestore.baselines import upsample, upsampled_geometry
from matrestore.sr import enhance, enhance_iter
import sys

import matrestore.sr.enhance  # noqa: F401

enhance_mod = sys.modules["matrestore.sr.enhance"]
from matrestore.sr.enhance import output_geometry
from matrestore.sr.references import RefFeatures, ReferenceBank
from matrestore.tiling import margin_for_keep, plan_tiles, seam_profile


@pytest.fixture(scope="module")
def bank(ref_images):
    return ReferenceBank.from_images(ref_images, ["a", "b", "c"], crop=32)


@pytest.mark.parametrize("shape", [(50, 63), (5, 7), (1, 1), (33, 20)])
@pytest.mark.parametrize("mode", ["fast", "paper"])
def test_output_is_exactly_scale_times_input(tiny_model, bank, shape, mode):
    lr = np.random.default_rng(0).random(shape).astype(np.float32)
    out = enhance(lr, bank, tiny_model, mode=mode, tile=24 if mode == "fast" else None, halo=4 if mode == "fast" else None)
    assert out.shape == (4 * shape[0], 4 * shape[1]) and out.dtype == np.float32
    assert np.all(np.isfinite(out))


def test_fast_tiling_equals_whole_image(tiny_model, bank, lr_image):
    r = tiny_model.cfg.receptive_radius
    assert 5 <= r <= 40  # measured dependency radius of the tiny preset, in LR px
    whole = enhance(lr_image, bank, tiny_model, tile=10_000)
    tile = 2 * r + 8  # much smaller than the 50 x 63 image: many tiles
    assert len(plan_tiles(lr_image.shape, tile, r)) > 1
    tiled = enhance(lr_image, bank, tiny_model, tile=tile, halo=r, batch=3)
    assert np.abs(tiled - whole).max() < 1e-5
    # the network really does something beyond bicubic, so the equality is not trivial
    assert np.abs(whole - upsample(lr_image, 4)).mean() > 1e-3
    # a halo below the receptive radius is visibly different (the measurement is not too generous)
    short = enhance(lr_image, bank, tiny_model, tile=tile, halo=2)
    assert np.abs(short - whole).max() > 1e-4


def test_paper_stitching_equals_whole_when_margin_covers_radius(tiny_model, bank):
    r = tiny_model.cfg.receptive_radius
    tile = int(np.ceil(2 * r / (1 - 0.625))) + 2
    assert margin_for_keep(tile, 0.625) >= r
    lr = np.random.default_rng(3).random((tile + 30, tile + 17)).astype(np.float32)
    k = len(bank)  # every tile searches every crop: same references as the whole-image pass
    whole = enhance(lr, bank, tiny_model, tile=10_000, top_k=k)
    tiled = enhance(lr, bank, tiny_model, mode="paper", tile=tile, top_k=k)
    assert np.abs(tiled - whole).max() < 1e-5


def test_paper_mode_seams_are_small_for_the_cpu_preset(ref_images):
    """32-px tiles keep 20 px: the cpu preset's receptive radius (> 6 px) is not covered, so the result
    differs from a whole-image pass near seams; the seams must stay small (reported in docs/sr_engine.md)."""
    from matrestore.sr import build_model

    m = build_model("cpu", seed=0, ref_crop=32)
    with torch.no_grad():
        m.main.merge_tail.conv_tail2.weight.mul_(10.0)
    m.cfg.receptive_radius = 34
    b = ReferenceBank.from_images(ref_images, ["a", "b", "c"], crop=32)
    from skimage import data

    lr = data.camera()[::4, ::4][:56, :56].astype(np.float32)
    whole = enhance(lr, b, m, tile=10_000, top_k=len(b))
    paper = enhance(lr, b, m, mode="paper", top_k=len(b))
    residual = np.abs(whole - upsample(lr, 4)).mean()
    prof = seam_profile(paper, whole, plan_tiles(lr.shape, 32, 6), scale=4)
    assert residual > 0.5  # a real correction on a 0-255 image
    assert 0 < prof["rms"] < 0.02 * residual  # differs (radius 34 > margin 6), but by little
    assert prof["seam_rms"] > prof["rms"]  # ... and where expected: at the seams
    assert abs(prof["jump_ratio"] - 1) < 0.05  # no edges of their own


def test_reference_features_are_computed_once_not_per_tile(tiny_model, bank, lr_image):
    feats = RefFeatures(tiny_model, bank)
    assert feats.computed == 0  # only the embeddings up front
    records = []
    out = enhance(lr_image, None, tiny_model, mode="paper", ref_features=feats, progress=records.append)
    assert out.shape == (200, 252)
    assert records[-1]["total"] == 6  # several tiles, each selecting its own references ...
    used = feats.computed
    assert 1 <= used <= len(bank)  # ... but every selected crop computed once
    again = enhance(lr_image, None, tiny_model, mode="paper", ref_features=feats)
    assert feats.computed == used  # reused across calls too
    np.testing.assert_array_equal(out, again)


def test_progress_and_cancel(tiny_model, bank, lr_image):
    steps = []
    enhance(lr_image, bank, tiny_model, mode="paper", batch=4,
            progress=lambda r: steps.append(r["step"]) if r.get("phase") == "tiles" else None)
    tile_steps = [s for s in steps if s]
    assert tile_steps == sorted(tile_steps) and tile_steps[-1] == len(plan_tiles(lr_image.shape, 32, 6))
    ev = threading.Event()

    def stop_after_first(rec):
        if rec.get("step"):
            ev.set()

    assert enhance(lr_image, bank, tiny_model, mode="paper", batch=2, progress=stop_after_first, cancel=ev) is None
    calls = []
    assert enhance(lr_image, bank, tiny_model, cancel=lambda: calls.append(1) or True) is None
    recs = list(enhance_iter(lr_image, bank, tiny_model, cancel=lambda: True))
    assert recs[-1]["status"] == "stopped"


def test_out_of_memory_halves_batch_then_tile(tiny_model, bank, lr_image, monkeypatch):
    lr_image = np.tile(lr_image, (1, 2))[:, :120]  # 50 x 120
    whole = enhance(lr_image, bank, tiny_model, tile=10_000)
    real = enhance_mod._run_batch
    calls = {"n": 0}

    def flaky(model, x, *a, **k):
        calls["n"] += 1
        if x.shape[0] > 1 or x.shape[-1] > 100:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(model, x, *a, **k)

    monkeypatch.setattr(enhance_mod, "_run_batch", flaky)
    msgs = []
    r = tiny_model.cfg.receptive_radius
    out = enhance(lr_image, bank, tiny_model, tile=200, halo=r, batch=4, progress=lambda rec: msgs.append(rec["message"]))
    assert any("batch halved" in m for m in msgs) and any("tile halved" in m for m in msgs)
    assert np.abs(out - whole).max() < 1e-5

    def always(*a, **k):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(enhance_mod, "_run_batch", always)
    with pytest.raises(InputError, match="out of memory"):
        enhance(lr_image, bank, tiny_model, batch=1)


def test_integer_input_and_intensity_units(tiny_model, bank, lr_image):
    u8 = (lr_image * 255).astype(np.uint8)
    out = enhance(u8, bank, tiny_model)
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 255
    bic = upsample(u8.astype(np.float64), 4)
    assert abs(out.mean() - bic.mean()) < 5  # same intensity units as the input
    out16 = enhance(u8.astype(np.uint16) * 100 + 1000, bank, tiny_model)
    assert 900 < out16.mean() < 1000 + 100 * 255


def test_bad_inputs(tiny_model, bank, lr_image, tmp_path):
    with pytest.raises(InputError, match="RGB"):
        enhance(np.zeros((20, 20, 3)), bank, tiny_model)
    with pytest.raises(InputError, match="NaN"):
        enhance(np.full((8, 8), np.nan), bank, tiny_model)
    with pytest.raises(InputError, match="reference"):
        enhance(lr_image, [], tiny_model)
    with pytest.raises(InputError, match="mode"):
        enhance(lr_image, bank, tiny_model, mode="slow")
    with pytest.raises(InputError, match="not found"):
        enhance(lr_image, bank, tmp_path / "missing.safetensors")
    with pytest.raises(InputError):
        enhance(lr_image, bank, 42)
    big = ReferenceBank.from_images([np.random.rand(64, 64)], ["x"], crop=64)
    with pytest.raises(InputError, match="crops"):
        enhance(lr_image, big, tiny_model)


def test_output_geometry():
    g = output_geometry(80.0, (10.0, 20.0), 4)
    assert g["pixel_size"] == 20.0
    assert (g["scale"], g["translate"]) == upsampled_geometry((80.0, 80.0), (10.0, 20.0), 4)
    assert g["translate"] == (10.0 - 30.0, 20.0 - 30.0)
    assert output_geometry(None, (0, 0), 4)["pixel_size"] is None


def test_reference_features_are_reused_across_runs_with_progress(tiny_model, bank, lr_image):
    from matrestore.sr import references

    references.clear_feature_cache()
    first = list(enhance_iter(lr_image, bank, tiny_model))
    feat = [r for r in first if r.get("phase") == "reference features" and r.get("kind") == "step"]
    assert feat and feat[-1]["step"] == feat[-1]["total"] == len(bank)  # determinate, crop by crop
    assert all("crop" in r["message"] for r in feat)
    second = list(enhance_iter(lr_image, bank, tiny_model))
    again = [r for r in second if r.get("phase") == "reference features" and r.get("kind") == "step"]
    assert len(again) == 1 and "reused" in again[0]["message"]
    # other weights: computed afresh (the key is the weights and the pixels, not the object)
    import copy

    other = copy.deepcopy(tiny_model)
    with torch.no_grad():
        next(other.parameters()).add_(0.01)
    third = list(enhance_iter(lr_image, bank, other))
    assert not any("reused" in r.get("message", "") for r in third)


def test_cancel_takes_effect_inside_a_tile(tiny_model, bank, lr_image):
    from matrestore.nets.hooks import ForwardMonitor

    calls = {"n": 0}

    def cancel():  # becomes true part-way through the first tile's forward pass
        calls["n"] += 1
        return calls["n"] > 12

    layers = len(ForwardMonitor(tiny_model).layers)
    recs = list(enhance_iter(lr_image, bank, tiny_model, tile=10_000, cancel=cancel))
    assert recs[-1]["kind"] == "stopped"
    assert not any(r.get("phase") == "tiles" and r.get("step") for r in recs)  # no tile finished
    assert calls["n"] <= 14 < layers  # stopped at the first layer after the flag, not at the end of the tile
