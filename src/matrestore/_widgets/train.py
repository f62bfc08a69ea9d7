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
from qtpy.QtGui import QColor, QFont, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFrame,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .._validate import InputError, as_2d_image
from ._settings import WidgetSettings
from ._worker import ERROR_STYLE, State, TaskRunner
from .compare import layer_problem
from .enhance import OUTPUT_KEY
from .rescan import ROLE_KEY

__all__ = ["TrainWidget", "train_job", "LossPlot", "PREVIEW_NAMES"]

PREVIEW_NAMES = {"lr": "train_preview_lr", "sr": "train_preview_sr", "hr": "train_preview_hr"}
BASES = {"fine-tune the bundled default model": "default", "fine-tune a model file": "file",
         "train a new model": "new"}
SCHEDULES = {"two phases (paper)": "two", "reconstruction loss only": "rec", "all losses from the start": "all"}
PREVIEW_KIND = "train preview"


# ---------------------------------------------------------------------------------------- engine calls
def _fmt_time(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


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
    t_steps, n_steps, epochs, result = None, 0, opts.get("epochs"), None
    while True:
        try:
            rec = next(gen)
        except StopIteration as stop:
            result = stop.value
            break
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
                   f"{per:.2g} s/step · about {_fmt_time(left)} left")
        elif kind == "epoch":
            v = rec.get("val")
            msg = f"epoch {rec['epoch']} validated" + (
                f": PSNR {v['ttsr']['psnr']:.2f} dB (bicubic {v['bicubic']['psnr']:.2f})" if v else "")
        elif kind == "stopped":
            msg = "stopped: checkpoint saved."
        elif kind == "done":
            msg = "done."
        yield {**rec, "message": msg}
    if result is not None:
        result = dict(result, device=_device.describe(dev), elapsed_s=time.perf_counter() - t0)
    return result


# ---------------------------------------------------------------------------------------- live loss plot
class LossPlot(QWidget):
    """A small live plot of training losses against the step (QPainter; no plotting library needed).

    ``add(step, losses)`` appends the values of the keys in ``keys``; ``mark(step, text)`` draws a
    dashed vertical line (the start of the second phase); ``set_total(n)`` fixes the x range.
    """

    COLORS = {"total": QColor(255, 200, 60), "rec": QColor(90, 170, 255), "per": QColor(120, 220, 120),
              "tper": QColor(220, 120, 220), "adv": QColor(255, 110, 90)}

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
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        w, h = self.width(), self.height()
        left, right, top, bottom = 48, 8, 8, 18
        pw, ph = max(w - left - right, 10), max(h - top - bottom, 10)
        p.fillRect(self.rect(), QColor(38, 41, 48))
        vals = [v for s in self.series.values() for _, v in s]
        steps = [st for s in self.series.values() for st, _ in s]
        axis = QPen(QColor(200, 200, 200))
        font = QFont(p.font())
        font.setPointSizeF(max(font.pointSizeF() * 0.85, 6.0))
        p.setFont(font)
        if not vals:
            p.setPen(axis)
            p.drawText(self.rect(), Qt.AlignCenter, "the losses appear here while training")
            p.end()
            return
        lo, hi = min(vals), max(vals)
        if hi - lo < 1e-12:
            lo, hi = lo - 0.5 * abs(lo or 1), hi + 0.5 * abs(hi or 1)
        pad = 0.05 * (hi - lo)
        lo, hi = lo - pad, hi + pad
        xmax = max(self.total, max(steps), 1)

        def pt(x, y):
            return QPointF(left + x / xmax * pw, top + (1 - (y - lo) / (hi - lo)) * ph)

        p.setPen(axis)
        p.drawLine(pt(0, lo), pt(xmax, lo))
        p.drawLine(pt(0, lo), pt(0, hi))
        p.drawText(QPointF(2, top + 8), f"{hi:.3g}")
        p.drawText(QPointF(2, top + ph), f"{lo:.3g}")
        p.drawText(pt(0, lo) + QPointF(-2, 14), "0")
        p.drawText(pt(xmax, lo) + QPointF(-40, 14), f"{xmax} steps")
        for st, text in self.marks:
            p.setPen(QPen(QColor(170, 170, 170), 1, Qt.DashLine))
            p.drawLine(pt(st, lo), pt(st, hi))
        x_legend = left + 8
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
            p.fillRect(int(at.x()), int(at.y()), box.width() + 4, box.height(), QColor(38, 41, 48))
            p.drawText(at + QPointF(2, box.height() - 3), text)
        p.end()


# ---------------------------------------------------------------------------------------- widget
class _VScroll(QScrollArea):
    """A vertical-only scroll area as wide as its content needs (a plain one would clip it)."""

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
            hint.setHeight(inner.height() + 2 * self.frameWidth())
        return hint


class TrainWidget(QWidget):
    """Train or fine-tune a TTSR super-resolution model on image layers."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self._hr_layers: list = []
        self._ref_layers: list = []
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
        self.runner = TaskRunner(self.progress_bar, self.progress_label, self.status, parent=self)
        self.runner.state_changed.connect(self._follow_state)
        self.runner.stop_when_closed(self)
        self._bind_settings()
        ev = self.viewer.layers.events
        for name in ("inserted", "removed", "reordered", "renamed"):
            getattr(ev, name).connect(self._refresh_layers)
        self._refresh_layers()
        self._sync_mode()
        self._sync_model()
        self._sync_schedule()
        self._sync_device()
        self._follow_state(State.IDLE)

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
        mrow = QHBoxLayout()
        self.mode_hr = QRadioButton("HR images")
        self.mode_hr.setToolTip("High-resolution image layers; their low-resolution versions are made by the 4× "
                                "area-average degradation (matrestore.degrade.downsample).")
        self.mode_pairs = QRadioButton("LR/HR pairs")
        self.mode_pairs.setToolTip("Real pairs of a coarse (LR) and a fine (HR, 4× the LR size) scan of the same "
                                   "field; every cell is realigned automatically (SSIM search within ±8 HR px) and "
                                   "the offsets found are shown.")
        self.mode_hr.setChecked(True)
        mrow.addWidget(self.mode_hr)
        mrow.addWidget(self.mode_pairs)
        mrow.addStretch(1)
        dl.addLayout(mrow)
        self.hr_list = QListWidget()
        self.hr_list.setToolTip("Check the high-resolution 2-D greyscale image layers to train on. Layers that "
                                "cannot be used are greyed out with the reason.")
        self.hr_list.setMaximumHeight(72)
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
        self.pair_table = QTableWidget(0, 3)
        self.pair_table.setHorizontalHeaderLabels(["LR", "HR", "offset found (dy, dx) HR px"])
        self.pair_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.pair_table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.pair_table.verticalHeader().setVisible(False)
        hh = self.pair_table.horizontalHeader()
        hh.setSectionResizeMode(0, QHeaderView.ResizeToContents)
        hh.setSectionResizeMode(1, QHeaderView.ResizeToContents)
        hh.setSectionResizeMode(2, QHeaderView.Stretch)
        self.pair_table.setMaximumHeight(90)
        self.pair_table.setToolTip("The LR/HR pairs to train on. After the data are prepared, the last column shows "
                                   "the realignment found: the median offset of the HR window from its nominal "
                                   "place (HR px) and its range over the cells.")
        pl.addWidget(self.pair_table)
        self.pair_remove = QPushButton("Remove selected pair")
        self.pair_remove.setToolTip("Remove the selected pair from the list.")
        pl.addWidget(self.pair_remove)
        dl.addWidget(self.pair_box)
        self.invalid_note = QLabel("")
        self.invalid_note.setWordWrap(True)
        self.invalid_note.setToolTip("Image layers that cannot be used for training, and why.")
        dl.addWidget(self.invalid_note)
        lay.addWidget(dbox)

        rbox = QGroupBox("References (optional)")
        rl = QVBoxLayout(rbox)
        self.ref_list = QListWidget()
        self.ref_list.setToolTip("High-resolution reference images whose textures the network learns to transfer. "
                                 "None checked: crops of the training images (each cell never sees its own crop).\n"
                                 f"Layers marked as references (metadata['{ROLE_KEY}'] == 'reference') are checked "
                                 "for you.")
        self.ref_list.setMaximumHeight(56)
        rl.addWidget(self.ref_list)
        frow = QHBoxLayout()
        self.ref_folder = QLineEdit()
        self.ref_folder.setPlaceholderText("and/or a folder of reference images")
        self.ref_folder.setClearButtonEnabled(True)
        self.ref_folder.setToolTip("A folder of HR reference images (tif, png, jpg, bmp), used with the checked layers.")
        self.ref_browse = QPushButton("Browse…")
        self.ref_browse.setToolTip("Choose the folder of reference images.")
        frow.addWidget(self.ref_folder, 1)
        frow.addWidget(self.ref_browse)
        rl.addLayout(frow)
        lay.addWidget(rbox)

        mbox = QGroupBox("Model and schedule")
        mf = QFormLayout(mbox)
        self.base_combo = QComboBox()
        self.base_combo.addItems(list(BASES))
        self.base_combo.setToolTip("Start from the bundled default model (fine-tuning: fastest, needs the least data), "
                                   "from a model file, or from a new, untrained network of the chosen preset.")
        mf.addRow("base model", self.base_combo)
        brow = QHBoxLayout()
        self.model_path = QLineEdit()
        self.model_path.setPlaceholderText("path/to/model.safetensors")
        self.model_path.setToolTip("The model file to fine-tune.")
        self.model_browse = QPushButton("Browse…")
        self.model_browse.setToolTip("Choose the model file to fine-tune.")
        brow.addWidget(self.model_path, 1)
        brow.addWidget(self.model_browse)
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
        self.model_note = QLabel("")
        self.model_note.setWordWrap(True)
        self.model_note.setToolTip("Whether the chosen base model is available.")
        mf.addRow(self.model_note)
        self.epochs_spin = QSpinBox(minimum=1, maximum=10000, value=20)
        self.epochs_spin.setToolTip("Passes of the schedule. After every epoch the network is validated on held-out "
                                    "cells and the best one is kept.")
        mf.addRow("epochs", self.epochs_spin)
        self.steps_spin = QSpinBox(minimum=0, maximum=100000, value=0)
        self.steps_spin.setSpecialValueText("auto")
        self.steps_spin.setToolTip("Training steps (batches) per epoch. auto (0): about two passes over the training "
                                   "cells.")
        mf.addRow("steps per epoch", self.steps_spin)
        self.schedule_combo = QComboBox()
        self.schedule_combo.addItems(list(SCHEDULES))
        self.schedule_combo.setToolTip("two phases (SEM paper): the reconstruction (L1) loss only, then the perceptual, "
                                       "transferal perceptual and adversarial (WGAN-GP) losses added.\nreconstruction "
                                       "loss only: the sharpest PSNR, no adversarial textures.\nall losses from the "
                                       "start: no first phase.")
        mf.addRow("losses", self.schedule_combo)
        self.phase_spin = QSpinBox(minimum=0, maximum=100, value=50, singleStep=10)
        self.phase_spin.setSuffix(" % of the epochs")
        self.phase_spin.setToolTip("Length of the first, reconstruction-only phase (the paper: half of the epochs).")
        mf.addRow("first phase", self.phase_spin)
        lay.addWidget(mbox)

        trow = QHBoxLayout()
        self.adv_toggle = QToolButton()
        self.adv_toggle.setText("Advanced")
        self.adv_toggle.setCheckable(True)
        self.adv_toggle.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.adv_toggle.setArrowType(Qt.RightArrow)
        self.adv_toggle.setStyleSheet("QToolButton { border: none; }")
        self.adv_toggle.setToolTip("Show or hide the batch, patch, learning-rate, device and output-folder options.")
        self.defaults_btn = QPushButton("Restore defaults")
        self.defaults_btn.setToolTip("Set every training setting of this widget back to its default (the layer "
                                     "choices stay).")
        trow.addWidget(self.adv_toggle)
        trow.addStretch(1)
        trow.addWidget(self.defaults_btn)
        lay.addLayout(trow)
        self.adv_box = QWidget()
        af = QFormLayout(self.adv_box)
        af.setContentsMargins(12, 0, 0, 0)
        self.batch_spin = QSpinBox(minimum=1, maximum=1024, value=8)
        self.batch_spin.setToolTip("Patches per training step.")
        af.addRow("batch size", self.batch_spin)
        self.patch_spin = QSpinBox(minimum=4, maximum=512, value=32)
        self.patch_spin.setSuffix(" LR px")
        self.patch_spin.setToolTip("Side of the random training patches in LR px (HR: 4×). At most the cell size.")
        af.addRow("patch", self.patch_spin)
        self.cell_spin = QSpinBox(minimum=4, maximum=2048, value=64)
        self.cell_spin.setSuffix(" LR px")
        self.cell_spin.setToolTip("Images are cut into cells of this side (LR px; HR: 4×), split 80/10/10 into "
                                  "training / validation / test. An HR image needs at least one cell (4× this) a side.")
        af.addRow("cell", self.cell_spin)
        self.lr_spin = QDoubleSpinBox(decimals=5, minimum=1e-5, maximum=1e-2, value=5e-4, singleStep=1e-4)
        self.lr_spin.setToolTip("Peak learning rate of the cyclic schedule (the lowest is 1e-4 or this, whichever is "
                                "smaller). Lower it if training diverges.")
        af.addRow("learning rate (max)", self.lr_spin)
        self.noise_spin = QDoubleSpinBox(decimals=3, minimum=0.0, maximum=0.5, value=0.0, singleStep=0.005)
        self.noise_spin.setSpecialValueText("none")
        self.noise_spin.setToolTip("HR images only: Gaussian noise (fraction of the intensity range) added to the made "
                                   "LR images, so the network learns to expect noisy coarse scans.")
        af.addRow("LR noise", self.noise_spin)
        self.seed_spin = QSpinBox(minimum=0, maximum=2**31 - 1, value=0)
        self.seed_spin.setToolTip("Random seed (initial weights, data split, patches): the same seed and data give "
                                  "the same run.")
        af.addRow("seed", self.seed_spin)
        self.device_combo = QComboBox()
        self.device_combo.setToolTip("Where the network trains. auto: CUDA if present, else Apple MPS, else the CPU.")
        self.device_note = QLabel("")
        self.device_note.setToolTip("The device found on this computer ('auto' picks it).")
        drow = QHBoxLayout()
        drow.addWidget(self.device_combo)
        drow.addWidget(self.device_note, 1)
        af.addRow("device", drow)
        orow = QHBoxLayout()
        self.out_folder = QLineEdit()
        self.out_folder.setPlaceholderText("a temporary folder")
        self.out_folder.setClearButtonEnabled(True)
        self.out_folder.setToolTip("Where runs are written (a 'train-<date>-<time>' folder per run: checkpoint.pt, "
                                   "best/last.safetensors, log.jsonl).\nEmpty: a temporary folder, deleted when the "
                                   "next run starts or the widget closes (save the model first).")
        self.out_browse = QPushButton("Browse…")
        self.out_browse.setToolTip("Choose the output folder.")
        orow.addWidget(self.out_folder, 1)
        orow.addWidget(self.out_browse)
        af.addRow("output folder", orow)
        self.adv_box.setVisible(False)
        lay.addWidget(self.adv_box)

        brow2 = QHBoxLayout()
        self.run_btn = QPushButton("Train")
        self.run_btn.setToolTip("Start training in the background (the viewer stays usable).")
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setToolTip("Stop after the current step; a checkpoint and the last model are kept "
                                   "(Resume continues, Save model… saves).")
        self.resume_btn = QPushButton("Resume")
        self.resume_btn.setToolTip("Continue the stopped run from its checkpoint, with the same data.")
        self.save_btn = QPushButton("Save model…")
        self.save_btn.setToolTip("Write the best model of the last run (else its last model) to a .safetensors file, "
                                 "for the Enhance widget or `matrestore sr enhance --model`.")
        brow2.addWidget(self.run_btn, 1)
        brow2.addWidget(self.cancel_btn)
        brow2.addWidget(self.resume_btn)
        brow2.addWidget(self.save_btn)
        lay.addLayout(brow2)
        self.epoch_bar = QProgressBar()
        self.epoch_bar.setFormat("epoch %v / %m")
        self.epoch_bar.setToolTip("Epochs done of all epochs.")
        self.progress_bar = QProgressBar()
        self.progress_bar.setFormat("step %v / %m")
        self.progress_bar.setToolTip("Training steps done of all steps.")
        self.progress_label = QLabel("")
        self.progress_label.setWordWrap(True)
        self.progress_label.setToolTip("Epoch, step, phase, current loss and the estimated time left.")
        lay.addWidget(self.epoch_bar)
        lay.addWidget(self.progress_bar)
        lay.addWidget(self.progress_label)
        self.loss_plot = LossPlot()
        lay.addWidget(self.loss_plot)
        self.val_table = QTableWidget(0, 5)
        self.val_table.setHorizontalHeaderLabels(["epoch", "PSNR (dB)", "SSIM", "ESSIM", "vs bicubic"])
        self.val_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.val_table.verticalHeader().setVisible(False)
        vh = self.val_table.horizontalHeader()
        for c in range(5):
            vh.setSectionResizeMode(c, QHeaderView.Stretch if c == 4 else QHeaderView.ResizeToContents)
        self.val_table.setMinimumHeight(110)
        self.val_table.setMaximumHeight(190)
        self.val_table.setToolTip("Validation after every epoch, on held-out cells never trained on, in the images' "
                                  "own intensity units: the network's PSNR / SSIM / ESSIM, and its PSNR gain over "
                                  "bicubic interpolation (first row). The best epoch (kept as the model) is bold.")
        lay.addWidget(self.val_table)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.status.setToolTip("Result or error of the last run.")
        lay.addWidget(self.status)
        self.saved_label = QLabel("")
        self.saved_label.setWordWrap(True)
        self.saved_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.saved_label.setToolTip("Where the model and the run were written.")
        lay.addWidget(self.saved_label)
        lay.addStretch(1)

        self.run_btn.clicked.connect(self.run)
        self.cancel_btn.clicked.connect(self.cancel)
        self.resume_btn.clicked.connect(self.resume)
        self.save_btn.clicked.connect(lambda *_: self.save_model())
        self.mode_hr.toggled.connect(self._sync_mode)
        self.base_combo.currentIndexChanged.connect(self._sync_model)
        self.model_path.textChanged.connect(self._sync_model)
        self.model_browse.clicked.connect(self._browse_model)
        self.ref_browse.clicked.connect(self._browse_folder)
        self.out_browse.clicked.connect(self._browse_out)
        self.schedule_combo.currentIndexChanged.connect(self._sync_schedule)
        self.adv_toggle.toggled.connect(self._toggle_advanced)
        self.defaults_btn.clicked.connect(self.restore_defaults)
        self.device_combo.currentIndexChanged.connect(self._sync_device)
        self.pair_add.clicked.connect(self._add_current_pair)
        self.pair_remove.clicked.connect(self._remove_selected_pair)
        self.hr_list.itemChanged.connect(self._on_hr_check)
        self.ref_list.itemChanged.connect(self._on_ref_check)

    def _bind_settings(self) -> None:
        self._sync_device()  # the device list must exist before its stored value is applied
        s = self.settings = WidgetSettings("train")
        s.bind("pairs", self.mode_pairs, default=False)
        s.bind("hr_images", self.mode_hr, default=True)
        s.bind("base", self.base_combo, default=self.base_combo.itemText(0))
        s.bind("model_file", self.model_path, default="")
        s.bind("preset", self.preset_combo, default="cpu")
        s.bind("epochs", self.epochs_spin, default=20)
        s.bind("steps_per_epoch", self.steps_spin, default=0)
        s.bind("losses", self.schedule_combo, default=self.schedule_combo.itemText(0))
        s.bind("first_phase_percent", self.phase_spin, default=50)
        s.bind("batch_size", self.batch_spin, default=8)
        s.bind("patch", self.patch_spin, default=32)
        s.bind("cell", self.cell_spin, default=64)
        s.bind("lr_max", self.lr_spin, default=5e-4)
        s.bind("noise", self.noise_spin, default=0.0)
        s.bind("seed", self.seed_spin, default=0)
        s.bind("device", self.device_combo, default="auto")
        s.bind("output_folder", self.out_folder, default="")
        s.bind("reference_folder", self.ref_folder, default="")
        self.model_path.textChanged.connect(lambda *_: self.settings.save("model_file"))

    def _toggle_advanced(self, on: bool) -> None:
        self.adv_toggle.setArrowType(Qt.DownArrow if on else Qt.RightArrow)
        self.adv_box.setVisible(on)

    def restore_defaults(self) -> None:
        """Every remembered setting back to its default (the stored values are forgotten)."""
        self.settings.restore_defaults()
        self.mode_hr.setChecked(True)
        self._sync_mode()
        self._sync_model()
        self._sync_schedule()
        self._sync_device()

    # ------------------------------------------------------------------ option state
    def _sync_mode(self, *_) -> None:
        pairs = self.mode_pairs.isChecked()
        self.hr_list.setVisible(not pairs)
        self.pair_box.setVisible(pairs)
        self.noise_spin.setEnabled(not pairs)

    def base(self) -> str:
        return BASES[self.base_combo.currentText()]

    def _sync_model(self, *_) -> None:
        from ..sr.modelio import DEFAULT_MODEL

        base = self.base()
        self.model_row.setEnabled(base == "file")
        self.preset_combo.setEnabled(base == "new")
        ok, text = True, ""
        if base == "default":
            ok = DEFAULT_MODEL.is_file()
            text = "fine-tunes the bundled default model." if ok else (
                "No default model is installed: choose a model file or train a new model.")
        elif base == "file":
            p = self.model_path.text().strip()
            ok = bool(p) and Path(p).expanduser().is_file()
            text = "fine-tunes this file (it is never changed)." if ok else (
                "choose a model file." if not p else f"model file not found: {p}")
        else:
            text = "a new, untrained network of the preset below."
        self.model_note.setText(text)
        self.model_note.setStyleSheet("" if ok else ERROR_STYLE)

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

    def adv_from(self) -> float:
        mode = SCHEDULES[self.schedule_combo.currentText()]
        return {"two": self.phase_spin.value() / 100.0, "rec": 1.0, "all": 0.0}[mode]

    def _sync_device(self, *_) -> None:
        from .. import device as _device

        if self.device_combo.count() == 0:
            self.device_combo.blockSignals(True)
            self.device_combo.addItems(["auto"] + _device.available_devices())
            self.device_combo.blockSignals(False)
        try:
            auto = _device.describe("auto")
        except Exception as exc:  # noqa: BLE001 - a broken driver must not break the widget
            auto = f"unavailable ({exc})"
        self.device_note.setText(f"auto → {auto}" if self.device_combo.currentText() == "auto"
                                 else f"(auto would pick {auto})")

    def device(self):
        d = self.device_combo.currentText()
        return None if d in ("", "auto") else d

    def _browse_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Model to fine-tune", self.model_path.text(),
                                              "Model files (*.safetensors);;All files (*)")
        if path:
            self.set_base("file", path)

    def _browse_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder of reference images", self.ref_folder.text())
        if path:
            self.ref_folder.setText(path)
            self.settings.save("reference_folder")

    def _browse_out(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Output folder for training runs", self.out_folder.text())
        if path:
            self.out_folder.setText(path)
            self.settings.save("output_folder")

    # ------------------------------------------------------------------ layer pickers
    def _image_layers(self) -> list:
        from napari.layers import Image

        return [lyr for lyr in self.viewer.layers if isinstance(lyr, Image)]

    @staticmethod
    def _made_by(layer) -> str | None:
        md = (layer.metadata or {}).get(OUTPUT_KEY)
        return md.get("made_by") if isinstance(md, dict) else None

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
        alive = {id(lyr) for lyr in self.viewer.layers}
        self._pairs = [p for p in self._pairs if id(p[0]) in alive and id(p[1]) in alive]
        self._fill_list(self.hr_list, images, lambda lyr: id(lyr) in self._checked)
        self._hr_layers = list(images)
        self._fill_list(self.ref_list, images,
                        lambda lyr: id(lyr) in self._ref_checked
                        or ((lyr.metadata or {}).get(ROLE_KEY) == "reference" and id(lyr) not in self._ref_unchecked))
        self._ref_layers = list(images)
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
        bad = [(lyr.name, layer_problem(lyr)) for lyr in images if layer_problem(lyr) is not None]
        self.invalid_note.setText("Not offered: " + "; ".join(f"'{n}' ({why})" for n, why in bad) if bad else "")
        self.invalid_note.setVisible(bool(bad))

    def _fill_list(self, lst: QListWidget, layers: list, checked) -> None:
        lst.blockSignals(True)
        lst.clear()
        for lyr in layers:
            why = self._why_not(lyr)
            if why is None:
                item = QListWidgetItem(lyr.name)
                item.setFlags(Qt.ItemIsEnabled | Qt.ItemIsUserCheckable | Qt.ItemIsSelectable)
                item.setCheckState(Qt.Checked if checked(lyr) else Qt.Unchecked)
                h, w = lyr.data.shape[-2:]
                item.setToolTip(f"{lyr.name}: {h}×{w} px")
            else:
                item = QListWidgetItem(f"{lyr.name}  ({why})")
                item.setFlags(Qt.NoItemFlags)
                item.setToolTip(f"{lyr.name} cannot be used: {why}.")
            lst.addItem(item)
        lst.blockSignals(False)

    def _on_hr_check(self, item) -> None:
        lyr = self._hr_layers[self.hr_list.row(item)]
        (self._checked.add if item.checkState() == Qt.Checked else self._checked.discard)(id(lyr))

    def _on_ref_check(self, item) -> None:
        lyr = self._ref_layers[self.ref_list.row(item)]
        if item.checkState() == Qt.Checked:
            self._ref_checked.add(id(lyr))
            self._ref_unchecked.discard(id(lyr))
        else:
            self._ref_checked.discard(id(lyr))
            self._ref_unchecked.add(id(lyr))

    @staticmethod
    def _checked_in(lst: QListWidget, layers: list) -> list:
        return [lyr for i, lyr in enumerate(layers)
                if lst.item(i).flags() & Qt.ItemIsEnabled and lst.item(i).checkState() == Qt.Checked]

    def hr_layers(self) -> list:
        """The checked HR training layers, in list order."""
        return self._checked_in(self.hr_list, self._hr_layers)

    def reference_layers(self) -> list:
        """The checked reference layers, in list order."""
        return self._checked_in(self.ref_list, self._ref_layers)

    def set_hr_layers(self, names) -> None:
        """Check exactly the HR training layers named in ``names`` (for scripts and tests)."""
        self._set_checked(self.hr_list, self._hr_layers, names)

    def set_references(self, names) -> None:
        """Check exactly the reference layers named in ``names`` (for scripts and tests)."""
        self._set_checked(self.ref_list, self._ref_layers, names)

    @staticmethod
    def _set_checked(lst, layers, names) -> None:
        names = set(names)
        for i, lyr in enumerate(layers):
            item = lst.item(i)
            if item.flags() & Qt.ItemIsUserCheckable:
                item.setCheckState(Qt.Checked if lyr.name in names else Qt.Unchecked)

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
        from ..sr.data import split_indices

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
                if lr_l is hr_l:
                    raise InputError(f"pair '{lr_l.name}': the LR and HR layers are the same layer.")
                lr_d = self._check_layer(lr_l, "LR image", cell)
                hr_d = self._check_layer(hr_l, "HR image", cell * s)
                ratio = np.asarray(hr_d.shape, float) / (np.asarray(lr_d.shape, float) * s)
                if np.any(ratio < 0.8) or np.any(ratio > 1.25):
                    raise InputError(f"pair '{lr_l.name}' / '{hr_l.name}': the HR image ({hr_d.shape[0]}×"
                                     f"{hr_d.shape[1]}) must be about {s}× the LR image ({lr_d.shape[0]}×"
                                     f"{lr_d.shape[1]}).")
                pairs.append((lr_d, hr_d))
                sources.append(hr_l)
                names.append(f"{lr_l.name} / {hr_l.name}")
                n_cells += (lr_d.shape[0] // cell) * (lr_d.shape[1] // cell)
        refs = self.reference_layers()
        folder = self.ref_folder.text().strip()
        if folder and not Path(folder).expanduser().is_dir():
            raise InputError(f"reference folder not found: {folder}")
        train_layers = {id(x) for x in sources} | {id(p[0]) for p in self._pairs if pairs_mode}
        for lyr in refs:
            if id(lyr) in train_layers:
                raise InputError(f"reference '{lyr.name}' is also training data: the network would see the ground "
                                 "truth through its references. Uncheck it or use another image.")
            self._check_layer(lyr, "reference", 1)
        ref_sources = [np.asarray(lyr.data) for lyr in refs] + ([str(Path(folder).expanduser())] if folder else [])
        n_train = split_indices(n_cells).count("train") if n_cells else 0
        if n_cells < 2 or (n_train < 2 and not ref_sources):
            raise InputError(f"only {n_cells} cell(s) of {cell}×{cell} LR px in the training data: at least 3 are "
                             "needed (training and validation); use more or larger images, or lower 'cell' under "
                             "Advanced.")
        steps = self.steps_spin.value() or None
        options = {"epochs": self.epochs_spin.value(), "steps_per_epoch": steps, "batch_size": self.batch_spin.value(),
                   "patch": patch, "cell": cell, "lr_max": self.lr_spin.value(),
                   "lr_min": min(1e-4, self.lr_spin.value()), "adv_from": self.adv_from(), "seed": self.seed_spin.value()}
        if init is None:
            options["preset"] = self.preset_combo.currentText()
        if not pairs_mode and self.noise_spin.value() > 0:
            options["noise"] = self.noise_spin.value()
        src = sources[0]
        return {"hr": hr, "pairs": pairs, "names": names, "sources": [(lyr.name, tuple(float(v) for v in lyr.scale[-2:]),
                                                                       tuple(float(v) for v in lyr.translate[-2:]),
                                                                       tuple(int(n) for n in lyr.data.shape[-2:]),
                                                                       tuple(lyr.units[-2:])) for lyr in sources],
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
        running = state is State.RUNNING
        self.run_btn.setEnabled(not running)
        self.cancel_btn.setEnabled(running)
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
            opts = self._job["options"]
            spe = rec["total"] // max(opts["epochs"], 1)
            adv = int(math.floor(opts["epochs"] * opts["adv_from"]))
            if 0 < adv < opts["epochs"]:
                self.loss_plot.mark(adv * spe, "phase 2")
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
        to the right of the image the cell comes from."""
        job = self._job
        i = min(int(pv.get("source_index", 0)), len(job["sources"]) - 1)
        name, (sy, sx), (ty, tx), (h, w), units = job["sources"][i]
        s = int(pv.get("scale", job["scale"]))
        n = pv["hr"].shape[0]
        gap = max(n // 8, 4)
        y0 = ty
        x0 = tx + (w + gap) * sx
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
            self._put_preview(PREVIEW_NAMES[k], np.asarray(pv[k], np.float32), (ys, xs), tr, md, clim, units)

    def _put_preview(self, name, data, scale, translate, metadata, clim, units):
        from napari.layers import Image

        if name in self.viewer.layers and isinstance(self.viewer.layers[name], Image):
            layer = self.viewer.layers[name]
            layer.data = data
            layer.scale = scale
            layer.translate = translate
            layer.metadata = metadata
            return layer
        kwargs = dict(name=name, scale=scale, translate=translate, metadata=metadata, contrast_limits=clim,
                      colormap="gray")
        if units is not None:
            try:
                return self.viewer.add_image(data, units=units, **kwargs)
            except Exception:  # noqa: BLE001 - a unit napari does not understand
                pass
        return self.viewer.add_image(data, **kwargs)

    def preview_layers(self) -> dict:
        return {k: self.viewer.layers[n] for k, n in PREVIEW_NAMES.items() if n in self.viewer.layers}

    def _finish_text(self, res: dict, stopped: bool) -> str:
        job = self._job
        el = time.perf_counter() - getattr(self, "_t_start", time.perf_counter())
        rows = [h for h in self.history if h["val"]]
        best = max((h for h in rows if h["best"]), key=lambda h: h["epoch"], default=None)
        head = "Stopped" if stopped else "Done"
        text = (f"{head}: {len(self.history)} of {job['options']['epochs']} epoch(s), step "
                f"{self.progress.get('step', 0)}/{self.progress.get('total', 0)} in {_fmt_time(el)}"
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
        self._result = res
        self.status.setStyleSheet("")
        self.status.setText(self._finish_text(res, stopped=False))
        self._show_run_folder()
        self._follow_state(self.runner.state)

    def _on_stopped(self, res) -> None:
        self._result = res
        self.status.setStyleSheet("")
        self.status.setText(self._finish_text(res, stopped=True))
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
    def closeEvent(self, event):  # noqa: N802 (Qt API)
        ended = self.runner.stop()  # (also done by the runner's event filter)
        ev = self.viewer.layers.events
        for name in ("inserted", "removed", "reordered", "renamed"):
            try:
                getattr(ev, name).disconnect(self._refresh_layers)
            except (TypeError, ValueError, RuntimeError):
                pass
        if ended:
            for d in self._temp_dirs:
                shutil.rmtree(d, ignore_errors=True)
            self._temp_dirs = []
        super().closeEvent(event)
