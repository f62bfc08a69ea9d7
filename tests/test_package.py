"""Packaging and architecture checks: manifest, core without Qt/napari."""

import importlib.resources
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ["matrestore.metrics", "matrestore.baselines", "matrestore.degrade", "matrestore.evaluation",
        "matrestore.io", "matrestore.cli"]


def test_manifest_shipped_in_package_equals_top_level():
    shipped = importlib.resources.files("matrestore") / "napari.yaml"
    assert shipped.is_file()
    assert shipped.read_text() == (ROOT / "napari.yaml").read_text()


def test_manifest_validates_and_commands_import():
    npe2 = pytest.importorskip("npe2")
    pm = npe2.PluginManifest.from_file(ROOT / "napari.yaml")
    assert pm.name == "napari-matrestore"
    r = subprocess.run([sys.executable, "-m", "npe2", "validate", "napari-matrestore"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    # every command's python_name resolves to a callable
    import importlib

    for cmd in pm.contributions.commands:
        mod, _, attr = cmd.python_name.partition(":")
        assert callable(getattr(importlib.import_module(mod), attr)), cmd.python_name


def test_core_modules_import_no_gui():
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in CORE)
        + "bad = [m for m in sys.modules if m.split('.')[0] in ('qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'napari', 'magicgui')]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
