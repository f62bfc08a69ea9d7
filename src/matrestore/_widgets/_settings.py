"""Remembered widget settings (between napari sessions) with "restore defaults".

A dock widget binds its controls once::

    self.settings = WidgetSettings("enhance")
    self.settings.bind("tile", self.tile_spin, default=0)
    self.settings.bind("mode", self.mode_combo, default="fast (whole-image quality)")
    ...
    restore_button.clicked.connect(self.settings.restore_defaults)

:meth:`WidgetSettings.bind` sets the control to the stored value (when there is a valid one), then saves
every change the user makes. Stored values live in ``QSettings`` (organisation ``matrestore``); when the
environment variable ``MATRESTORE_SETTINGS`` names a file, an INI file there is used instead (the tests
point it at a temporary folder so that they never read or write the user's settings).

Supported controls: QSpinBox, QDoubleSpinBox, QCheckBox, QRadioButton, checkable QGroupBox, QLineEdit,
QComboBox (stored by item text; a stored text that is no longer offered is ignored). Only plain
parameters are remembered, never layers or data.

:func:`set_remembered` sets settings of another widget (e.g. the Denoise train widget hands its trained
model to "Denoise: apply") without importing it: stored for the next time it opens, and applied to its
controls at once where such a widget is open.
"""

from __future__ import annotations

import os
import weakref

from qtpy.QtCore import QSettings
from qtpy.QtWidgets import (
    QAbstractButton,
    QComboBox,
    QDoubleSpinBox,
    QGroupBox,
    QLineEdit,
    QSpinBox,
)

__all__ = ["WidgetSettings", "ENV_VAR", "qsettings", "set_remembered"]

ENV_VAR = "MATRESTORE_SETTINGS"
ORG, APP = "matrestore", "matrestore"
_LIVE: "weakref.WeakSet[WidgetSettings]" = weakref.WeakSet()  # the settings of the widgets alive now


def qsettings() -> QSettings:
    """The settings store: the INI file named by ``$MATRESTORE_SETTINGS`` or the user's QSettings."""
    path = os.environ.get(ENV_VAR)
    if path:
        return QSettings(path, QSettings.Format.IniFormat)
    return QSettings(ORG, APP)


def _get(w):
    if isinstance(w, (QSpinBox, QDoubleSpinBox)):
        return w.value()
    if isinstance(w, QComboBox):
        return w.currentText()
    if isinstance(w, QGroupBox):
        return w.isChecked()
    if isinstance(w, QAbstractButton):
        return w.isChecked()
    if isinstance(w, QLineEdit):
        return w.text()
    raise TypeError(f"unsupported control {type(w).__name__}")


def _set(w, value) -> bool:
    """Put ``value`` into ``w``; False when the value does not fit the control (then nothing changes)."""
    try:
        if isinstance(w, QSpinBox):
            v = int(float(value))
            if not w.minimum() <= v <= w.maximum():
                return False
            w.setValue(v)
        elif isinstance(w, QDoubleSpinBox):
            v = float(value)
            if not w.minimum() <= v <= w.maximum():
                return False
            w.setValue(v)
        elif isinstance(w, QComboBox):
            i = w.findText(str(value))
            if i < 0:
                return False
            w.setCurrentIndex(i)
        elif isinstance(w, (QGroupBox, QAbstractButton)):
            b = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
            w.setChecked(b)
        elif isinstance(w, QLineEdit):
            w.setText(str(value))
        else:
            return False
    except (TypeError, ValueError):
        return False
    return True


def _signal(w):
    if isinstance(w, (QSpinBox, QDoubleSpinBox)):
        return w.valueChanged
    if isinstance(w, QComboBox):
        return w.currentIndexChanged
    if isinstance(w, QGroupBox):
        return w.toggled
    if isinstance(w, QAbstractButton):
        return w.toggled
    if isinstance(w, QLineEdit):
        return w.editingFinished
    raise TypeError(f"unsupported control {type(w).__name__}")


class WidgetSettings:
    """The remembered settings of one widget (a QSettings group named ``group``)."""

    def __init__(self, group: str):
        self.group = group
        self._bound: dict[str, tuple] = {}
        self._restoring = False
        _LIVE.add(self)

    def _key(self, key: str) -> str:
        return f"{self.group}/{key}"

    def bind(self, key: str, widget, default=None) -> None:
        """Remember ``widget``'s value under ``key``; ``default`` (else its current value) is what
        :meth:`restore_defaults` puts back. Applies the stored value now, if valid."""
        default = _get(widget) if default is None else default
        self._bound[key] = (widget, default)
        stored = qsettings().value(self._key(key))
        if stored is not None:
            _set(widget, stored)
        _signal(widget).connect(lambda *_: self.save(key))

    def save(self, key: str | None = None) -> None:
        """Store the current value of one bound control (or all)."""
        if self._restoring:
            return
        s = qsettings()
        for k in [key] if key else list(self._bound):
            s.setValue(self._key(k), _get(self._bound[k][0]))
        s.sync()

    def restore_defaults(self) -> None:
        """Put every bound control back to its default and forget the stored values."""
        self._restoring = True
        try:
            for widget, default in self._bound.values():
                _set(widget, default)
        finally:
            self._restoring = False
        s = qsettings()
        s.remove(self.group)
        s.sync()

    def values(self) -> dict:
        """The current values of the bound controls (for logs and tests)."""
        return {k: _get(w) for k, (w, _) in self._bound.items()}


def set_remembered(group: str, values: dict) -> int:
    """Store ``values`` (``{key: value}``, applied in that order) as the remembered settings of the widget
    group ``group`` and put them into the bound controls of every open widget of that group (their change
    signals fire as if the user had set them). Returns how many open widgets took them."""
    s = qsettings()
    for key, value in values.items():
        s.setValue(f"{group}/{key}", value)
    s.sync()
    n = 0
    for ws in list(_LIVE):
        if ws.group != group:
            continue
        took = False
        for key, value in values.items():
            if key in ws._bound:
                try:
                    took |= _set(ws._bound[key][0], value)
                except RuntimeError:  # the widget's controls are gone (closed)
                    break
        n += int(took)
    return n
