import numpy as np
import pytest
import tifffile
import torch

from matrestore._validate import InputError
from matrestore.sr.references import RefFeatures, ReferenceBank, cosine_similarity, load_references, select_top_k


def test_bank_from_folder_files_and_arrays(tmp_path, ref_images):
    for i, im in enumerate(ref_images):
        tifffile.imwrite(tmp_path / f"r{i}.tif", (im * 255).astype(np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    bank = load_references(tmp_path, crop=32)
    assert bank.crops.shape == (3 * 9, 32, 32)  # 96 px images -> 3x3 crops each
    assert bank.sources == ["r0.tif", "r1.tif", "r2.tif"]
    assert -2 < bank.crops.min() < -0.9 and 0.9 < bank.crops.max() < 2  # percentile-normalised
    both = load_references([tmp_path / "r0.tif", ref_images[1]], crop=32)
    assert len(both) == 18
    small = load_references(np.ones((10, 20)) * np.arange(20), crop=32)  # mirrored up to one crop
    assert small.crops.shape == (1, 32, 32)
    capped = load_references(ref_images[0], crop=16, max_per_image=5)
    assert len(capped) == 5
    assert load_references(bank, crop=32) is bank


def test_bank_errors(tmp_path):
    with pytest.raises(InputError, match="at least one reference"):
        load_references([], crop=32)
    with pytest.raises(InputError, match="not found"):
        load_references(tmp_path / "nope", crop=32)
    with pytest.raises(InputError, match="no reference images"):
        load_references(tmp_path, crop=32)
    with pytest.raises(InputError, match="multiple of the scale"):
        load_references(np.zeros((40, 40)), crop=30)
    with pytest.raises(InputError, match="RGB"):
        load_references(np.zeros((40, 40, 3)), crop=32)
    bank = load_references(np.random.rand(64, 64), crop=32)
    with pytest.raises(InputError, match="expects 16"):
        load_references(bank, crop=16)


def test_cosine_similarity_and_top_k():
    k = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    v = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    s = cosine_similarity(k, v)
    torch.testing.assert_close(s, torch.tensor([[1.0, 0.0, 2**-0.5], [2**-0.5, 2**-0.5, 1.0]]))
    assert select_top_k(s, 1).tolist() == [[0], [2]]
    assert select_top_k(s, 2).tolist() == [[0, 2], [2, 0]]
    assert select_top_k(s, 10).shape == (2, 3)


def test_selector_picks_the_matching_reference(tiny_model, ref_images):
    bank = ReferenceBank.from_images(ref_images, ["a", "b", "c"], crop=32)
    feats = RefFeatures(tiny_model, bank)
    assert feats.emb.shape == (len(bank), 2 * tiny_model.cfg.lte_channels[2])
    # the embedding of the degraded version of crop i (its LR↑) must select crop i itself
    with torch.no_grad():
        for i in (0, 7, 20):
            ref = bank.tensor([i])
            lr = torch.nn.functional.avg_pool2d(ref, 4)
            emb = tiny_model.embed(tiny_model.query(tiny_model.upsample(lr)))
            assert feats.select(emb, 1).item() == i


def test_feature_cache_is_bounded_and_recomputes(tiny_model, ref_images):
    bank = ReferenceBank.from_images(ref_images, ["a", "b", "c"], crop=32)
    feats = RefFeatures(tiny_model, bank, cache_mb=0.2)
    for i in range(len(bank)):
        feats.get(i)
    assert feats.computed == len(bank)
    assert 0 < feats._bytes <= 0.2 * 2**20 and len(feats._cache) < len(bank)
    keys, tables = feats.get(0)  # evicted early: recomputed
    assert feats.computed == len(bank) + 1
    feats.get(len(bank) - 1)  # recently used: cached
    assert feats.computed == len(bank) + 1
    full = RefFeatures(tiny_model, bank)
    k2, t2 = full.get(0)
    torch.testing.assert_close(keys, k2)
    torch.testing.assert_close(tables[0], t2[0])
