"""Scan-enhance-rescan dock widget: propose and edit regions of interest, see the time they cost,
export them for the microscope and bring the high-resolution rescans back.

Thin layer over :mod:`matrestore.ser`: every number shown here comes from there. The proposal and
time options are remembered between sessions; "Restore defaults" sets them back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPen
from qtpy.QtWidgets import (
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from .. import ser
from .._layerdata import ROLE_KEY
from .._validate import InputError
from ._layers import LayerCombo, LayerDock, combo_box, put_image, same_layer, spatial_units
from ._plot import PlotWidget
from ._worker import ERROR_STYLE, State

SOURCES = {
    "dark features (voids)": "low",
    "bright features": "high",
    "high values of a map layer (e.g. uncertainty)": "map",
}


def _duration(minutes: float) -> str:
    """A scan time for people: minutes from one minute on, else seconds or milliseconds."""
    m = abs(float(minutes))
    if m >= 1:
        return f"{m:.2f} min"
    return f"{m * 60:.1f} s" if m * 60 >= 1 else f"{m * 60e3:.3g} ms"


def _unit_of(layer) -> str:
    return str(layer.metadata.get("unit", layer.metadata.get("pixel_size_unit", "px"))) if layer is not None else "px"


class TimePlot(PlotWidget):
    """Fig. 11 of the SEM paper: t_SER/t_HR against A_interest/A_total, with this session's point."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMinimumHeight(150)
        self.offset = 1 / 16  # (dwell_lr / dwell_hr) / s²
        self.fraction = 0.0
        self.setToolTip("Relative imaging time of scan-enhance-rescan against a full high-resolution scan.\n"
                        "Blue: time is saved. The dot marks the regions picked now.")

    def set_state(self, offset: float, fraction: float) -> None:
        self.offset, self.fraction = float(offset), float(fraction)
        self.update()

    def paintEvent(self, event):  # noqa: N802 (Qt API)
        p = self._begin()
        left, _, pw, _ = self._area()
        ymax = max(1.2, self.offset + 1.05)
        pt = self._mapper(0, 1, 0, ymax)
        be = min(max(1 - self.offset, 0.0), 1.0)
        saved = QRectF(pt(0, ymax), pt(be, 0))
        p.fillRect(saved, QColor(40, 90, 160, 110))
        axis = self._draw_axes(p, pt, 0, 1, 0, ymax)
        p.setPen(QPen(QColor(160, 160, 160), 1, Qt.DashLine))
        p.drawLine(pt(0, 1), pt(1, 1))
        p.setPen(QPen(QColor(255, 200, 60), 2))
        p.drawLine(pt(0, self.offset), pt(1, self.offset + 1))
        y = self.offset + self.fraction
        p.setBrush(QColor(255, 80, 80))
        p.setPen(Qt.NoPen)
        p.drawEllipse(pt(self.fraction, y), 5, 5)
        p.setPen(axis)
        for x in (0, 0.5, 1):
            p.drawText(pt(x, 0) + QPointF(-8, 14), f"{x:g}")
        for yy in (0, 0.5, 1) if ymax <= 2 else (0, round(ymax / 2), int(ymax)):  # labels that do not overlap
            p.drawText(pt(0, yy) + QPointF(-30, 4), f"{yy:g}")
        p.drawText(QPointF(left + pw / 2 - 50, self.height() - 6), "A_interest / A_total")  # room for the underscore
        p.drawText(pt(0, ymax) + QPointF(4, 12), "t_SER / t_HR")
        p.end()


class RescanWidget(LayerDock):
    """Pick regions of interest on an enhanced micrograph and plan their high-resolution rescan."""

    settings_group = "rescan"

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self._unconfirmed: str | None = None  # a rescan placed with low confidence, awaiting the user's word
        self.rois_layer = None
        self.last_stats: dict = {}
        self._dwell_for = None  # the image whose file's dwell time was last put into the dwell boxes

        lay = QVBoxLayout(self)
        form = QFormLayout()
        self.image_combo = LayerCombo("The enhanced (or any) 2-D micrograph on which regions of interest are picked.")
        form.addRow("image", self.image_combo)
        lay.addLayout(form)

        g = QGroupBox("Propose regions")
        f = QFormLayout(g)
        self.source_combo = combo_box(SOURCES, "What makes a region interesting: dark features such as voids, "
                                               "bright features, or high values of another layer (an uncertainty map).")
        self.map_combo = LayerCombo("Score layer (same shape as the image) for the 'map layer' source.")
        self.percentile = QDoubleSpinBox(minimum=50.0, maximum=99.99, value=97.0, singleStep=0.5, decimals=2)
        self.percentile.setToolTip("Pixels beyond this percentile of the score are candidates "
                                   "(for dark features: below 100 - percentile).")
        self.min_size = QSpinBox(minimum=1, maximum=4096, value=16)
        self.min_size.setToolTip("Smallest region kept: at least min_size² pixels.")
        self.margin = QSpinBox(minimum=0, maximum=4096, value=16)
        self.margin.setToolTip("Margin in pixels added around each region before rescanning.")
        self.max_rois = QSpinBox(minimum=1, maximum=1000, value=30)
        self.max_rois.setToolTip("At most this many regions, strongest first.")
        self.propose_btn = QPushButton("Propose regions")
        self.propose_btn.setToolTip("Replace the rectangles in the ROI layer by proposed ones. Edit them "
                                    "afterwards: add, move, resize or delete rectangles in the Shapes layer.")
        f.addRow("source", self.source_combo)
        f.addRow("map layer", self.map_combo)
        f.addRow("percentile", self.percentile)
        f.addRow("min size (px)", self.min_size)
        f.addRow("margin (px)", self.margin)
        f.addRow("max regions", self.max_rois)
        f.addRow(self.propose_btn)
        lay.addWidget(g)

        t = QGroupBox("Time (eq. 10)")
        tf = QFormLayout(t)
        self.scale = QSpinBox(minimum=1, maximum=32, value=4)
        self.scale.setToolTip("Resolution factor between the low-resolution scan and the rescan.")
        self.dwell_lr = QDoubleSpinBox(minimum=0.01, maximum=1e5, value=100.0, decimals=2, suffix=" µs")
        self.dwell_lr.setToolTip("Dwell time per pixel of the low-resolution scan.")
        self.dwell_hr = QDoubleSpinBox(minimum=0.01, maximum=1e5, value=100.0, decimals=2, suffix=" µs")
        self.dwell_hr.setToolTip("Dwell time per pixel of the high-resolution (re)scan.")
        self.stats_label = QLabel("no regions yet")
        self.stats_label.setWordWrap(True)
        self.stats_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.plot = TimePlot()
        tf.addRow("scale", self.scale)
        tf.addRow("dwell LR", self.dwell_lr)
        tf.addRow("dwell HR", self.dwell_hr)
        tf.addRow(self.stats_label)
        tf.addRow(self.plot)
        lay.addWidget(t)

        e = QGroupBox("Export and rescan")
        ef = QFormLayout(e)
        row = QHBoxLayout()
        self.stage_x = QDoubleSpinBox(minimum=-1e9, maximum=1e9, value=0.0, decimals=3, suffix=" µm")
        self.stage_y = QDoubleSpinBox(minimum=-1e9, maximum=1e9, value=0.0, decimals=3, suffix=" µm")
        for sb in (self.stage_x, self.stage_y):
            sb.setToolTip("Stage position of the image's top-left corner, added to the exported coordinates.")
        row.addWidget(self.stage_x)
        row.addWidget(self.stage_y)
        ef.addRow("stage origin x, y", row)
        self.export_btn = QPushButton("Export ROIs (CSV + JSON)…")
        self.export_btn.setToolTip("Write the regions with pixel and physical (µm) coordinates for a microscope script.")
        self.rescan_btn = QPushButton("Load HR rescan…")
        self.rescan_btn.setToolTip("Open a high-resolution rescan: it is registered onto the image, shown in "
                                   "place and marked as a reference for the next enhancement of this sample.")
        self.rescan_label = QLabel("")
        self.rescan_label.setWordWrap(True)
        self.confirm_btn = QPushButton("Use it as a reference anyway")
        self.confirm_btn.setToolTip("The rescan's placement has a low confidence (it may not show this field): mark "
                                    "it as a reference for the next enhancement only if you are sure it does.")
        self.confirm_btn.setVisible(False)
        ef.addRow(self.export_btn)
        ef.addRow(self.rescan_btn)
        ef.addRow(self.rescan_label)
        ef.addRow(self.confirm_btn)
        lay.addWidget(e)
        lay.addLayout(self._defaults_row("Set the proposal options (source, percentile, sizes, max regions) and "
                                         "the time options (scale, dwell times) back to their defaults. "
                                         "(They are remembered between sessions.)"))
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        lay.addStretch(1)
        self._start_runner(None, None, self.status)

        self.propose_btn.clicked.connect(self.propose)
        self.export_btn.clicked.connect(self._export_dialog)
        self.rescan_btn.clicked.connect(self._rescan_dialog)
        self.confirm_btn.clicked.connect(self.confirm_reference)
        self.image_combo.currentIndexChanged.connect(self._on_image_changed)
        self.source_combo.currentIndexChanged.connect(self._sync_enabled)
        for sb in (self.scale, self.dwell_lr, self.dwell_hr):
            sb.valueChanged.connect(self.update_stats)
        self._remember({"source": self.source_combo, "percentile": self.percentile, "min_size": self.min_size,
                        "margin": self.margin, "max_regions": self.max_rois, "scale": self.scale,
                        "dwell_lr": self.dwell_lr, "dwell_hr": self.dwell_hr})
        self._watch_layers()
        self._sync_enabled()

    # ------------------------------------------------------------------ layers
    def _image_layers(self):
        return [l for l in super()._image_layers() if l.ndim == 2 and not l.rgb]

    def _refresh_layers(self, event=None):
        layers = self._image_layers()
        for combo in (self.image_combo, self.map_combo):
            combo.fill(layers, layers[0] if layers else None)
        self._on_image_changed()

    def _sync_enabled(self, *_):
        self.map_combo.setEnabled(SOURCES[self.source_combo.currentText()] == "map")

    def image_layer(self):
        return self.image_combo.layer()

    def restore_defaults(self) -> None:
        super().restore_defaults()
        self._dwell_from_file(again=True)
        self.update_stats()

    def _message(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet(ERROR_STYLE if error else "")

    def _follow_state(self, state) -> None:
        busy = state is State.RUNNING
        for b in (self.propose_btn, self.rescan_btn):
            b.setEnabled(not busy)

    def _dwell_from_file(self, again: bool = False) -> None:
        """The instrument's dwell time from the image's file metadata, as the dwell time of both the LR
        scan and the HR rescan (equal dwell times, as in the paper); once per chosen image (``again``:
        once more), so that the user's edits survive changes to the layer list. Not remembered as a
        setting: it belongs to this image."""
        layer = self.image_layer()
        if layer is None or (layer is self._dwell_for and not again):
            return
        self._dwell_for = layer
        dwell = (layer.metadata or {}).get("dwell_time_us")
        if isinstance(dwell, (int, float)) and not isinstance(dwell, bool) and dwell > 0:
            for box in (self.dwell_lr, self.dwell_hr):
                box.blockSignals(True)
                box.setValue(float(dwell))
                box.blockSignals(False)

    def _on_image_changed(self, *_):
        layer = self.image_layer()
        if layer is None:
            return
        self._dwell_from_file()
        name = f"{layer.name}_rois"
        if self.rois_layer is not None and self.rois_layer.name == name and name in self.viewer.layers:
            self.update_stats()
            return
        existing = self.viewer.layers[name] if name in self.viewer.layers else None
        self._attach_rois_layer(existing)
        self.update_stats()

    def _attach_rois_layer(self, layer):
        if self.rois_layer is not None:
            try:
                self.rois_layer.events.data.disconnect(self.update_stats)
            except (TypeError, ValueError, RuntimeError):
                pass
        self.rois_layer = layer
        if layer is not None:
            layer.events.data.connect(self.update_stats)

    def _ensure_rois_layer(self):
        image = self.image_layer()
        name = f"{image.name}_rois"
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
        else:
            width = max(2.0, max(image.data.shape[-2:]) / 400.0)
            layer = self.viewer.add_shapes(
                name=name, shape_type="rectangle", edge_color="yellow", face_color=[1, 1, 0, 0.08],
                edge_width=width, scale=image.scale[-2:], translate=image.translate[-2:],
                metadata={"matrestore_rois_for": image.name},
                **({"units": spatial_units(image)} if spatial_units(image) else {}),
            )
            layer.mode = "select"
        if not same_layer(layer, self.rois_layer):
            self._attach_rois_layer(layer)
        return layer

    # ------------------------------------------------------------------ proposing
    def _score(self):
        image = self.image_layer()
        if image is None:
            raise InputError("open or pick an image layer first.")
        kind = SOURCES[self.source_combo.currentText()]
        if kind == "map":
            map_layer = self.map_combo.layer()
            if map_layer is None:
                raise InputError("pick the map layer that scores the regions (e.g. an uncertainty map).")
            name = map_layer.name
            score = np.asarray(map_layer.data)
            if score.shape != tuple(image.data.shape):
                raise InputError(f"map layer {name!r} has shape {score.shape}, the image {tuple(image.data.shape)}; "
                                 "they must match.")
            return score, "high"
        return np.asarray(image.data), kind

    def propose(self):
        """Propose ROIs (off the GUI thread) and put them into the ROI Shapes layer."""
        try:
            score, mode = self._score()
        except InputError as exc:
            self.runner.fail(exc)
            return None
        params = dict(percentile=self.percentile.value(), min_size=self.min_size.value(),
                      margin=self.margin.value(), max_rois=self.max_rois.value(), mode=mode)

        def job(cancel=None):
            return ser.propose_rois(score, **params)

        return self.runner.start(job, on_returned=self._set_rois, message="proposing regions…")

    def _set_rois(self, rois):
        layer = self._ensure_rois_layer()
        corners = ser.rois_to_corners(rois)
        layer.data = []
        if corners:
            layer.add_rectangles(corners, edge_color="yellow", face_color=[1, 1, 0, 0.08])
        self._message(f"{len(rois)} region(s) proposed; edit them in the '{layer.name}' layer.")
        self.update_stats()

    def rois(self) -> list[tuple]:
        """The current ROI boxes in image pixels (after the user's edits)."""
        image = self.image_layer()
        if image is None or self.rois_layer is None or self.rois_layer.name not in self.viewer.layers:
            return []
        return ser.corners_to_rois(self.rois_layer.data, shape=image.data.shape[-2:])

    # ------------------------------------------------------------------ time
    def update_stats(self, *_):
        image = self.image_layer()
        if image is None:
            self.stats_label.setText("no image")
            return
        shape = image.data.shape[-2:]
        rois = self.rois()
        frac = ser.area_fraction(rois, shape)
        s = self.scale.value()
        shape_lr = (max(shape[0] // s, 1), max(shape[1] // s, 1))
        t = ser.scan_times(shape_lr, frac, scale=s, dwell_lr_us=self.dwell_lr.value(), dwell_hr_us=self.dwell_hr.value())
        self.last_stats = {"n_rois": len(rois), "area_fraction": frac, **t}
        verdict = "saves" if t["ratio"] < 1 else "costs"
        self.stats_label.setText(
            f"{len(rois)} region(s): A_interest/A_total = {100 * frac:.2f} %\n"
            f"t_SER/t_HR = {t['ratio']:.3f}  (LR scan {_duration(t['t_lr_min'])} + rescan "
            f"{_duration(t['t_rescan_min'])} vs full HR {_duration(t['t_hr_min'])}: {verdict} "
            f"{_duration(t['saved_min'])})\n"
            f"break-even at {100 * t['break_even']:.1f} % of the area"
        )
        self.plot.set_state(1 - t["break_even"], frac)

    # ------------------------------------------------------------------ export
    def export(self, path) -> tuple[Path, Path]:
        """Write ``<path>.csv`` and ``<path>.json`` (suffix of ``path`` ignored)."""
        image = self.image_layer()
        if image is None:
            raise InputError("no image layer.")
        base = Path(path).with_suffix("")
        unit = _unit_of(image)
        recs = ser.rois_to_records(self.rois(), scale=image.scale[-2:], translate=image.translate[-2:],
                                   unit=unit if unit in ("nm", "um", "µm", "mm") else "px",
                                   stage_origin_um=(self.stage_x.value(), self.stage_y.value()))
        csv_path = ser.write_rois_csv(base.with_suffix(".csv"), recs)
        json_path = ser.write_rois_json(base.with_suffix(".json"), recs, image=image.name, unit="um",
                                        layer_unit=unit, stats=self.last_stats)
        self._message(f"wrote {csv_path} and {json_path}")
        return csv_path, json_path

    def _export_dialog(self):
        path, _ = QFileDialog.getSaveFileName(self, "Export regions of interest", "rois.csv", "CSV (*.csv)")
        if path:
            try:
                self.export(path)
            except (InputError, OSError) as exc:
                self.runner.fail(str(exc))

    # ------------------------------------------------------------------ rescan feedback
    def add_rescan(self, data, name: str = "rescan", pixel_size=None, guess=None, search=None):
        """Register an HR rescan onto the image (off the GUI thread), then show it in place as a
        reference layer. ``pixel_size`` in the image layer's unit; None: same as the image."""
        image = self.image_layer()
        if image is None:
            self.runner.fail("pick the image the rescan belongs to first.")
            return None
        img = np.asarray(image.data)
        patch = np.asarray(data)
        factor = 1.0 if pixel_size is None else float(pixel_size) / float(image.scale[-1])

        def work(cancel=None):
            from skimage.transform import rescale

            p = patch if abs(factor - 1) < 1e-6 else rescale(patch.astype(np.float64), factor, anti_aliasing=factor < 1,
                                                             preserve_range=True)
            return ser.register(img, p, search=search, guess=guess or (0, 0))

        def done(reg):
            translate = np.asarray(image.translate[-2:]) + np.array([reg.row, reg.col]) * np.asarray(image.scale[-2:])
            if factor != 1.0:  # pixel centres of the finer rescan relative to the image's pixel (row, col)
                translate = translate - 0.5 * np.asarray(image.scale[-2:]) + 0.5 * float(pixel_size)
            px = float(pixel_size) if pixel_size is not None else float(image.scale[-1])
            meta = {"registered_to": image.name, "offset_px": [reg.row, reg.col], "ssim": reg.ssim,
                    "registration_correlation": reg.correlation, "unit": _unit_of(image)}
            if reg.confident:  # only a trusted placement becomes a reference without asking
                meta[ROLE_KEY] = "reference"
            layer = put_image(self.viewer, name, patch, (px, px), translate, meta, units=spatial_units(image),
                              contrast_limits=tuple(image.contrast_limits), colormap="gray", blending="translucent")
            layer.contrast_limits = tuple(image.contrast_limits)  # the image's contrast, also on a second load
            self._unconfirmed = None if reg.confident else layer.name
            self.confirm_btn.setVisible(not reg.confident)
            if reg.confident:
                self.rescan_label.setStyleSheet("")
                self.rescan_label.setText(f"{name}: placed at {reg.describe()}; marked as a reference for the next "
                                          "enhancement.")
            else:
                self.rescan_label.setStyleSheet(ERROR_STYLE)
                self.rescan_label.setText(f"{name}: placed at {reg.describe()}. Not marked as a reference.")
                from napari.utils.notifications import show_warning

                show_warning(f"matrestore: rescan '{name}' placed with low confidence "
                             f"(correlation {reg.correlation:.2f}); not marked as a reference.")

        return self.runner.start(work, on_returned=done, message="registering the rescan…")

    def confirm_reference(self) -> None:
        """Mark the last rescan placed with low confidence as a reference (the user has confirmed it)."""
        name = self._unconfirmed
        if name and name in self.viewer.layers:
            layer = self.viewer.layers[name]
            layer.metadata = {**layer.metadata, ROLE_KEY: "reference", "reference_confirmed_by_user": True}
            self.rescan_label.setStyleSheet("")
            self.rescan_label.setText(f"{name}: marked as a reference (confirmed by you despite the low confidence).")
        self._unconfirmed = None
        self.confirm_btn.setVisible(False)

    def _rescan_dialog(self):
        from .. import io

        path, _ = QFileDialog.getOpenFileName(self, "Open a high-resolution rescan", "", "Images (*.tif *.tiff *.png *.jpg)")
        if not path:
            return
        try:
            data, meta = io.read_image(path)
        except InputError as exc:
            self.runner.fail(exc)
            return
        px = meta.get("pixel_size")
        unit = _unit_of(self.image_layer())
        factor = {"nm": 1.0, "um": 1e-3, "µm": 1e-3}.get(unit)
        self.add_rescan(data, name=Path(path).stem, pixel_size=None if (px is None or factor is None) else px * factor)
