"""Remembered widget settings: stored between widget instances, restore defaults, bad stored values ignored."""

from qtpy.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLineEdit, QSpinBox

from matrestore._widgets._settings import WidgetSettings, qsettings


def _controls():
    spin, dspin, combo, check, line = QSpinBox(), QDoubleSpinBox(), QComboBox(), QCheckBox(), QLineEdit()
    spin.setRange(0, 100)
    spin.setValue(10)
    dspin.setRange(0.0, 1.0)
    dspin.setValue(0.5)
    combo.addItems(["a", "b", "c"])
    line.setText("x")
    return spin, dspin, combo, check, line


def _bind(controls):
    s = WidgetSettings("test")
    for key, w in zip(("spin", "dspin", "combo", "check", "line"), controls):
        s.bind(key, w)
    return s


def test_values_survive_a_new_widget_and_defaults_restore(qtbot):
    c1 = _controls()
    _bind(c1)
    c1[0].setValue(42)
    c1[1].setValue(0.25)
    c1[2].setCurrentText("c")
    c1[3].setChecked(True)
    c1[4].setText("folder")
    c1[4].editingFinished.emit()

    c2 = _controls()  # a new widget (next napari session) starts from the stored values
    s2 = _bind(c2)
    assert s2.values() == {"spin": 42, "dspin": 0.25, "combo": "c", "check": True, "line": "folder"}

    s2.restore_defaults()
    assert s2.values() == {"spin": 10, "dspin": 0.5, "combo": "a", "check": False, "line": "x"}
    c3 = _controls()
    assert _bind(c3).values() == {"spin": 10, "dspin": 0.5, "combo": "a", "check": False, "line": "x"}


def test_invalid_stored_values_are_ignored(qtbot):
    s = qsettings()
    s.setValue("test/spin", 1000)  # out of range
    s.setValue("test/combo", "gone")  # no longer offered
    s.setValue("test/dspin", "not a number")
    s.sync()
    c = _controls()
    assert _bind(c).values()["spin"] == 10
    assert c[2].currentText() == "a"
    assert c[1].value() == 0.5


def test_settings_file_is_isolated(tmp_path):
    import os

    assert os.environ["MATRESTORE_SETTINGS"].startswith(str(tmp_path))
