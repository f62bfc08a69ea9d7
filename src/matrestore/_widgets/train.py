"""Train / fine-tune dock widget: teach the super-resolution network (TTSR) your own micrographs.

Thin over :func:`matrestore.sr.train` (the engine behind ``matrestore sr train`` too): the widget
collects the training data (HR image layers, whose LR versions are made by the 4× area-average
degradation, or LR/HR layer pairs, realigned per cell by the SEM paper's search), optional reference
images, the base model (the bundled default, a model file, or a new network of a preset) and the
schedule (epochs, the paper's two phases), then runs :func:`train_job` in a worker thread
(:class:`~matrestore._widgets._worker.TaskRunner`). While it runs the widget shows the epoch and step
progress, a live loss plot (:class:`LossPlot`), the validation metrics of every epoch against bicubic,
the realignment offsets found for LR/HR pairs, and three preview layers (``train_preview_lr``,
``train_preview_sr``, ``train_preview_hr``: one validation cell, the SR computed by the current network
in the worker thread) that are updated in place after every epoch. **Cancel** stops after the current
step and keeps a checkpoint (and ``last.safetensors``); **Resume** continues from it; **Save model…**
copies the best model (else the last) to a file of your choice. Input layers are only read.

Settings (schedule, model, advanced options, output folder) are remembered between sessions
(:class:`~matrestore._widgets._settings.WidgetSettings`, group ``train``); **Restore defaults** puts
them back.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
import weakref
from pathlib import Path

import numpy as np
from qtpy.QtCore import QPointF, Qt
from qtpy.QtGui import QColor, QFont, QPen, QPolygonF
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QFrame,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .._validate import InputError, as_2d_image
from ..progress import format_duration
from ..sr.train import FINE_TUNE, TrainConfig
from ._params import ParamForm
from ._layers import (LayerCheckList, LayerDock, combo_box, layer_key, layer_problem, put_image, radio_row,
                      same_layer, selectable_label, spatial_units, spin_box)
from ._model_choice import ModelDeviceMixin, default_model_installed, model_file_state
from ._plot import AXIS, BACKGROUND, PlotWidget
from ._worker import State, relay
from .._layerdata import OUTPUT_KEY, ROLE_KEY, made_by

__all__ = ["TrainWidget", "train_job", "LossPlot", "PREVIEW_NAMES"]

PREVIEW_NAMES = {"lr": "train_preview_lr", "sr": "train_preview_sr", "hr": "train_preview_hr"}
BASES = {"fine-tune the bundled default model": "default", "fine-tune a model file": "file",
         "train a new model": "new"}
SCHEDULES = {"two phases (paper)": "two", "reconstruction loss only": "rec", "all losses from the start": "all"}
DEFAULT_SCHEDULE = "reconstruction loss only"  # FINE_TUNE: adv_from = 1
PREVIEW_KIND = "train preview"


# ---------------------------------------------------------------------------------------- engine calls
def train_job(hr=None, pairs=None, *, out_dir, references=None, init=None, resume=False, device=None,
              options=None, preview=True, cancel=None):
    """The engine call behind the widget (a generator; no Qt, no layers).

    Runs :func:`matrestore.sr.train` (``hr``: HR arrays; ``pairs``: ``[(lr, hr), ...]`` arrays;
    ``init``: ``"default"``, a model file or None for a new network; ``options``: TrainConfig fields) and
    yields its records with a ``message`` for the progress line (epoch, step, phase, loss, time left).
    ``cancel`` stops after the current step; the engine then saves a checkpoint and ``last.safetensors``
    and ends with a ``"stopped"`` record. Returns the engine's result (``out_dir``, ``best``, ``last``,
    ``checkpoint``, ``status``) with ``device`` and ``elapsed_s``.
    """
    from .. import device as _device
    from ..sr.train import train

    opts = dict(options or {})
    yield {"message": "loading the model…"}
    dev = _device.pick_device(device)
    gen = train(list(hr) if hr else None, list(pairs) if pairs else None, out_dir, references=references or None,
                init=init, resume=resume, cancel=cancel, device=dev, preview=preview, **opts)
    t0 = time.perf_counter()
    t_steps, n_steps, epochs = None, 0, opts.get("epochs")

    def with_message(rec: dict) -> dict:
        nonlocal t_steps, n_steps
        kind = rec.get("kind")
        msg = rec.get("message", "")
        if kind == "setup" and rec.get("total"):
            t_steps, n_steps = time.perf_counter(), 0
        elif kind == "step":
            n_steps += 1
            el = time.perf_counter() - (t_steps or t0)
            per = el / max(n_steps, 1)
            left = per * (rec["total"] - rec["step"])
            loss = rec["losses"].get("total", float("nan"))
            ep = f"epoch {rec['epoch'] + 1}" + (f"/{epochs}" if epochs else "")
            msg = (f"{ep} · step {rec['step']}/{rec['total']} · {rec.get('phase', '')} phase · loss {loss:.4g} · "
                   f"{per:.2g} s/step · about {format_duration(left)} left")
        elif kind == "epoch":
            v = rec.get("val")
            msg = f"epoch {rec['epoch']} validated" + (
                f": PSNR {v['ttsr']['psnr']:.2f} dB (bicubic {v['bicubic']['psnr']:.2f})" if v else "")
        elif kind == "stopped":
            msg = "stopped: checkpoint saved."
        elif kind == "done":
            msg = "done."
        return {**rec, "message": msg}

    try:
        result = yield from relay(gen, with_message)
    finally:
        _device.free_memory(dev)  # give the accelerator's cached memory back after every run
    if result is not None:
        result = dict(result, device=_device.describe(dev), elapsed_s=time.perf_counter() - t0)
    return result


# ---------------------------------------------------------------------------------------- live loss plot
class LossPlot(PlotWidget):
    """A small live plot of training losses against the step (QPainter; no plotting library needed).

    ``add(step, losses)`` appends the values of the keys in ``keys``; ``mark(step, text)`` draws a
    dashed vertical line (the start of the second phase); ``set_total(n)`` fixes the x range.
    """

    COLORS = {"total": QColor(255, 200, 60), "rec": QColor(90, 170, 255), "per": QColor(120, 220, 120),
              "tper": QColor(220, 120, 220), "adv": QColor(255, 110, 90)}
    MARGINS = (48, 8, 8, 18)

    def __init__(self, keys=("total", "rec"), parent=None):
        super().__init__(parent)
        self.keys = tuple(keys)
        self.series: dict[str, list] = {k: [] for k in self.keys}
        self.marks: list = []
        self.total = 0
        self.setMinimumHeight(120)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.setFixedHeight(130)
        self.setToolTip("Training losses against the step: total (weighted sum) and reconstruction (L1, "
                        "normalised intensities).\nThe dashed line marks where the perceptual and adversarial "
                        "losses start (second phase).")

    def clear(self) -> None:
        self.series = {k: [] for k in self.keys}
        self.marks = []
        self.total = 0
        self.update()

    def n_points(self) -> int:
        return sum(len(v) for v in self.series.values())

    def set_total(self, total: int) -> None:
        self.total = int(total or 0)
        self.update()

    def add(self, step: int, losses: dict) -> None:
        for k in self.keys:
            v = losses.get(k)
            if v is not None and math.isfinite(v):
                self.series[k].append((int(step), float(v)))
        self.update()

    def mark(self, step: int, text: str) -> None:
        if not any(s == step for s, _ in self.marks):
            self.marks.append((int(step), text))
            self.update()

    def paintEvent(self, event):  # noqa: N802 (Qt API)
        p = self._begin()
        _, top, _, ph = self._area()
        vals = [v for s in self.series.values() for _, v in s]
        steps = [st for s in self.series.values() for st, _ in s]
        font = QFont(p.font())
        font.setPointSizeF(max(font.pointSizeF() * 0.85, 6.0))
        p.setFont(font)
        if not vals:
            p.setPen(QPen(AXIS))
            p.drawText(self.rect(), Qt.AlignCenter, "the losses appear here while training")
            p.end()
            return
        lo, hi = min(vals), max(vals)
        if hi - lo < 1e-12:
            lo, hi = lo - 0.5 * abs(lo or 1), hi + 0.5 * abs(hi or 1)
        pad = 0.05 * (hi - lo)
        lo, hi = lo - pad, hi + pad
        xmax = max(self.total, max(steps), 1)
        pt = self._mapper(0, xmax, lo, hi)
        self._draw_axes(p, pt, 0, xmax, lo, hi)
        p.drawText(QPointF(2, top + 8), f"{hi:.3g}")
        p.drawText(QPointF(2, top + ph), f"{lo:.3g}")
        p.drawText(pt(0, lo) + QPointF(-2, 14), "0")
        p.drawText(pt(xmax, lo) + QPointF(-40, 14), f"{xmax} steps")
        for st, text in self.marks:
            p.setPen(QPen(QColor(170, 170, 170), 1, Qt.DashLine))
            p.drawLine(pt(st, lo), pt(st, hi))
        x_legend = self.MARGINS[0] + 8
        for k in self.keys:
            pts = self.series[k]
            if not pts:
                continue
            col = self.COLORS.get(k, QColor(230, 230, 230))
            p.setPen(QPen(col, 1.5))
            if len(pts) == 1:
                p.setBrush(col)
                p.drawEllipse(pt(*pts[0]), 2.5, 2.5)
            else:
                p.drawPolyline(QPolygonF([pt(s, v) for s, v in pts]))
            label = f"{k} {pts[-1][1]:.3g}"
            p.drawText(QPointF(x_legend, top + ph - 4), label)
            x_legend += p.fontMetrics().horizontalAdvance(label) + 14
        p.setPen(QPen(QColor(170, 170, 170)))
        for st, text in self.marks:  # labels over the curves
            at = pt(st, hi) + QPointF(3, 0)
            box = p.fontMetrics().boundingRect(text)
            p.fillRect(int(at.x()), int(at.y()), box.width() + 4, box.height(), BACKGROUND)
            p.drawText(at + QPointF(2, box.height() - 3), text)
        p.end()


# ---------------------------------------------------------------------------------------- widget
def _read_only_table(headers: list, tooltip: str) -> QTableWidget:
    """A read-only table without row numbers; its last column stretches, the others fit their contents."""
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.setEditTriggers(QAbstractItemView.NoEditTriggers)
    table.verticalHeader().setVisible(False)
    hh = table.horizontalHeader()
    for c in range(len(headers)):
        hh.setSectionResizeMode(c, QHeaderView.Stretch if c == len(headers) - 1 else QHeaderView.ResizeToContents)
    table.setToolTip(tooltip)
    return table


MAX_HEIGHT = 640  # px the dock asks for at most: it fits a 1000-px window, the rest scrolls


class _VScroll(QScrollArea):
    """A vertical-only scroll area as wide as its content needs (a plain one would clip it) and at most
    :data:`MAX_HEIGHT` tall (a taller one would push the validation table off a small screen)."""

    def _extra(self) -> int:
        return self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth()

    def minimumSizeHint(self):  # noqa: N802 (Qt API)
        hint = super().minimumSizeHint()
        if self.widget() is not None:
            hint.setWidth(self.widget().minimumSizeHint().width() + self._extra())
        return hint

    def sizeHint(self):  # noqa: N802 (Qt API)
        hint = super().sizeHint()
        if self.widget() is not None:
            inner = self.widget().sizeHint()
            hint.setWidth(inner.width() + self._extra())
            hint.setHeight(min(inner.height() + 2 * self.frameWidth(), MAX_HEIGHT))
        return hint


class TrainWidget(ModelDeviceMixin, LayerDock):
    """Train or fine-tune a TTSR super-resolution model on image layers."""

    settings_group = "train"

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self._pairs: list = []  # [(lr_layer, hr_layer)]
        self._checked: set[int] = set()
        self._ref_checked: set[int] = set()
        self._ref_unchecked: set[int] = set()
        self._job: dict | None = None
        self._result: dict | None = None
        self._temp_dirs: list = []
        self.run_dir: Path | None = None
        self.history: list = []
        self.alignment: list = []
        self.progress: dict = {}
        self.saved_path: Path | None = None
        self._build()
        self._start_runner(self.progress_bar, self.progress_label, self.status)
        self._bind_settings()
        self._watch_layers()
        self._sync_mode()
        self._sync_model()
        self._sync_schedule()
        self._sync_device()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        scroll = _VScroll()  # the widget is tall: it scrolls in a small window
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        inner = QWidget()
        scroll.setWidget(inner)
        outer.addWidget(scroll)
        lay = QVBoxLayout(inner)

        dbox = QGroupBox("Training data")
        dl = QVBoxLayout(dbox)
        mrow, self.mode_hr, self.mode_pairs = radio_row(
            ("HR images", "High-resolution image layers; their low-resolution versions are made by the 4× "
                          "area-average degradation (matrestore.degrade.downsample)."),
            ("LR/HR pairs", "Real pairs of a coarse (LR) and a fine (HR, 4× the LR size) scan of the same field; "
                            "every cell is realigned automatically (SSIM search within ±8 HR px) and the offsets "
                            "found are shown."))
        dl.addLayout(mrow)
        self.hr_list = LayerCheckList("used", "Check the high-resolution 2-D greyscale image layers to train on. "
                                      "Layers that cannot be used are greyed out with the reason.", max_height=72)
        dl.addWidget(self.hr_list)
        self.pair_box = QWidget()
        pl = QVBoxLayout(self.pair_box)
        pl.setContentsMargins(0, 0, 0, 0)
        prow = QHBoxLayout()
        self.pair_lr = QComboBox()
        self.pair_lr.setToolTip("The low-resolution scan of the pair.")
        self.pair_hr = QComboBox()
        self.pair_hr.setToolTip("The high-resolution scan of the same field (4× the LR size).")
        self.pair_add = QPushButton("Add")
        self.pair_add.setToolTip("Add this LR/HR pair to the training data.")
        prow.addWidget(QLabel("LR"))
        prow.addWidget(self.pair_lr, 1)
        prow.addWidget(QLabel("HR"))
        prow.addWidget(self.pair_hr, 1)
        prow.addWidget(self.pair_add)
        pl.addLayout(prow)
        self.pair_table = _read_only_table(
            ["LR", "HR", "offset found (dy, dx) HR px"], "The LR/HR pairs to train on. After the data are prepared, "
            "the last column shows the realignment found: the median offset of the HR window from its nominal place "
            "(HR px) and its range over the cells.")
        self.pair_table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.pair_table.setMaximumHeight(90)
        pl.addWidget(self.pair_table)
        self.pair_remove = QPushButton("Remove selected pair")
        self.pair_remove.setToolTip("Remove the selected pair from the list.")
        pl.addWidget(self.pair_remove)
        dl.addWidget(self.pair_box)
        self.invalid_note = self._unoffered_label("Image layers that cannot be used for training, and why.")
        dl.addWidget(self.invalid_note)
        lay.addWidget(dbox)

        lay.addWidget(self._references_box(
            "References (optional)", "used", "High-resolution reference images whose textures the network learns to "
            "transfer. None checked: crops of the training images (each cell never sees its own crop).\n"
            f"Layers marked as references (metadata['{ROLE_KEY}'] == 'reference') are checked for you.", 56,
            "A folder of HR reference images (tif, png, jpg, bmp), used with the checked layers."))

        mbox = QGroupBox("Model and schedule")
        mf = QFormLayout(mbox)
        self.base_combo = combo_box(BASES, "Start from the bundled default model (fine-tuning: fastest, needs the "
                                           "least data), from a model file, or from a new, untrained network of the "
                                           "chosen preset.")
        mf.addRow("base model", self.base_combo)
        brow = self._model_file_row("The model file to fine-tune.", "Choose the model file to fine-tune.")
        self.model_row = QWidget()
        self.model_row.setLayout(brow)
        brow.setContentsMargins(0, 0, 0, 0)
        mf.addRow("model file", self.model_row)
        self.preset_combo = QComboBox()
        from ..sr.model import PRESETS

        self.preset_combo.addItems(list(PRESETS))
        self.preset_combo.setCurrentText("cpu")
        self.preset_combo.setToolTip("Network size of a new model: paper (the official TTSR, for a GPU), cpu (sized "
                                     "for CPU training and inference), tiny (for tests only).\nFine-tuning keeps the "
                                     "base model's architecture.")
        mf.addRow("preset", self.preset_combo)
        mf.addRow(self._model_note_label("Whether the chosen base model is available."))
        self.schedule = ParamForm(TrainConfig, names=["epochs", "steps_per_epoch"], defaults=FINE_TUNE,
                                  settings=self.settings)
        mf.addRow(self.schedule)
        self.epochs_spin, self.steps_spin = self.schedule.control("epochs"), self.schedule.control("steps_per_epoch")
        self.schedule_combo = combo_box(
            SCHEDULES, "two phases (SEM paper): the reconstruction (L1) loss only, then the perceptual, transferal "
            "perceptual and adversarial (WGAN-GP) losses added.\nreconstruction loss only: the sharpest PSNR, no "
            "adversarial textures.\nall losses from the start: no first phase.")
        self.schedule_combo.setCurrentText(DEFAULT_SCHEDULE)
        mf.addRow("losses", self.schedule_combo)
        self.phase_spin = spin_box("Length of the first, reconstruction-only phase (the paper: half of the epochs).",
                                   suffix=" % of the epochs", minimum=0, maximum=100, value=50, singleStep=10)
        mf.addRow("first phase", self.phase_spin)
        self.estimate_label = selectable_label("A rough duration from the measured seconds per step of the preset on "
                                               "this project's 2-core CPU (sr.train.estimate_seconds); none on a GPU.")
        mf.addRow("estimate", self.estimate_label)
        lay.addWidget(mbox)

        trow = QHBoxLayout()
        trow.addWidget(self._advanced_toggle("Show or hide the batch, patch, learning-rate, device and "
                                             "output-folder options."))
        trow.addStretch(1)
        trow.addWidget(self._defaults_button("Set every training setting of this widget back to its default (the "
                                             "layer choices stay)."))
        lay.addLayout(trow)
        self.adv_box = QWidget()
        af = QFormLayout(self.adv_box)
        af.setContentsMargins(12, 0, 0, 0)
        self.advanced = ParamForm(TrainConfig, names=["batch_size", "patch", "cell", "lr_max", "noise", "seed"],
                                  settings=self.settings)
        af.addRow(self.advanced)
        self.batch_spin, self.patch_spin, self.cell_spin, self.lr_spin, self.noise_spin, self.seed_spin = (
            self.advanced.control(n) for n in ("batch_size", "patch", "cell", "lr_max", "noise", "seed"))
        af.addRow("device", self._device_row("Where the network trains. auto: CUDA if present, else Apple MPS, else "
                                             "the CPU.", "The device found on this computer ('auto' picks it)."))
        orow, self.out_folder, self.out_browse = self._folder_row(
            "a temporary folder", "Where runs are written (a 'train-<date>-<time>' folder per run: checkpoint.pt, "
            "best/last.safetensors, log.jsonl).\nEmpty: a temporary folder, deleted when the next run starts or the "
            "widget closes (save the model first).", "Choose the output folder.", "Output folder for training runs",
            "output_folder")
        af.addRow("output folder", orow)
        self.adv_box.setVisible(False)
        lay.addWidget(self.adv_box)

        self.resume_btn = QPushButton("Resume")
        self.resume_btn.setToolTip("Continue the stopped run from its checkpoint, with the same data.")
        self.save_btn = QPushButton("Save model…")
        self.save_btn.setToolTip("Write the best model of the last run (else its last model) to a .safetensors file, "
                                 "for the Enhance widget or `matrestore sr enhance --model`.")
        lay.addLayout(self._run_buttons(
            ("Train", "Start training in the background (the viewer stays usable)."),
            "Stop after the current step; a checkpoint and the last model are kept (Resume continues, Save model… "
            "saves).", extra=(self.resume_btn, self.save_btn)))
        self.epoch_bar = QProgressBar()
        self.epoch_bar.setFormat("epoch %v / %m")
        self.epoch_bar.setToolTip("Epochs done of all epochs.")
        lay.addWidget(self.epoch_bar)
        self._add_progress(lay, ("step %v / %m", "Training steps done of all steps."),
                           "Epoch, step, phase, current loss and the estimated time left.")
        self.progress_label.setWordWrap(True)
        self.loss_plot = LossPlot()
        lay.addWidget(self.loss_plot)
        self.val_table = _read_only_table(
            ["epoch", "PSNR (dB)", "SSIM", "ESSIM", "vs bicubic"], "Validation after every epoch, on held-out cells "
            "never trained on, in the images' own intensity units: the network's PSNR / SSIM / ESSIM, and its PSNR "
            "gain over bicubic interpolation (first row). The best epoch (kept as the model) is bold.")
        self.val_table.setMinimumHeight(110)
        self.val_table.setMaximumHeight(190)
        lay.addWidget(self.val_table)
        lay.addWidget(self._status_label())
        self.saved_label = selectable_label("Where the model and the run were written.")
        lay.addWidget(self.saved_label)
        lay.addStretch(1)

        self.resume_btn.clicked.connect(self.resume)
        self.save_btn.clicked.connect(lambda *_: self.save_model())
        self.mode_hr.toggled.connect(self._sync_mode)
        self.base_combo.currentIndexChanged.connect(self._sync_model)
        self.schedule_combo.currentIndexChanged.connect(self._sync_schedule)
        self.pair_add.clicked.connect(self._add_current_pair)
        self.pair_remove.clicked.connect(self._remove_selected_pair)
        self.hr_list.itemChanged.connect(self._on_hr_check)
        self.ref_list.itemChanged.connect(self._on_ref_check)
        for box in (self.epochs_spin, self.steps_spin, self.batch_spin, self.patch_spin, self.phase_spin):
            box.valueChanged.connect(self._sync_estimate)
        for combo in (self.schedule_combo, self.base_combo, self.preset_combo, self.device_combo):
            combo.currentIndexChanged.connect(self._sync_estimate)

    def _bind_settings(self) -> None:
        """Remember the settings (each control's value now, as built, is its default)."""
        self._sync_device()  # the device list must exist before its stored value is applied
        self._remember({"pairs": self.mode_pairs, "hr_images": self.mode_hr, "base": self.base_combo,
                        "model_file": self.model_path, "preset": self.preset_combo, "losses": self.schedule_combo,
                        "first_phase_percent": self.phase_spin, "device": self.device_combo,
                        "output_folder": self.out_folder, "reference_folder": self.ref_folder})
        # epochs, steps_per_epoch, batch_size, patch, cell, lr_max, noise, seed: bound by their ParamForms
        self.model_path.textChanged.connect(lambda *_: self.settings.save("model_file"))
        self._sync_estimate()

    def restore_defaults(self) -> None:
        """Every remembered setting back to its default (the stored values are forgotten)."""
        super().restore_defaults()
        self.mode_hr.setChecked(True)
        self._sync_mode()
        self._sync_model()
        self._sync_schedule()
        self._sync_device()
        self._sync_estimate()

    # ------------------------------------------------------------------ option state
    def _sync_mode(self, *_) -> None:
        pairs = self.mode_pairs.isChecked()
        self.hr_list.setVisible(not pairs)
        self.pair_box.setVisible(pairs)
        self.noise_spin.setEnabled(not pairs)

    def base(self) -> str:
        return BASES[self.base_combo.currentText()]

    def _sync_model(self, *_) -> None:
        base = self.base()
        self.model_row.setEnabled(base == "file")
        self.preset_combo.setEnabled(base == "new")
        ok, text = True, ""
        if base == "default":
            ok = default_model_installed()
            text = "fine-tunes the bundled default model." if ok else (
                "No default model is installed: choose a model file or train a new model.")
        elif base == "file":
            _, problem = model_file_state(self.model_path.text())
            ok = problem is None
            text = "fine-tunes this file (it is never changed)." if ok else problem
        else:
            text = "a new, untrained network of the preset below."
        self._show_model_note(ok, text)

    def set_base(self, base: str, path=None, preset: str | None = None) -> None:
        """Choose the base model: ``"default"``, ``"file"`` (with ``path``) or ``"new"`` (with ``preset``)."""
        self.base_combo.setCurrentText(next(k for k, v in BASES.items() if v == base))
        if path is not None:
            self.model_path.setText(str(path))
        if preset is not None:
            self.preset_combo.setCurrentText(preset)
        self._sync_model()

    def _sync_schedule(self, *_) -> None:
        self.phase_spin.setEnabled(SCHEDULES[self.schedule_combo.currentText()] == "two")

    def _sync_estimate(self, *_) -> None:
        """Show how long the schedule will take, before starting (auto steps: the time per step)."""
        from ..sr.train import estimate_seconds

        preset = self._estimate_preset()
        steps = self.steps_spin.value()
        total = self.epochs_spin.value() * (steps or 1)
        try:
            secs = estimate_seconds(preset, total, batch=self.batch_spin.value(), patch=self.patch_spin.value(),
                                    device=self.device(), adv_from=self.adv_from())
        except InputError:
            secs = None
        if secs is None:
            self.estimate_label.setText("no estimate for this device or model (measured on the CPU only)")
        elif steps:
            self.estimate_label.setText(f"about {format_duration(secs)} on this CPU ({total} steps)")
        else:
            self.estimate_label.setText(f"about {format_duration(secs)} per step on this CPU × the steps that "
                                        "'auto' picks from the data")

    def _estimate_preset(self) -> str:
        """The preset of the model that will train (the base model's, or the chosen one for a new model)."""
        if self.base() == "new":
            return self.preset_combo.currentText()
        return "cpu"  # the bundled default and models fine-tuned from it

    def adv_from(self) -> float:
        mode = SCHEDULES[self.schedule_combo.currentText()]
        return {"two": self.phase_spin.value() / 100.0, "rec": 1.0, "all": 0.0}[mode]

    def _browse_model(self) -> None:
        path = self._ask_model_file("Model to fine-tune")
        if path:
            self.set_base("file", path)

    # ------------------------------------------------------------------ layer pickers
    @staticmethod
    def _made_by(layer) -> str | None:
        return made_by(layer.metadata)

    def _why_not(self, layer) -> str | None:
        """Why an image layer cannot be training data or a reference (None when it can)."""
        why = layer_problem(layer)
        if why is None and self._made_by(layer) == PREVIEW_KIND:
            why = "a training preview"
        elif why is None and self._made_by(layer) is not None:
            why = "a super-resolution result"
        return why

    def _refresh_layers(self, event=None) -> None:
        images = [lyr for lyr in self._image_layers() if self._made_by(lyr) != PREVIEW_KIND]  # previews: not data
        alive = {layer_key(lyr) for lyr in self.viewer.layers}
        self._pairs = [p for p in self._pairs if layer_key(p[0]) in alive and layer_key(p[1]) in alive]
        why = {layer_key(lyr): self._why_not(lyr) for lyr in images}
        self.hr_list.fill([(lyr, why[layer_key(lyr)], lyr.name, layer_key(lyr) in self._checked) for lyr in images])
        self.ref_list.fill([(lyr, why[layer_key(lyr)], lyr.name, layer_key(lyr) in self._ref_checked or (
            (lyr.metadata or {}).get(ROLE_KEY) == "reference" and layer_key(lyr) not in self._ref_unchecked))
            for lyr in images])
        valid = [lyr for lyr in images if self._why_not(lyr) is None]
        for combo in (self.pair_lr, self.pair_hr):
            keep = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems([lyr.name for lyr in valid])
            if keep:
                combo.setCurrentText(keep)
            combo.blockSignals(False)
        self._fill_pair_table()
        self._show_unoffered(images)

    def _on_hr_check(self, item) -> None:
        self.hr_list.remember_check(item, self._checked)

    def _on_ref_check(self, item) -> None:
        self.ref_list.remember_check(item, self._ref_checked, self._ref_unchecked)

    def hr_layers(self) -> list:
        """The checked HR training layers, in list order."""
        return self.hr_list.checked_layers()

    def reference_layers(self) -> list:
        """The checked reference layers, in list order."""
        return self.ref_list.checked_layers()

    def set_hr_layers(self, names) -> None:
        """Check exactly the HR training layers named in ``names`` (for scripts and tests)."""
        self.hr_list.set_checked(names)

    def set_references(self, names) -> None:
        """Check exactly the reference layers named in ``names`` (for scripts and tests)."""
        self.ref_list.set_checked(names)

    def pairs(self) -> list:
        return list(self._pairs)

    def add_pair(self, lr_name: str, hr_name: str) -> None:
        """Add the pair of layers named ``lr_name`` / ``hr_name`` (checked when training starts)."""
        self._pairs.append((self.viewer.layers[lr_name], self.viewer.layers[hr_name]))
        self.mode_pairs.setChecked(True)
        self._fill_pair_table()

    def _add_current_pair(self) -> None:
        lr, hr = self.pair_lr.currentText(), self.pair_hr.currentText()
        if not lr or not hr:
            self.runner.fail(InputError("open the LR and the HR image layers of a pair first."))
            return
        self.add_pair(lr, hr)

    def _remove_selected_pair(self) -> None:
        rows = sorted({i.row() for i in self.pair_table.selectedIndexes()}, reverse=True)
        for r in rows or ([len(self._pairs) - 1] if self._pairs else []):
            del self._pairs[r]
        self._fill_pair_table()

    def _fill_pair_table(self) -> None:
        t = self.pair_table
        t.setRowCount(len(self._pairs))
        shown = {tuple(a.get("layers", ())): a for a in self.alignment}
        for r, (lr, hr) in enumerate(self._pairs):
            a = shown.get((lr.name, hr.name))
            if a is None:
                off = "found when training starts"
            elif a.get("dy") is None:
                off = "no cell could be aligned"
            else:
                off = (f"({a['dy']:+g}, {a['dx']:+g}); range dy {a['dy_range'][0]}…{a['dy_range'][1]}, "
                       f"dx {a['dx_range'][0]}…{a['dx_range'][1]} over {a['cells']} cells")
            for c, text in enumerate((lr.name, hr.name, off)):
                t.setItem(r, c, QTableWidgetItem(text))

    # ------------------------------------------------------------------ collecting the inputs
    def _base_info(self) -> tuple:
        """``(init spec or None, scale, ref_crop, description)`` of the base model; reads only the header."""
        from .. import modelfile
        from ..sr.model import PRESETS
        from ..sr.modelio import DEFAULT_MODEL, TASK

        base = self.base()
        if base == "new":
            cfg = PRESETS[self.preset_combo.currentText()]
            return None, int(cfg.scale), int(cfg.ref_crop), f"new '{cfg.preset}' network"
        if base == "default":
            if not DEFAULT_MODEL.is_file():
                raise InputError("no default super-resolution model is installed; choose a model file or "
                                 "'train a new model'.")
            path, spec, desc = DEFAULT_MODEL, "default", "the bundled default model"
        else:
            p = self.model_path.text().strip()
            if not p:
                raise InputError("choose the model file to fine-tune (or another base model).")
            path = Path(p).expanduser()
            if not path.is_file():
                raise InputError(f"model file not found: {path}")
            spec, desc = str(path), f"model file {path.name}"
        meta = modelfile.read_metadata(path, task=TASK)  # InputError for a corrupt or foreign file
        cfg = meta.get("config", {})
        return spec, int(meta.get("scale", cfg.get("scale", 4))), int(cfg.get("ref_crop", 128)), desc

    def _check_layer(self, layer, role: str, min_side: int) -> np.ndarray:
        """The 2-D data of ``layer`` or an InputError that says what is wrong with it."""
        from napari.layers import Image

        if not isinstance(layer, Image):
            raise InputError(f"{role} '{layer.name}' is a {type(layer).__name__} layer: pick a 2-D greyscale image "
                             "layer.")
        if layer_problem(layer):
            raise InputError(f"{role} '{layer.name}': {layer_problem(layer)}.")
        if self._made_by(layer) == PREVIEW_KIND:
            raise InputError(f"{role} '{layer.name}' is a training preview, not data.")
        data = as_2d_image(np.asarray(layer.data), f"{role} '{layer.name}'")
        h, w = data.shape
        if min(h, w) < min_side:
            raise InputError(f"{role} '{layer.name}' is {h}×{w} px: too small to train on with cells of "
                             f"{self.cell_spin.value()} LR px (at least {min_side} px a side; lower 'cell' under "
                             "Advanced, or use larger images).")
        return data

    def _collect(self) -> dict:
        """Snapshot of the inputs (arrays, names, geometry, options) or InputError."""
        from ..sr.data import check_cell_count, check_pair_shapes

        init, s, ref_crop, base_desc = self._base_info()
        cell, patch = self.cell_spin.value(), self.patch_spin.value()
        if patch > cell:
            raise InputError(f"the patch ({patch} px) must not be larger than the cell ({cell} px); see Advanced.")
        pairs_mode = self.mode_pairs.isChecked()
        hr, pairs, sources, names, n_cells = [], [], [], [], 0
        if not pairs_mode:
            layers = self.hr_layers()
            if not layers:
                raise InputError("no training images: check at least one high-resolution image layer.")
            for lyr in layers:
                d = self._check_layer(lyr, "training image", cell * s)
                hr.append(d)
                sources.append(lyr)
                names.append(lyr.name)
                n_cells += (d.shape[0] // s // cell) * (d.shape[1] // s // cell)
        else:
            if not self._pairs:
                raise InputError("no LR/HR pairs: pick the LR and HR layers of a pair and press Add.")
            for lr_l, hr_l in self._pairs:
                if same_layer(lr_l, hr_l):
                    raise InputError(f"pair '{lr_l.name}': the LR and HR layers are the same layer.")
                lr_d = self._check_layer(lr_l, "LR image", cell)
                hr_d = self._check_layer(hr_l, "HR image", cell * s)
                check_pair_shapes(lr_d.shape, hr_d.shape, s, f"pair '{lr_l.name}' / '{hr_l.name}'")
                pairs.append((lr_d, hr_d))
                sources.append(hr_l)
                names.append(f"{lr_l.name} / {hr_l.name}")
                n_cells += (lr_d.shape[0] // cell) * (lr_d.shape[1] // cell)
        refs = self.reference_layers()
        folder = self.ref_folder.text().strip()
        if folder and not Path(folder).expanduser().is_dir():
            raise InputError(f"reference folder not found: {folder}")
        train_layers = {layer_key(x) for x in sources} | {layer_key(p[0]) for p in self._pairs if pairs_mode}
        for lyr in refs:
            if layer_key(lyr) in train_layers:
                raise InputError(f"reference '{lyr.name}' is also training data: the network would see the ground "
                                 "truth through its references. Uncheck it or use another image.")
            self._check_layer(lyr, "reference", 1)
        ref_sources = [np.asarray(lyr.data) for lyr in refs] + ([str(Path(folder).expanduser())] if folder else [])
        check_cell_count(n_cells, cell, has_references=bool(ref_sources), seed=self.seed_spin.value())
        options = {**self.schedule.values(), **self.advanced.values(), "lr_min": min(1e-4, self.lr_spin.value()),
                   "adv_from": self.adv_from()}
        options.pop("noise")
        if init is None:
            options["preset"] = self.preset_combo.currentText()
        if not pairs_mode and self.advanced.value("noise"):
            options["noise"] = self.advanced.value("noise")
        src = sources[0]
        return {"hr": hr, "pairs": pairs, "names": names, "sources": [(lyr.name, tuple(float(v) for v in lyr.scale[-2:]),
                                                                       tuple(float(v) for v in lyr.translate[-2:]),
                                                                       tuple(int(n) for n in lyr.data.shape[-2:]),
                                                                       spatial_units(lyr)) for lyr in sources],
                "first": src.name, "references": ref_sources,
                "ref_names": [lyr.name for lyr in refs] + ([f"folder {folder}"] if folder else []),
                "pair_names": [(a.name, b.name) for a, b in self._pairs] if pairs_mode else [],
                "init": init, "base": base_desc, "scale": s, "options": options, "device": self.device(),
                "pairs_mode": pairs_mode}

    def _new_run_dir(self) -> Path:
        for d in self._temp_dirs:  # the previous temporary run is replaced by this one
            shutil.rmtree(d, ignore_errors=True)
        self._temp_dirs = []
        out = self.out_folder.text().strip()
        if not out:
            d = Path(tempfile.mkdtemp(prefix="matrestore_train_"))
            self._temp_dirs.append(d)
            weakref.finalize(self, shutil.rmtree, str(d), True)  # also gone when the widget is, or at exit
            return d
        root = Path(out).expanduser()
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot use the output folder {root}: {exc}") from exc
        stem = time.strftime("train-%Y%m%d-%H%M%S")
        d, i = root / stem, 1
        while d.exists():
            i += 1
            d = root / f"{stem}-{i}"
        d.mkdir()
        return d

    # ------------------------------------------------------------------ running
    def run(self):
        """Start a new training run in a worker thread."""
        if self.runner.is_running:
            return None
        try:
            job = self._collect()
            run_dir = self._new_run_dir()
        except InputError as exc:
            self.runner.fail(exc)
            return None
        self._job, self.run_dir, self._result, self.saved_path = job, run_dir, None, None
        self.history, self.alignment, self.progress = [], [], {}
        self.loss_plot.clear()
        self.val_table.setRowCount(0)
        self.saved_label.setText("")
        self._fill_pair_table()
        self.epoch_bar.setRange(0, job["options"]["epochs"])
        self.epoch_bar.setValue(0)
        return self._start(resume=False)

    def resume(self):
        """Continue the stopped run from its checkpoint (same data and settings)."""
        if self.runner.is_running or self._job is None or self.run_dir is None:
            return None
        if not (self.run_dir / "checkpoint.pt").is_file():
            self.runner.fail(InputError("no checkpoint to resume from; press Train."))
            return None
        return self._start(resume=True)

    def _start(self, resume: bool):
        job = self._job
        self._t_start = time.perf_counter()
        self.epoch_bar.setVisible(True)
        return self.runner.start(
            train_job, job["hr"], job["pairs"], out_dir=str(self.run_dir), references=job["references"],
            init=job["init"], resume=resume, device=job["device"], options=job["options"], preview=True,
            on_yielded=self._on_record, on_returned=self._on_done, on_stopped=self._on_stopped,
            message="loading the model…")

    def cancel(self) -> None:
        """Stop after the current step: the engine saves a checkpoint and the last model first."""
        if self.runner.is_running:
            self.runner.cancel()  # sets the cancel event: the job ends through its own cancel branch
            self.progress_label.setText("cancelling after this step (saving a checkpoint)…")

    def _follow_state(self, state) -> None:
        super()._follow_state(state)
        running = state is State.RUNNING
        ck = self.run_dir is not None and (self.run_dir / "checkpoint.pt").is_file()
        self.resume_btn.setEnabled(not running and state is State.STOPPED and ck and self._job is not None)
        self.save_btn.setEnabled(not running and self.model_file() is not None)
        if not running:
            self.epoch_bar.setVisible(bool(self.history) or self.epoch_bar.value() > 0)

    # ------------------------------------------------------------------ records (GUI thread)
    def _on_record(self, rec) -> None:
        if not isinstance(rec, dict):
            return
        kind = rec.get("kind")
        if "step" in rec and "total" in rec:
            self.progress.update(step=rec["step"], total=rec["total"])
        if kind == "setup" and rec.get("total"):
            self.loss_plot.set_total(rec["total"])
            if rec.get("phase2_step") is not None:  # the engine says where its second phase begins
                self.loss_plot.mark(rec["phase2_step"], "phase 2")
            self.progress["epoch"] = rec.get("epoch", 0)
            self.epoch_bar.setValue(int(rec.get("epoch", 0)))
            if rec.get("alignment"):
                self._show_alignment(rec["alignment"])
        elif kind == "step":
            self.loss_plot.add(rec["step"], rec["losses"])
            self.progress.update(epoch=rec["epoch"], phase=rec.get("phase"), losses=rec["losses"])
        elif kind == "epoch":
            self.progress["epoch"] = rec["epoch"]
            self.epoch_bar.setValue(int(rec["epoch"]))
            self.history.append({"epoch": rec["epoch"], "val": rec.get("val"), "best": bool(rec.get("best"))})
            self._fill_val_table()
            if rec.get("preview") is not None:
                self._show_preview(rec["preview"])

    def _show_alignment(self, rows: list) -> None:
        names = self._job["pair_names"]
        named = [{**a, "layers": names[i] if i < len(names) else ("?", "?")} for i, a in enumerate(rows)]
        self.alignment = named
        self._fill_pair_table()

    def _fill_val_table(self) -> None:
        t = self.val_table
        rows = [h for h in self.history if h["val"]]
        t.setRowCount(len(rows) + (1 if rows else 0))
        if not rows:
            return
        best_epoch = max((h for h in rows if h["best"]), key=lambda h: h["epoch"], default=None)
        b = rows[-1]["val"]["bicubic"]
        cells = [("bicubic", f"{b['psnr']:.2f}", f"{b['ssim']:.4f}", f"{b['essim']:.4f}", "baseline")]
        for h in rows:
            v = h["val"]
            cells.append((str(h["epoch"]), f"{v['ttsr']['psnr']:.2f}", f"{v['ttsr']['ssim']:.4f}",
                          f"{v['ttsr']['essim']:.4f}", f"{v['psnr_gain_db']:+.2f} dB"))
        for r, row in enumerate(cells):
            for c, text in enumerate(row):
                it = QTableWidgetItem(text)
                if best_epoch is not None and r > 0 and rows[r - 1] is best_epoch:
                    f = it.font()
                    f.setBold(True)
                    it.setFont(f)
                t.setItem(r, c, it)
        t.scrollToBottom()

    def validation_text(self) -> str:
        """The validation table as tab-separated text (for tests and copying)."""
        t = self.val_table
        lines = ["\t".join(t.horizontalHeaderItem(c).text() for c in range(t.columnCount()))]
        for r in range(t.rowCount()):
            lines.append("\t".join(t.item(r, c).text() if t.item(r, c) else "" for c in range(t.columnCount())))
        return "\n".join(lines)

    def _show_preview(self, pv: dict) -> None:
        """Put the preview cell's LR / SR / HR into the three preview layers (updated in place), in a row
        at the height of the image the cell comes from, to the right of all other layers."""
        job = self._job
        i = min(int(pv.get("source_index", 0)), len(job["sources"]) - 1)
        name, (sy, sx), (ty, tx), (h, w), units = job["sources"][i]
        s = int(pv.get("scale", job["scale"]))
        n = pv["hr"].shape[0]
        gap = max(n // 8, 4)
        y0 = ty
        # to the right of every layer that is not a preview: previews never cover the user's images
        right = [float(lyr.extent.world[1][-1]) + float(lyr.scale[-1])  # last pixel centre + one pixel
                 for lyr in self.viewer.layers if self._made_by(lyr) != PREVIEW_KIND]
        x0 = max(right + [tx + w * sx]) + gap * sx
        hi = np.asarray(pv["hr"])
        clim = (float(np.percentile(hi, 0.5)), float(np.percentile(hi, 99.5)))
        if clim[1] <= clim[0]:
            clim = (float(hi.min()), float(hi.min()) + 1.0)
        md_base = {"made_by": PREVIEW_KIND, "source": name, "cell_origin_lr": pv.get("origin"),
                   "split": pv.get("split"), "epoch": self.progress.get("epoch")}
        what = {"lr": "the LR input of a validation cell", "sr": "the current network's super-resolution of it",
                "hr": "its ground truth"}
        for k, col in (("lr", 0), ("sr", 1), ("hr", 2)):
            ys, xs = sy, sx
            tr = (y0, x0 + col * (n + gap) * sx)
            if k == "lr":
                # an LR pixel covers s×s HR pixels: its centre sits (s - 1)/2 HR pixels in (the inverse of
                # matrestore.baselines.upsampled_geometry), so the LR preview is as large as the other two
                (ys, xs), tr = (sy * s, sx * s), (tr[0] + sy * (s - 1) / 2, tr[1] + sx * (s - 1) / 2)
            md = {OUTPUT_KEY: {**md_base, "what": what[k]}}
            put_image(self.viewer, PREVIEW_NAMES[k], np.asarray(pv[k], np.float32), (ys, xs), tr, md, units=units,
                      contrast_limits=clim, colormap="gray")

    def preview_layers(self) -> dict:
        return {k: self.viewer.layers[n] for k, n in PREVIEW_NAMES.items() if n in self.viewer.layers}

    def _finish_text(self, res: dict, stopped: bool) -> str:
        job = self._job
        el = time.perf_counter() - getattr(self, "_t_start", time.perf_counter())
        rows = [h for h in self.history if h["val"]]
        best = max((h for h in rows if h["best"]), key=lambda h: h["epoch"], default=None)
        head = "Stopped" if stopped else "Done"
        text = (f"{head}: {len(self.history)} of {job['options']['epochs']} epoch(s), step "
                f"{self.progress.get('step', 0)}/{self.progress.get('total', 0)} in {format_duration(el)}"
                f"{' on ' + res['device'] if res and res.get('device') else ''}; base: {job['base']}.")
        if best is not None:
            v = best["val"]
            text += (f" Best: epoch {best['epoch']} (validation PSNR {v['ttsr']['psnr']:.2f} dB, "
                     f"bicubic {v['bicubic']['psnr']:.2f}).")
        text += " Save the model with 'Save model…'." if self.model_file() else ""
        if stopped:
            text += " Resume continues from the checkpoint."
        return text

    def _on_done(self, res) -> None:
        self._finish(res, stopped=False)

    def _on_stopped(self, res) -> None:
        self._finish(res, stopped=True)

    def _finish(self, res, stopped: bool) -> None:
        self._result = res
        self.status.setStyleSheet("")
        self.status.setText(self._finish_text(res, stopped=stopped))
        self._show_run_folder()
        self._follow_state(self.runner.state)

    def _show_run_folder(self) -> None:
        if self.run_dir is None:
            return
        temp = any(self.run_dir == d for d in self._temp_dirs)
        self.saved_label.setText(f"Run folder{' (temporary)' if temp else ''}: {self.run_dir} "
                                 "(checkpoint.pt, best/last.safetensors, log.jsonl)")

    # ------------------------------------------------------------------ saving
    def model_file(self) -> Path | None:
        """The model the last run produced: best.safetensors, else last.safetensors (None before a run)."""
        if self.run_dir is None:
            return None
        for n in ("best.safetensors", "last.safetensors"):
            if (self.run_dir / n).is_file():
                return self.run_dir / n
        return None

    def _protected(self) -> list:
        from ..sr.modelio import DEFAULT_MODEL

        out = [DEFAULT_MODEL]
        if self._job is not None and self._job["init"] not in (None, "default"):
            out.append(Path(self._job["init"]))
        p = self.model_path.text().strip()
        if p:
            out.append(Path(p).expanduser())
        return out

    def save_model(self, path=None):
        """Copy the run's model (best, else last) to ``path`` (asked with a file dialog when None)."""
        src = self.model_file()
        if src is None:
            self.runner.fail(InputError("nothing to save yet: train first."))
            return None
        if path is None:
            start = self.out_folder.text().strip() or str(Path.home())
            first = self._job["first"] if self._job else "model"
            default = str(Path(start).expanduser() / f"{first}_sr.safetensors")
            path, _ = QFileDialog.getSaveFileName(self, "Save the trained model", default,
                                                  "Model files (*.safetensors)")
            if not path:
                return None
        dst = Path(path).expanduser()
        if dst.suffix.lower() != ".safetensors":
            dst = dst.with_name(dst.name + ".safetensors")
        try:
            rdst = dst.resolve()
            for p in self._protected():
                if p.exists() and rdst == p.resolve():
                    raise InputError(f"{dst} is an input model; choose another file name (inputs are never "
                                     "overwritten).")
            if self.run_dir is not None and self.run_dir.resolve() in rdst.parents:
                raise InputError("choose a file outside the run folder.")
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(dst.name + ".part")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        except InputError as exc:
            self.runner.fail(exc)
            return None
        except OSError as exc:
            self.runner.fail(InputError(f"cannot write {dst}: {exc}"))
            return None
        self.saved_path = dst
        which = "best" if src.name.startswith("best") else "last"
        self.saved_label.setText(f"Saved the {which} model to {dst}")
        self.status.setStyleSheet("")
        return dst

    # ------------------------------------------------------------------ teardown
    def _closed(self, ended: bool) -> None:
        if ended:  # the temporary run folder goes once its job has ended
            for d in self._temp_dirs:
                shutil.rmtree(d, ignore_errors=True)
            self._temp_dirs = []
