"""Controls made from an engine's parameters dataclass (:mod:`matrestore.params`): one place for every
option's default, range, label, tooltip and remembered-settings key.

    form = ParamForm(EnhanceOptions, settings=self.settings)     # a QFormLayout of labelled controls
    form.values()                   # {"tile": None, "batch": None, "mode": "fast", ...}: what the engine takes
    form.control("tile")            # the QSpinBox, for tests and special wiring
    form.changed.connect(...)       # any control changed

A spin box whose parameter has ``special`` shows that text at its minimum and gives ``None`` there; a
combo box shows the texts of ``choices`` and gives their values. "Restore defaults" of the widget's
:class:`~._settings.WidgetSettings` puts back the dataclass defaults (or the ``defaults`` given here).
"""

from __future__ import annotations

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QSpinBox, QWidget

from ..params import Param, describe

__all__ = ["ParamForm", "make_control"]


def make_control(p: Param, default):
    """The control for one parameter, showing ``default``."""
    if p.choices:
        box = QComboBox()
        box.addItems(list(p.choices))
        texts = [t for t, v in p.choices.items() if v == default]
        if texts:
            box.setCurrentText(texts[0])
    elif isinstance(default, bool):
        box = QCheckBox()
        box.setChecked(default)
    else:
        is_float = p.decimals is not None or isinstance(default, float)
        box = QDoubleSpinBox() if is_float else QSpinBox()
        if is_float:
            box.setDecimals(p.decimals if p.decimals is not None else 3)
        lo = p.min if p.min is not None else (0 if is_float else 0)
        hi = p.max if p.max is not None else (1e12 if is_float else 2**31 - 1)
        box.setRange(lo if is_float else int(lo), hi if is_float else int(hi))
        if p.step is not None:
            box.setSingleStep(p.step if is_float else int(p.step))
        if p.suffix:
            box.setSuffix(p.suffix)
        if p.special:
            box.setSpecialValueText(p.special)
        box.setValue(lo if default is None else default)
    box.setToolTip(p.tip)
    return box


class ParamForm(QWidget):
    """Labelled controls for the described fields of ``cls`` (``names``: a subset, in that order),
    showing ``defaults`` where given (else the dataclass defaults), remembered in ``settings``."""

    changed = Signal()

    def __init__(self, cls, names=None, defaults=None, settings=None, parent=None):
        super().__init__(parent)
        described = describe(cls)
        names = list(names) if names is not None else list(described)
        self.form = QFormLayout(self)
        self.form.setContentsMargins(0, 0, 0, 0)
        self.params: dict[str, Param] = {}
        self.controls: dict = {}
        for name in names:
            p, default = described[name]
            default = (defaults or {}).get(name, default)
            ctrl = make_control(p, default)
            self.form.addRow(p.label, ctrl)
            self.params[name], self.controls[name] = p, ctrl
            sig = ctrl.currentIndexChanged if isinstance(ctrl, QComboBox) else (
                ctrl.toggled if isinstance(ctrl, QCheckBox) else ctrl.valueChanged)
            sig.connect(lambda *_: self.changed.emit())
        if settings is not None:
            for name, ctrl in self.controls.items():
                settings.bind(self.params[name].key or name, ctrl)

    def control(self, name: str):
        return self.controls[name]

    def value(self, name: str):
        """The engine value of one parameter (``None`` for a special value, a choice's value)."""
        p, c = self.params[name], self.controls[name]
        if isinstance(c, QComboBox):
            return p.choices[c.currentText()]
        if isinstance(c, QCheckBox):
            return c.isChecked()
        if p.special and c.value() == c.minimum():
            return None
        return c.value()

    def values(self) -> dict:
        return {name: self.value(name) for name in self.controls}

    def set_value(self, name: str, value) -> None:
        p, c = self.params[name], self.controls[name]
        if isinstance(c, QComboBox):
            c.setCurrentText(next(t for t, v in p.choices.items() if v == value))
        elif isinstance(c, QCheckBox):
            c.setChecked(bool(value))
        else:
            c.setValue(c.minimum() if value is None else value)

    def add_row(self, label: str, widget, after: str | None = None) -> None:
        """A row that is not a parameter (e.g. the device choice), in the same form: at the end, or right
        after the parameter ``after``."""
        if after is None:
            self.form.addRow(label, widget)
        else:
            self.form.insertRow(list(self.controls).index(after) + 1, label, widget)
