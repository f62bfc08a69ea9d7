"""What the screenshot scripts share: default widget options, running a widget's job to its end,
letting the window settle, saving the whole window."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path


def isolate_settings() -> None:
    """Show the widgets' default options, whatever this computer's user has chosen in napari (a
    throw-away settings file; the user's settings are neither read nor changed)."""
    os.environ.setdefault("MATRESTORE_SETTINGS", str(Path(tempfile.mkdtemp(prefix="matrestore_settings_")) / "s.ini"))


def settle(rounds: int = 30) -> None:
    """Process Qt events for a moment so that the window is drawn completely."""
    from qtpy.QtWidgets import QApplication

    for _ in range(rounds):
        QApplication.processEvents()
        time.sleep(0.02)


def run_to_end(widget, what: str, limit_s: float) -> float:
    """Start ``widget``'s job (``widget.run()``), keep the GUI alive until it ends and return the seconds
    it took; exits with a message unless it ended DONE."""
    from qtpy.QtWidgets import QApplication

    from matrestore._widgets._worker import State

    widget.run()
    t0 = time.time()
    while widget.runner.state is State.RUNNING and time.time() - t0 < limit_s:
        QApplication.processEvents()
        time.sleep(0.02)
    if widget.runner.state is not State.DONE:
        raise SystemExit(f"{what} did not finish: {widget.runner.state} {widget.status.text()}")
    return time.time() - t0


def save(viewer, out) -> Path:
    """Screenshot of the whole napari window into ``out`` (folders made as needed)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out), canvas_only=False, flash=False)
    return out


def shoot_while_filling(widget, viewer, layer: str, out, *, hide=(), at: float = 0.5, limit_s: float = 900.0,
                        before_shot=None) -> Path:
    """Start ``widget``'s store run and save a screenshot once the store layer ``layer`` is shown and the
    progress bar has passed ``at`` of its range (so the picture shows the store filling in); then let the
    run finish. ``hide``: layers made invisible for the picture; ``before_shot(viewer)``: last touches.
    Exits with a message unless the run ends DONE."""
    from qtpy.QtWidgets import QApplication

    from matrestore._widgets._worker import State

    widget.run()
    t0 = time.time()
    shot = False

    def take():
        if layer in viewer.layers:
            viewer.layers.selection.active = viewer.layers[layer]
        for name in hide:
            if name in viewer.layers:
                viewer.layers[name].visible = False
        if before_shot is not None:
            before_shot(viewer)
        viewer.reset_view()
        settle(40)
        save(viewer, out)
        print(f"screenshot at: {widget.progress_label.text()}")

    while widget.runner.state is State.RUNNING and time.time() - t0 < limit_s:
        QApplication.processEvents()
        time.sleep(0.05)
        bar = widget.progress_bar
        if not shot and layer in viewer.layers and bar.maximum() > 0 and bar.value() >= bar.maximum() * at:
            take()
            shot = True
    if widget.runner.state is not State.DONE:
        raise SystemExit(f"did not finish: {widget.runner.state} {widget.status.text()}")
    print(widget.status.text())
    if not shot:
        take()
    return Path(out)
