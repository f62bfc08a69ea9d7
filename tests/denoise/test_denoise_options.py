"""The parameters objects the CLI and the widgets share: DenoiseOptions, SynthOptions, TrainConfig's
described fields; and the sample pairs of the synthetic-data widget."""

import numpy as np
import pytest

from matrestore._validate import InputError
from matrestore.denoise.apply import DenoiseOptions, denoise_iter
from matrestore.denoise.synth import SynthOptions, sample_pairs_iter
from matrestore.denoise.train import TrainConfig
from matrestore.params import describe
from matrestore.progress import drive


@pytest.mark.parametrize("bad, word", [({"tile": 8}, "tile"), ({"batch": 0}, "batch"), ({"halo": -3}, "halo"),
                                       ({"colour": "keep"}, "colour"), ({"histogram": "yes"}, "histogram"),
                                       ({"tile": 2.5}, "tile")])
def test_denoise_options_check_names_the_bad_option(bad, word):
    with pytest.raises(InputError, match=word):
        DenoiseOptions(**bad).check()


def test_denoise_options_are_what_denoise_iter_takes(tiny_model):
    img = np.random.default_rng(0).random((40, 40))
    opts = DenoiseOptions(tile=None, histogram=False).check()
    a = drive(denoise_iter(img, tiny_model, **opts.kwargs()))
    b = drive(denoise_iter(img, tiny_model, tile=None, histogram=False))
    np.testing.assert_array_equal(a, b)
    assert set(describe(DenoiseOptions)) == {"tile", "halo", "batch", "histogram", "colour"}


def test_train_config_fields_are_described_and_from_dict_still_works():
    d = describe(TrainConfig)
    assert {"preset", "epochs", "patch", "structures", "lr", "schedule"} <= set(d)
    assert d["preset"][0].choices and "tiny" in d["preset"][0].choices.values()
    cfg = TrainConfig.from_dict({"epochs": 3, "grains": [5, 9], "unknown": 1})
    assert cfg.epochs == 3 and cfg.grains == (5, 9) and cfg.patch == 128


def test_sample_pairs_share_the_structure_and_differ_in_texture(real_texture):
    other = (255 - real_texture).astype(np.uint8)
    recs = []
    res = drive(sample_pairs_iter([(real_texture, "a"), (other, "b")], SynthOptions(size=64, n_grains=12, steps=30,
                                                                                     seed=1)), recs.append)
    p, q = res["pairs"]
    assert res["names"] == ["a", "b"] and p.noisy.shape == (64, 64)
    np.testing.assert_array_equal(p.clean, q.clean)
    np.testing.assert_array_equal(p.labels, res["structure"].labels)
    assert not np.allclose(p.noisy, q.noisy)
    assert any(r.get("phase") == "pairs" for r in recs)
    with pytest.raises(InputError, match="too small"):
        drive(sample_pairs_iter([real_texture], SynthOptions(size=256)))
    with pytest.raises(InputError, match="at least one real"):
        drive(sample_pairs_iter([], SynthOptions()))
    with pytest.raises(InputError, match="mix"):
        SynthOptions(mix=2.0).check()
    assert drive(sample_pairs_iter([real_texture], SynthOptions(size=64, steps=30), cancel=True)) is None
