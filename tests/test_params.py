"""One parameters object per engine: the dataclass fields describe their controls; defaults exist once."""

import dataclasses

import pytest

from matrestore._validate import InputError
from matrestore.params import defaults, describe
from matrestore.sr.enhance import EnhanceOptions
from matrestore.sr.train import FINE_TUNE, TrainConfig


@pytest.mark.parametrize("cls", [EnhanceOptions, TrainConfig])
def test_described_fields_have_a_label_a_tooltip_and_the_dataclass_default(cls):
    described = describe(cls)
    assert described
    fields = {f.name: f for f in dataclasses.fields(cls)}
    obj = cls()
    for name, (p, default) in described.items():
        assert p.label and len(p.tip) > 20, name
        assert getattr(obj, name) == default  # the widget's default is the engine's
        if p.choices:
            assert default in p.choices.values()
        elif default is None:
            assert p.special, f"{name}: None needs a special text ('auto', 'off')"
        else:
            assert p.min is None or p.min <= default, name
            assert p.max is None or default <= p.max, name
        assert name in fields


def test_fine_tune_overrides_only_described_training_options():
    assert set(FINE_TUNE) - {"adv_from"} <= set(defaults(TrainConfig))


def test_enhance_options_check_is_the_one_validation():
    assert EnhanceOptions().check() == EnhanceOptions()
    for bad, name in [({"tile": 3}, "tile"), ({"batch": 0}, "batch"), ({"top_k": -1}, "top_k"),
                      ({"mode": "best"}, "mode"), ({"uncertainty": 1}, "uncertainty")]:
        with pytest.raises(InputError, match=name):
            EnhanceOptions(**bad).check()
