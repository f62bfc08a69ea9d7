"""Screenshot of the scan-enhance-rescan widget on a real SEM micrograph (run under xvfb-run).

    xvfb-run -a .venv/bin/python scripts/screenshot_rescan.py [docs/images/rescan_widget.png]
"""

import sys
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from matrestore import _samples
from matrestore._widgets.rescan import RescanWidget

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _shot import isolate_settings  # noqa: E402


def main(out="docs/images/rescan_widget.png"):
    isolate_settings()
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    (data, kwargs, _), = _samples.sem_sample()
    viewer.add_image(data, **kwargs)
    w = RescanWidget(viewer)
    viewer.window.add_dock_widget(w, name="Scan-enhance-rescan", area="right")
    w.source_combo.setCurrentText("dark features (voids)")
    w.percentile.setValue(98.5)
    w.min_size.setValue(12)
    w.margin.setValue(10)
    w.propose()
    app = QApplication.instance()
    for _ in range(200):
        app.processEvents()
        if w.rois():
            break
        import time

        time.sleep(0.05)
    for _ in range(20):
        app.processEvents()
    viewer.layers.selection.active = viewer.layers[f"{kwargs['name']}_rois"]
    viewer.reset_view()
    for _ in range(20):
        app.processEvents()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(out, canvas_only=False)
    print(f"wrote {out}: {len(w.rois())} ROIs, {w.stats_label.text()}")
    viewer.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
