"""The parts the Train / fine-tune widget is assembled from (each runs standalone, none over ~200 lines):

- :class:`TrainRun` — the facts of one run (job, run folder, history, alignment, progress, timings,
  saved path, temporary folders), reset in one place;
- :class:`DataPart` — HR image layers to check, or LR/HR pairs; its checks of the chosen layers;
- :class:`SchedulePart` — epochs, steps, loss schedule and the duration estimate;
- :class:`PairsPart` — the LR/HR pair picker and its table (with the realignment found per pair);
- :class:`ProgressPart` — the epoch bar, the live :class:`LossPlot` and the validation table, fed with
  the engine's progress records (:mod:`matrestore.progress`);
- :class:`PreviewLayers` — the three preview layers (LR / SR / HR of a validation cell), updated in place
  to the right of every user layer;
- :func:`read_only_table`, :class:`VScroll`.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from qtpy.QtCore import QPointF, Qt
from qtpy.QtGui import QColor, QFont, QPen, QPolygonF
from qtpy.QtWidgets import (QAbstractItemView, QComboBox, QGroupBox, QHBoxLayout, QHeaderView, QLabel, QProgressBar,
                            QFrame, QPushButton, QScrollArea, QSizePolicy, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from .._layerdata import OUTPUT_KEY, made_by
from .._validate import InputError, as_2d_image
from ..progress import format_duration
from ._layers import (LayerCheckList, combo_box, layer_key, layer_problem, put_image, radio_row, same_layer,
                      selectable_label, spin_box)
from ._plot import AXIS, BACKGROUND, PlotWidget

__all__ = ["TrainRun", "TrainControls", "DataPart", "SchedulePart", "SCHEDULES", "PairsPart", "why_not", "check_layer", "copy_model", "ProgressPart", "PreviewLayers", "LossPlot", "read_only_table", "VScroll",
           "PREVIEW_NAMES", "PREVIEW_KIND"]

PREVIEW_NAMES = {"lr": "train_preview_lr", "sr": "train_preview_sr", "hr": "train_preview_hr"}
PREVIEW_KIND = "train preview"


# ---------------------------------------------------------------------------------------- run state
@dataclass
class TrainRun:
    """The facts of the current (or last) run; :meth:`start` resets them for a new one."""

    job: dict | None = None
    run_dir: Path | None = None
    result: dict | None = None
    history: list = field(default_factory=list)  # [{"epoch", "val", "best"}]
    alignment: list = field(default_factory=list)  # per LR/HR pair, from the setup record
    progress: dict = field(default_factory=dict)  # step, total, epoch, phase, losses
    saved_path: Path | None = None
    t_start: float | None = None
    temp_dirs: list = field(default_factory=list)  # temporary run folders (deleted with the next run)

    def start(self, job: dict, run_dir: Path) -> None:
        self.job, self.run_dir, self.result, self.saved_path = job, run_dir, None, None
        self.history, self.alignment, self.progress = [], [], {}

    def new_dir(self, out: str) -> Path:
        """A new run folder: ``train-<date>-<time>`` in ``out``, or a temporary folder when ``out`` is empty
        (it replaces the previous temporary one and goes with this object, or at exit)."""
        import tempfile
        import weakref

        self.drop_temporary()
        if not out:
            d = Path(tempfile.mkdtemp(prefix="matrestore_train_"))
            self.temp_dirs.append(d)
            weakref.finalize(self, shutil.rmtree, str(d), True)
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

    def model_file(self) -> Path | None:
        """best.safetensors, else last.safetensors of the run (None before a run)."""
        if self.run_dir is None:
            return None
        for n in ("best.safetensors", "last.safetensors"):
            if (self.run_dir / n).is_file():
                return self.run_dir / n
        return None

    def inputs(self, model_path_text: str = "") -> list:
        """Model files a save must never replace: the bundled model, the run's base, the chosen file."""
        from ..sr.modelio import DEFAULT_MODEL

        out = [DEFAULT_MODEL]
        if self.job is not None and self.job["init"] not in (None, "default"):
            out.append(Path(self.job["init"]))
        if model_path_text.strip():
            out.append(Path(model_path_text.strip()).expanduser())
        return out

    def has_checkpoint(self) -> bool:
        return self.run_dir is not None and (self.run_dir / "checkpoint.pt").is_file()

    def elapsed(self) -> float:
        return 0.0 if self.t_start is None else time.perf_counter() - self.t_start

    def is_temporary(self) -> bool:
        return any(self.run_dir == d for d in self.temp_dirs)

    def drop_temporary(self) -> None:
        for d in self.temp_dirs:
            shutil.rmtree(d, ignore_errors=True)
        self.temp_dirs = []

    def summary(self, res: dict | None, stopped: bool) -> str:
        """The status line after a run: epochs and steps done, time, device, base, best epoch."""
        job, best = self.job, self.best()
        head = "Stopped" if stopped else "Done"
        text = (f"{head}: {len(self.history)} of {job['options']['epochs']} epoch(s), step "
                f"{self.progress.get('step', 0)}/{self.progress.get('total', 0)} in {format_duration(self.elapsed())}"
                f"{' on ' + res['device'] if res and res.get('device') else ''}; base: {job['base']}.")
        if best is not None:
            v = best["val"]
            text += (f" Best: epoch {best['epoch']} (validation PSNR {v['ttsr']['psnr']:.2f} dB, "
                     f"bicubic {v['bicubic']['psnr']:.2f}).")
        text += " Save the model with 'Save model…'." if self.model_file() else ""
        if stopped:
            text += " Resume continues from the checkpoint."
        return text

    def best(self) -> dict | None:
        rows = [h for h in self.history if h["val"]]
        return max((h for h in rows if h["best"]), key=lambda h: h["epoch"], default=None)


# ---------------------------------------------------------------------------------------- live loss plot
class TrainControls:
    """Train / Resume / Cancel of a training dock widget (SR, denoise, LabDCT), beside
    :class:`~matrestore._widgets._layers.LayerDock` (listed before it). The widget provides ``self.current``
    (a :class:`TrainRun`), ``out_folder``, ``saved_label``, ``_collect()`` (the job or InputError),
    ``_start(resume)`` and ``_new_run(job)`` (resets its parts for a new run); ``_can_resume()`` and
    ``_before_resume()`` refine resuming."""

    OUTPUT_TIP = ("Where runs are written (a 'train-<date>-<time>' folder per run: checkpoint.pt, best/last.safetensors, "
                  "log.jsonl{extra}).\nEmpty: a temporary folder, deleted when the next run starts or the widget "
                  "closes (save the model first).")

    def _output_folder_row(self, extra: str = ""):
        """The output-folder row (``self.out_folder``, ``self.out_browse``; remembered as "output_folder");
        ``extra``: what else a run folder holds (", the cached structures")."""
        row, self.out_folder, self.out_browse = self._folder_row(
            "a temporary folder", self.OUTPUT_TIP.format(extra=extra), "Choose the output folder.",
            "Output folder for training runs", "output_folder")
        return row

    def _advanced_part(self, lay, form, toggle_tip: str, defaults_tip: str, extra: str = "") -> None:
        """An "Advanced" toggle with "Restore defaults" beside it, then ``self.adv_box`` (hidden) holding
        ``form`` (a ParamForm) with the device row and the output folder, added to ``lay``."""
        from qtpy.QtWidgets import QFormLayout, QWidget

        trow = QHBoxLayout()
        trow.addWidget(self._advanced_toggle(toggle_tip))
        trow.addStretch(1)
        trow.addWidget(self._defaults_button(defaults_tip))
        lay.addLayout(trow)
        self.adv_box = QWidget()
        af = QFormLayout(self.adv_box)
        af.setContentsMargins(12, 0, 0, 0)
        af.addRow(form)
        form.add_row("device", self._device_row("trains"))
        form.add_row("output folder", self._output_folder_row(extra))
        self.adv_box.setVisible(False)
        lay.addWidget(self.adv_box)

    def _add_training_progress(self, lay, part, progress: tuple[str, str], step_tip: str) -> None:
        """The progress of a run, added to ``lay``: ``part``'s epoch bar, the progress bar and step label,
        ``part``'s loss plot and validation table, the status, and ``self.saved_label`` (where the model and
        the run were written)."""
        self.progress_part = part
        self.epoch_bar, self.loss_plot, self.val_table = part.epoch_bar, part.loss_plot, part.val_table
        lay.addWidget(self.epoch_bar)
        self._add_progress(lay, progress, step_tip)
        self.progress_label.setWordWrap(True)
        lay.addWidget(self.loss_plot)
        lay.addWidget(self.val_table)
        lay.addWidget(self._status_label())
        self.saved_label = selectable_label("Where the model and the run were written.")
        lay.addWidget(self.saved_label)
        lay.addStretch(1)

    def run(self):
        """Start a new training run in a worker thread."""
        if self.runner.is_running:
            return None
        try:
            job = self._collect()
            run_dir = self.current.new_dir(self.out_folder.text().strip())
        except InputError as exc:
            self.runner.fail(exc)
            return None
        self.current.start(job, run_dir)
        self._new_run(job)
        self.saved_label.setText("")
        return self._start(resume=False)

    def resume(self):
        """Continue the stopped run from its checkpoint (its data and recipe)."""
        if self.runner.is_running or self.current.job is None:
            return None
        if not self._can_resume():
            self.runner.fail(InputError("no checkpoint to resume from; press Train."))
            return None
        self._before_resume()
        return self._start(resume=True)

    def cancel(self) -> None:
        """Stop after the current step: the engine saves a checkpoint (and the last model) first."""
        if self.runner.is_running:
            self.runner.cancel()
            self.progress_label.setText("cancelling after this step (saving a checkpoint)…")

    def _can_resume(self) -> bool:
        return self.current.has_checkpoint()

    def _before_resume(self) -> None:
        pass

    def _new_run(self, job: dict) -> None:
        raise NotImplementedError


class LossPlot(PlotWidget):
    """A small live plot of training losses against the step (QPainter; no plotting library needed).

    ``add(step, losses)`` appends the values of the keys in ``keys``; ``mark(step, text)`` draws a
    dashed vertical line (the start of the second phase); ``set_total(n)`` fixes the x range.
    """

    COLORS = {"total": QColor(255, 200, 60), "rec": QColor(90, 170, 255), "per": QColor(120, 220, 120),
              "tper": QColor(220, 120, 220), "adv": QColor(255, 110, 90),
              "loss": QColor(255, 200, 60), "mse": QColor(90, 170, 255)}  # denoise: total loss, MSE
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
def read_only_table(headers: list, tooltip: str) -> QTableWidget:
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


class VScroll(QScrollArea):
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

    @classmethod
    def body_of(cls, owner: QWidget) -> QVBoxLayout:
        """Make ``owner``'s whole content one :class:`VScroll` (a tall training widget scrolls in a small
        window) and return the layout to fill."""
        outer = QVBoxLayout(owner)
        outer.setContentsMargins(0, 0, 0, 0)
        scroll = cls()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        inner = QWidget()
        scroll.setWidget(inner)
        outer.addWidget(scroll)
        return QVBoxLayout(inner)


# ---------------------------------------------------------------------------------------- schedule
SCHEDULES = {"two phases (paper)": "two", "reconstruction loss only": "rec", "all losses from the start": "all"}
DEFAULT_SCHEDULE = "reconstruction loss only"  # sr.train.FINE_TUNE: adv_from = 1


class SchedulePart(QWidget):
    """Epochs and steps (from :class:`~matrestore.sr.train.TrainConfig`, the ten-minute FINE_TUNE defaults),
    the loss schedule and the duration estimate shown before starting."""

    def __init__(self, settings=None, parent=None):
        from ..sr.train import FINE_TUNE, TrainConfig
        from ._params import ParamForm

        super().__init__(parent)
        self.form = ParamForm(TrainConfig, names=["epochs", "steps_per_epoch"], defaults=FINE_TUNE, settings=settings)
        self.losses = combo_box(
            SCHEDULES, "two phases (SEM paper): the reconstruction (L1) loss only, then the perceptual, transferal "
            "perceptual and adversarial (WGAN-GP) losses added.\nreconstruction loss only: the sharpest PSNR, no "
            "adversarial textures.\nall losses from the start: no first phase.")
        self.losses.setCurrentText(DEFAULT_SCHEDULE)
        self.phase = spin_box("Length of the first, reconstruction-only phase (the paper: half of the epochs).",
                              suffix=" % of the epochs", minimum=0, maximum=100, value=50, singleStep=10)
        self.estimate_label = selectable_label("A rough duration from the measured seconds per step of the preset on "
                                               "this project's 2-core CPU (sr.train.estimate_seconds); none on a GPU.")
        self.form.add_row("losses", self.losses)
        self.form.add_row("first phase", self.phase)
        self.form.add_row("estimate", self.estimate_label)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.form)

    def sync(self) -> None:
        self.phase.setEnabled(SCHEDULES[self.losses.currentText()] == "two")

    def adv_from(self) -> float:
        """The fraction of the epochs on the reconstruction loss only."""
        mode = SCHEDULES[self.losses.currentText()]
        return {"two": self.phase.value() / 100.0, "rec": 1.0, "all": 0.0}[mode]

    def show_estimate(self, preset: str, batch: int, patch: int, device) -> None:
        from ..sr.train import estimate_seconds

        steps = self.form.value("steps_per_epoch")
        total = self.form.value("epochs") * (steps or 1)
        try:
            secs = estimate_seconds(preset, total, batch=batch, patch=patch, device=device, adv_from=self.adv_from())
        except InputError:
            secs = None
        if secs is None:
            self.estimate_label.setText("no estimate for this device or model (measured on the CPU only)")
        elif steps:
            self.estimate_label.setText(f"about {format_duration(secs)} on this CPU ({total} steps)")
        else:
            self.estimate_label.setText(f"about {format_duration(secs)} per step on this CPU × the steps that "
                                        "'auto' picks from the data")


# ---------------------------------------------------------------------------------------- LR/HR pairs
class PairsPart(QWidget):
    """Pick LR/HR layer pairs; the table shows each pair and, once training has prepared the data, the
    realignment found (median offset and range over the cells)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.pairs: list = []  # [(lr_layer, hr_layer)]
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.lr_combo = QComboBox()
        self.lr_combo.setToolTip("The low-resolution scan of the pair.")
        self.hr_combo = QComboBox()
        self.hr_combo.setToolTip("The high-resolution scan of the same field (4× the LR size).")
        self.add_btn = QPushButton("Add")
        self.add_btn.setToolTip("Add this LR/HR pair to the training data.")
        row.addWidget(QLabel("LR"))
        row.addWidget(self.lr_combo, 1)
        row.addWidget(QLabel("HR"))
        row.addWidget(self.hr_combo, 1)
        row.addWidget(self.add_btn)
        lay.addLayout(row)
        self.table = read_only_table(
            ["LR", "HR", "offset found (dy, dx) HR px"], "The LR/HR pairs to train on. After the data are prepared, "
            "the last column shows the realignment found: the median offset of the HR window from its nominal place "
            "(HR px) and its range over the cells.")
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setMaximumHeight(90)
        lay.addWidget(self.table)
        self.remove_btn = QPushButton("Remove selected pair")
        self.remove_btn.setToolTip("Remove the selected pair from the list.")
        lay.addWidget(self.remove_btn)
        self.remove_btn.clicked.connect(self.remove_selected)
        self.alignment: list = []

    def offer(self, layers, alive_keys, key) -> None:
        """Offer ``layers`` in the pickers; drop pairs whose layers are gone (``key``: the layer key)."""
        self.pairs = [p for p in self.pairs if key(p[0]) in alive_keys and key(p[1]) in alive_keys]
        for combo in (self.lr_combo, self.hr_combo):
            keep = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems([lyr.name for lyr in layers])
            if keep:
                combo.setCurrentText(keep)
            combo.blockSignals(False)
        self.fill()

    def add(self, lr_layer, hr_layer) -> None:
        self.pairs.append((lr_layer, hr_layer))
        self.fill()

    def current_names(self) -> tuple[str, str]:
        lr, hr = self.lr_combo.currentText(), self.hr_combo.currentText()
        if not lr or not hr:
            raise InputError("open the LR and the HR image layers of a pair first.")
        return lr, hr

    def remove_selected(self) -> None:
        rows = sorted({i.row() for i in self.table.selectedIndexes()}, reverse=True)
        for r in rows or ([len(self.pairs) - 1] if self.pairs else []):
            del self.pairs[r]
        self.fill()

    def fill(self, alignment: list | None = None) -> None:
        if alignment is not None:
            self.alignment = alignment
        t = self.table
        t.setRowCount(len(self.pairs))
        shown = {tuple(a.get("layers", ())): a for a in self.alignment}
        for r, (lr, hr) in enumerate(self.pairs):
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


# ---------------------------------------------------------------------------------------- training data
def why_not(layer) -> str | None:
    """Why an image layer cannot be training data or a reference (None when it can)."""
    why = layer_problem(layer)
    if why is None and made_by(layer.metadata) == PREVIEW_KIND:
        why = "a training preview"
    elif why is None and made_by(layer.metadata) is not None:
        why = "a super-resolution result"
    return why


def check_layer(layer, role: str, min_side: int, cell: int) -> np.ndarray:
    """The 2-D data of ``layer`` or an InputError that says what is wrong with it."""
    from napari.layers import Image

    if not isinstance(layer, Image):
        raise InputError(f"{role} '{layer.name}' is a {type(layer).__name__} layer: pick a 2-D greyscale image layer.")
    if layer_problem(layer):
        raise InputError(f"{role} '{layer.name}': {layer_problem(layer)}.")
    if made_by(layer.metadata) == PREVIEW_KIND:
        raise InputError(f"{role} '{layer.name}' is a training preview, not data.")
    data = as_2d_image(np.asarray(layer.data), f"{role} '{layer.name}'")
    h, w = data.shape
    if min(h, w) < min_side:
        raise InputError(f"{role} '{layer.name}' is {h}×{w} px: too small to train on with cells of {cell} LR px (at "
                         f"least {min_side} px a side; lower 'cell' under Advanced, or use larger images).")
    return data


class DataPart(QGroupBox):
    """The training data: HR image layers to check, or LR/HR pairs (:class:`PairsPart`)."""

    def __init__(self, parent=None):
        super().__init__("Training data", parent)
        lay = QVBoxLayout(self)
        mrow, self.mode_hr, self.mode_pairs = radio_row(
            ("HR images", "High-resolution image layers; their low-resolution versions are made by the 4× "
                          "area-average degradation (matrestore.degrade.downsample)."),
            ("LR/HR pairs", "Real pairs of a coarse (LR) and a fine (HR, 4× the LR size) scan of the same field; "
                            "every cell is realigned automatically (SSIM search within ±8 HR px) and the offsets "
                            "found are shown."))
        lay.addLayout(mrow)
        self.hr_list = LayerCheckList("used", "Check the high-resolution 2-D greyscale image layers to train on. "
                                      "Layers that cannot be used are greyed out with the reason.", max_height=72)
        lay.addWidget(self.hr_list)
        self.pairs = PairsPart()
        lay.addWidget(self.pairs)
        self.invalid_note = QLabel("")
        self.invalid_note.setWordWrap(True)
        self.invalid_note.setToolTip("Image layers that cannot be used for training, and why.")
        lay.addWidget(self.invalid_note)
        self.mode_hr.toggled.connect(self.sync_mode)

    def sync_mode(self, *_) -> None:
        pairs = self.mode_pairs.isChecked()
        self.hr_list.setVisible(not pairs)
        self.pairs.setVisible(pairs)

    def refresh(self, images: list, alive: set) -> None:
        """Offer ``images`` (checked ones stay checked); drop pairs of layers that are gone."""
        self.hr_list.offer([(lyr, why_not(lyr), lyr.name) for lyr in images])
        self.pairs.offer([lyr for lyr in images if why_not(lyr) is None], alive, layer_key)

    def hr_layers(self) -> list:
        return self.hr_list.checked_layers()

    def collect(self, cell: int, scale: int, hr_layers=None) -> tuple:
        """``(hr arrays, (lr, hr) pairs, source layers, names, number of cells)`` of the chosen data (``hr_layers``:
        the HR layers to use, default the checked ones), checked."""
        from ..sr.data import check_pair_shapes

        hr, pairs, sources, names, n_cells = [], [], [], [], 0
        s = scale
        if not self.mode_pairs.isChecked():
            layers = self.hr_layers() if hr_layers is None else hr_layers
            if not layers:
                raise InputError("no training images: check at least one high-resolution image layer.")
            for lyr in layers:
                d = check_layer(lyr, "training image", cell * s, cell)
                hr.append(d)
                sources.append(lyr)
                names.append(lyr.name)
                n_cells += (d.shape[0] // s // cell) * (d.shape[1] // s // cell)
            return hr, pairs, sources, names, n_cells
        if not self.pairs.pairs:
            raise InputError("no LR/HR pairs: pick the LR and HR layers of a pair and press Add.")
        for lr_l, hr_l in self.pairs.pairs:
            if same_layer(lr_l, hr_l):
                raise InputError(f"pair '{lr_l.name}': the LR and HR layers are the same layer.")
            lr_d = check_layer(lr_l, "LR image", cell, cell)
            hr_d = check_layer(hr_l, "HR image", cell * s, cell)
            check_pair_shapes(lr_d.shape, hr_d.shape, s, f"pair '{lr_l.name}' / '{hr_l.name}'")
            pairs.append((lr_d, hr_d))
            sources.append(hr_l)
            names.append(f"{lr_l.name} / {hr_l.name}")
            n_cells += (lr_d.shape[0] // cell) * (lr_d.shape[1] // cell)
        return hr, pairs, sources, names, n_cells


# ---------------------------------------------------------------------------------------- progress
class ProgressPart(QWidget):
    """Epoch bar, live loss plot and validation table, fed with the engine's records (:meth:`show`).

    The defaults are the SR trainer's; another workflow passes its loss keys (``loss_keys``, the plot's
    ``loss_tip``), validation columns (``val_headers``, ``val_tip``) and ``val_row(history row) -> texts``
    (one table row per validated epoch, the best in bold)."""

    def __init__(self, parent=None, *, loss_keys=("total", "rec"), loss_tip=None, val_headers=None, val_tip=None,
                 val_row=None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.epoch_bar = QProgressBar()
        self.epoch_bar.setFormat("epoch %v / %m")
        self.epoch_bar.setToolTip("Epochs done of all epochs.")
        lay.addWidget(self.epoch_bar)
        self.loss_plot = LossPlot(loss_keys)
        if loss_tip:
            self.loss_plot.setToolTip(loss_tip)
        self._val_row = val_row
        self.val_table = read_only_table(
            val_headers or ["epoch", "PSNR (dB)", "SSIM", "ESSIM", "vs bicubic"], val_tip or "Validation after every "
            "epoch, on held-out cells never trained on, in the images' own intensity units: the network's PSNR / "
            "SSIM / ESSIM, and its PSNR gain over bicubic interpolation (first row). The best epoch (kept as the "
            "model) is bold.")
        self.val_table.setMinimumHeight(110)
        self.val_table.setMaximumHeight(190)

    def reset(self, epochs: int) -> None:
        self.loss_plot.clear()
        self.val_table.setRowCount(0)
        self.epoch_bar.setRange(0, int(epochs))
        self.epoch_bar.setValue(0)

    def show(self, rec: dict, run: TrainRun) -> None:
        """Take one engine record into ``run`` and the displays (GUI thread)."""
        kind = rec.get("kind")
        if "step" in rec and "total" in rec:
            run.progress.update(step=rec["step"], total=rec["total"])
        if kind == "setup" and rec.get("total"):
            self.loss_plot.set_total(rec["total"])
            if rec.get("phase2_step") is not None:  # the engine says where its second phase begins
                self.loss_plot.mark(rec["phase2_step"], "phase 2")
            run.progress["epoch"] = rec.get("epoch", 0)
            self.epoch_bar.setValue(int(rec.get("epoch", 0)))
        elif kind == "step":
            self.loss_plot.add(rec["step"], rec["losses"])
            run.progress.update(epoch=rec["epoch"], phase=rec.get("phase"), losses=rec["losses"])
        elif kind == "epoch":
            run.progress["epoch"] = rec["epoch"]
            self.epoch_bar.setValue(int(rec["epoch"]))
            run.history.append({"epoch": rec["epoch"], "val": rec.get("val"), "best": bool(rec.get("best"))})
            self.fill_validation(run)

    def fill_validation(self, run: TrainRun) -> None:
        t = self.val_table
        rows = [h for h in run.history if h["val"]]
        t.setRowCount(len(rows) + (1 if rows else 0))
        if not rows:
            return
        best = run.best()
        if self._val_row is not None:  # another workflow's columns: one row per validated epoch
            t.setRowCount(len(rows))
            for r, h in enumerate(rows):
                for c, text in enumerate(self._val_row(h)):
                    it = QTableWidgetItem(text)
                    if h is best:
                        f = it.font()
                        f.setBold(True)
                        it.setFont(f)
                    t.setItem(r, c, it)
            t.scrollToBottom()
            return
        b = rows[-1]["val"]["bicubic"]
        cells = [("bicubic", f"{b['psnr']:.2f}", f"{b['ssim']:.4f}", f"{b['essim']:.4f}", "baseline")]
        for h in rows:
            v = h["val"]
            cells.append((str(h["epoch"]), f"{v['ttsr']['psnr']:.2f}", f"{v['ttsr']['ssim']:.4f}",
                          f"{v['ttsr']['essim']:.4f}", f"{v['psnr_gain_db']:+.2f} dB"))
        for r, row in enumerate(cells):
            for c, text in enumerate(row):
                it = QTableWidgetItem(text)
                if best is not None and r > 0 and rows[r - 1] is best:
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


# ---------------------------------------------------------------------------------------- previews
class PreviewLayers:
    """The LR / SR / HR preview layers of a validation cell, updated in place (a second run reuses them),
    in a row at the height of the cell's source image and to the right of every user layer."""

    WHAT = {"lr": "the LR input of a validation cell", "sr": "the current network's super-resolution of it",
            "hr": "its ground truth"}

    def __init__(self, viewer):
        self.viewer = viewer

    def layers(self, names: dict | None = None) -> dict:
        """The preview layers there are (``names``: ``{key: layer name}``, default the SR previews)."""
        return {k: self.viewer.layers[n] for k, n in (names or PREVIEW_NAMES).items() if n in self.viewer.layers}

    def right_edge(self) -> float:
        """The world x just right of every layer that is not a preview (where previews may go)."""
        right = [float(lyr.extent.world[1][-1]) + float(lyr.scale[-1])  # last pixel centre + one pixel
                 for lyr in self.viewer.layers if made_by(lyr.metadata) != PREVIEW_KIND]
        return max(right, default=0.0)

    def show_row(self, images: dict, names: dict, source: tuple, info: dict, what: dict | None = None,
                 clim_from: str | None = None) -> dict:
        """Any workflow's previews: the 2-D arrays ``images`` (``{key: array}``, left to right) as the image
        layers ``names[key]``, updated in place, at the pixel size of ``source`` (``(name, scale, translate,
        shape, units)`` of the layer they come from) in a row right of every user layer; contrast limits of
        ``images[clim_from]`` (default: each its own). ``info`` goes into their metadata with ``made_by``."""
        _, (sy, sx), (ty, _), _, units = source
        n = max(int(np.asarray(a).shape[1]) for a in images.values())
        gap = max(n // 8, 4)
        x0 = self.right_edge() + gap * sx
        out = {}
        for col, (k, arr) in enumerate(images.items()):
            a = np.asarray(arr, np.float32)
            ref = np.asarray(images[clim_from], np.float32) if clim_from else a
            clim = (float(np.percentile(ref, 0.5)), float(np.percentile(ref, 99.5)))
            if not clim[1] > clim[0]:
                clim = (float(ref.min()), float(ref.min()) + 1.0)
            md = {OUTPUT_KEY: {"made_by": PREVIEW_KIND, **info, "what": (what or {}).get(k, k)}}
            out[k] = put_image(self.viewer, names[k], a, (sy, sx), (ty, x0 + col * (n + gap) * sx), md, units=units,
                               contrast_limits=clim, colormap="gray")
            out[k].contrast_limits = clim  # also on an update in place
        return out

    def show(self, pv: dict, job: dict, epoch) -> None:
        i = min(int(pv.get("source_index", 0)), len(job["sources"]) - 1)
        name, (sy, sx), (ty, tx), (h, w), units = job["sources"][i]
        s = int(pv.get("scale", job["scale"]))
        n = pv["hr"].shape[0]
        gap = max(n // 8, 4)
        # right of every layer that is not a preview: previews never cover the user's images
        right = [float(lyr.extent.world[1][-1]) + float(lyr.scale[-1])  # last pixel centre + one pixel
                 for lyr in self.viewer.layers if made_by(lyr.metadata) != PREVIEW_KIND]
        x0 = max(right + [tx + w * sx]) + gap * sx
        hi = np.asarray(pv["hr"])
        clim = (float(np.percentile(hi, 0.5)), float(np.percentile(hi, 99.5)))
        if clim[1] <= clim[0]:
            clim = (float(hi.min()), float(hi.min()) + 1.0)
        base = {"made_by": PREVIEW_KIND, "source": name, "cell_origin_lr": pv.get("origin"), "split": pv.get("split"),
                "epoch": epoch}
        for k, col in (("lr", 0), ("sr", 1), ("hr", 2)):
            ys, xs = sy, sx
            tr = (ty, x0 + col * (n + gap) * sx)
            if k == "lr":
                # an LR pixel covers s×s HR pixels: its centre sits (s - 1)/2 HR pixels in (the inverse of
                # matrestore.baselines.upsampled_geometry), so the LR preview is as large as the other two
                (ys, xs), tr = (sy * s, sx * s), (tr[0] + sy * (s - 1) / 2, tr[1] + sx * (s - 1) / 2)
            md = {OUTPUT_KEY: {**base, "what": self.WHAT[k]}}
            put_image(self.viewer, PREVIEW_NAMES[k], np.asarray(pv[k], np.float32), (ys, xs), tr, md, units=units,
                      contrast_limits=clim, colormap="gray")


def copy_model(src: Path, dst, protected: list, run_dir: Path | None) -> Path:
    """Copy a trained model file to ``dst`` (``.safetensors`` added), atomically; never onto an input model
    (``protected``) nor into the run folder. InputError says why not."""
    import os

    dst = Path(dst).expanduser()
    if dst.suffix.lower() != ".safetensors":
        dst = dst.with_name(dst.name + ".safetensors")
    rdst = dst.resolve()
    for p in protected:
        if p.exists() and rdst == p.resolve():
            raise InputError(f"{dst} is an input model; choose another file name (inputs are never overwritten).")
    if run_dir is not None and run_dir.resolve() in rdst.parents:
        raise InputError("choose a file outside the run folder.")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(dst.name + ".part")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except OSError as exc:
        raise InputError(f"cannot write {dst}: {exc}") from exc
    return dst
