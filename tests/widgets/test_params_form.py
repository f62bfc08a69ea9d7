"""ParamForm: controls made from a parameters dataclass give the engine's values and remember them."""

from qtpy.QtWidgets import QComboBox, QDoubleSpinBox, QSpinBox

from matrestore._widgets._params import ParamForm
from matrestore._widgets._settings import WidgetSettings
from matrestore.sr.enhance import EnhanceOptions
from matrestore.sr.train import TrainConfig


def test_controls_values_and_settings(qtbot):
    settings = WidgetSettings("test_params")
    form = ParamForm(EnhanceOptions, settings=settings)
    qtbot.addWidget(form)
    assert isinstance(form.control("tile"), QSpinBox) and isinstance(form.control("mode"), QComboBox)
    assert form.control("tile").specialValueText() == "auto"
    assert form.control("tile").toolTip().startswith("Tile side")
    assert form.values() == {"tile": None, "batch": None, "top_k": None, "mode": "fast", "uncertainty": None}
    form.set_value("tile", 256)
    form.set_value("mode", "paper")
    assert form.value("tile") == 256 and form.value("mode") == "paper"
    again = ParamForm(EnhanceOptions, settings=WidgetSettings("test_params"))  # the next session
    qtbot.addWidget(again)
    assert again.value("tile") == 256 and again.value("mode") == "paper"
    settings.restore_defaults()
    assert form.values()["tile"] is None and form.value("mode") == "fast"
    assert EnhanceOptions(**form.values()).check() == EnhanceOptions()


def test_floats_and_given_defaults(qtbot):
    form = ParamForm(TrainConfig, names=["epochs", "lr_max", "noise"], defaults={"epochs": 4})
    qtbot.addWidget(form)
    assert isinstance(form.control("lr_max"), QDoubleSpinBox) and form.control("lr_max").decimals() == 5
    assert form.values() == {"epochs": 4, "lr_max": 5e-4, "noise": None}
    form.set_value("noise", 0.01)
    assert form.value("noise") == 0.01
