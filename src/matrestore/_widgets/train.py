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

import time
from pathlib import Path

import numpy as np
from qtpy.QtWidgets import QComboBox, QFileDialog, QFormLayout, QGroupBox, QPushButton, QWidget

from .._layerdata import ROLE_KEY, made_by
from .._validate import InputError
from ..progress import format_duration
from ..sr.train import TrainConfig
from ._layers import LayerDock, combo_box, layer_key, spatial_units
from ._model_choice import ModelDeviceMixin, default_model_installed, model_file_state
from ._params import ParamForm
from ._train_parts import (PREVIEW_KIND, PREVIEW_NAMES, DataPart, SchedulePart, LossPlot, PreviewLayers, ProgressPart,
                           TrainControls, TrainRun,
                           VScroll, check_layer, copy_model, why_not)
from ._worker import State, relay

__all__ = ["TrainWidget", "train_job", "LossPlot", "PREVIEW_NAMES"]

BASES = {"fine-tune the bundled default model": "default", "fine-tune a model file": "file",
         "train a new model": "new"}


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


class TrainWidget(TrainControls, ModelDeviceMixin, LayerDock):
    """Train or fine-tune a TTSR super-resolution model on image layers."""

    settings_group = "train"

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self.current = TrainRun()  # the facts of the current (or last) run
        self.previews = PreviewLayers(napari_viewer)
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
        lay = VScroll.body_of(self)  # the widget is tall: it scrolls in a small window

        self.data = DataPart()
        self.mode_hr, self.mode_pairs, self.hr_list = self.data.mode_hr, self.data.mode_pairs, self.data.hr_list
        self.pair_box, self.invalid_note = self.data.pairs, self.data.invalid_note
        self.pair_lr, self.pair_hr, self.pair_table = self.pair_box.lr_combo, self.pair_box.hr_combo, self.pair_box.table
        lay.addWidget(self.data)

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
        self.schedule_part = SchedulePart(self.settings)
        mf.addRow(self.schedule_part)
        sp = self.schedule_part
        self.schedule, self.schedule_combo, self.phase_spin, self.estimate_label = (sp.form, sp.losses, sp.phase,
                                                                                    sp.estimate_label)
        self.epochs_spin, self.steps_spin = self.schedule.control("epochs"), self.schedule.control("steps_per_epoch")
        lay.addWidget(mbox)

        self.advanced = ParamForm(TrainConfig, names=["batch_size", "patch", "cell", "lr_max", "noise", "seed"],
                                  settings=self.settings)
        self.batch_spin, self.patch_spin, self.cell_spin, self.lr_spin, self.noise_spin, self.seed_spin = (
            self.advanced.control(n) for n in ("batch_size", "patch", "cell", "lr_max", "noise", "seed"))
        self._advanced_part(lay, self.advanced,
                            "Show or hide the batch, patch, learning-rate, device and output-folder options.",
                            "Set every training setting of this widget back to its default (the layer choices stay).")

        self.resume_btn = QPushButton("Resume")
        self.resume_btn.setToolTip("Continue the stopped run from its checkpoint, with the same data.")
        self.save_btn = QPushButton("Save model…")
        self.save_btn.setToolTip("Write the best model of the last run (else its last model) to a .safetensors file, "
                                 "for the Enhance widget or `matrestore sr enhance --model`.")
        lay.addLayout(self._run_buttons(
            ("Train", "Start training in the background (the viewer stays usable)."),
            "Stop after the current step; a checkpoint and the last model are kept (Resume continues, Save model… "
            "saves).", extra=(self.resume_btn, self.save_btn)))
        self._add_training_progress(lay, ProgressPart(), ("step %v / %m", "Training steps done of all steps."),
                                    "Epoch, step, phase, current loss and the estimated time left.")

        self.resume_btn.clicked.connect(self.resume)
        self.save_btn.clicked.connect(lambda *_: self.save_model())
        self.mode_hr.toggled.connect(self._sync_mode)
        self.base_combo.currentIndexChanged.connect(self._sync_model)
        self.schedule_combo.currentIndexChanged.connect(self._sync_schedule)
        self.pair_box.add_btn.clicked.connect(self._add_current_pair)
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
        self.data.sync_mode()
        self.noise_spin.setEnabled(not self.mode_pairs.isChecked())

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
        self.schedule_part.sync()

    def _sync_estimate(self, *_) -> None:
        """Show how long the schedule will take, before starting."""
        preset = self.preset_combo.currentText() if self.base() == "new" else "cpu"  # the default's preset
        self.schedule_part.show_estimate(preset, self.batch_spin.value(), self.patch_spin.value(), self.device())

    def adv_from(self) -> float:
        return self.schedule_part.adv_from()

    def _browse_model(self) -> None:
        path = self._ask_model_file("Model to fine-tune")
        if path:
            self.set_base("file", path)

    # ------------------------------------------------------------------ layer pickers
    def _refresh_layers(self, event=None) -> None:
        images = [lyr for lyr in self._image_layers() if made_by(lyr.metadata) != PREVIEW_KIND]  # previews: not data
        self.data.refresh(images, {layer_key(lyr) for lyr in self.viewer.layers})
        self.ref_list.offer([(lyr, why_not(lyr), lyr.name) for lyr in images],
                            checked_by_default=lambda lyr: (lyr.metadata or {}).get(ROLE_KEY) == "reference")
        self._show_unoffered(images)

    def hr_layers(self) -> list:
        """The checked HR training layers, in list order."""
        return self.data.hr_layers()

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
        return list(self.pair_box.pairs)

    @property
    def _pairs(self) -> list:
        return self.pair_box.pairs

    def add_pair(self, lr_name: str, hr_name: str) -> None:
        """Add the pair of layers named ``lr_name`` / ``hr_name`` (checked when training starts)."""
        self.pair_box.add(self.viewer.layers[lr_name], self.viewer.layers[hr_name])
        self.mode_pairs.setChecked(True)

    def _add_current_pair(self) -> None:
        try:
            self.add_pair(*self.pair_box.current_names())
        except InputError as exc:
            self.runner.fail(exc)

    # the run's facts, for scripts and tests
    run_dir = property(lambda self: self.current.run_dir)
    history = property(lambda self: self.current.history)
    alignment = property(lambda self: self.current.alignment)
    progress = property(lambda self: self.current.progress)
    saved_path = property(lambda self: self.current.saved_path)

    # ------------------------------------------------------------------ collecting the inputs
    def _base_info(self) -> tuple:
        """``(init spec or None, scale, ref_crop, description)`` of the base model; reads only the header."""
        from ..sr.modelio import base_model_info

        return base_model_info(self.base(), preset=self.preset_combo.currentText(), path=self.model_path.text())

    def _collect(self) -> dict:
        """Snapshot of the inputs (arrays, names, geometry, options) or InputError."""
        from ..sr.data import check_cell_count

        init, s, ref_crop, base_desc = self._base_info()
        cell, patch = self.cell_spin.value(), self.patch_spin.value()
        if patch > cell:
            raise InputError(f"the patch ({patch} px) must not be larger than the cell ({cell} px); see Advanced.")
        pairs_mode = self.mode_pairs.isChecked()
        hr, pairs, sources, names, n_cells = self.data.collect(cell, s, self.hr_layers())
        refs = self.reference_layers()
        folder = self.ref_folder.text().strip()
        if folder and not Path(folder).expanduser().is_dir():
            raise InputError(f"reference folder not found: {folder}")
        train_layers = {layer_key(x) for x in sources} | {layer_key(p[0]) for p in self.pair_box.pairs if pairs_mode}
        for lyr in refs:
            if layer_key(lyr) in train_layers:
                raise InputError(f"reference '{lyr.name}' is also training data: the network would see the ground "
                                 "truth through its references. Uncheck it or use another image.")
            check_layer(lyr, "reference", 1, cell)
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

    # ------------------------------------------------------------------ running
    def _new_run(self, job: dict) -> None:
        self.progress_part.reset(job["options"]["epochs"])
        self.pair_box.fill([])

    def _start(self, resume: bool):
        job = self.current.job
        self.current.t_start = time.perf_counter()
        self.epoch_bar.setVisible(True)
        return self.runner.start(
            train_job, job["hr"], job["pairs"], out_dir=str(self.current.run_dir), references=job["references"],
            init=job["init"], resume=resume, device=job["device"], options=job["options"], preview=True,
            on_yielded=self._on_record, on_returned=self._on_done, on_stopped=self._on_stopped,
            message="loading the model…")

    def _follow_state(self, state) -> None:
        super()._follow_state(state)
        running = state is State.RUNNING
        run = self.current
        self.resume_btn.setEnabled(not running and state is State.STOPPED and run.has_checkpoint() and
                                   run.job is not None)
        self.save_btn.setEnabled(not running and run.model_file() is not None)
        if not running:
            self.epoch_bar.setVisible(bool(run.history) or self.epoch_bar.value() > 0)

    # ------------------------------------------------------------------ records (GUI thread)
    def _on_record(self, rec) -> None:
        if not isinstance(rec, dict):
            return
        self.progress_part.show(rec, self.current)
        if rec.get("kind") == "setup" and rec.get("alignment"):
            names = self.current.job["pair_names"]
            self.current.alignment = [{**a, "layers": names[i] if i < len(names) else ("?", "?")}
                                      for i, a in enumerate(rec["alignment"])]
            self.pair_box.fill(self.current.alignment)
        if rec.get("kind") == "epoch" and rec.get("preview") is not None:
            self.previews.show(rec["preview"], self.current.job, self.current.progress.get("epoch"))

    def validation_text(self) -> str:
        """The validation table as tab-separated text (for tests and copying)."""
        return self.progress_part.validation_text()

    def preview_layers(self) -> dict:
        return self.previews.layers()

    def _on_done(self, res) -> None:
        self._finish(res, stopped=False)

    def _on_stopped(self, res) -> None:
        self._finish(res, stopped=True)

    def _finish(self, res, stopped: bool) -> None:
        self.current.result = res
        self.status.setStyleSheet("")
        self.status.setText(self.current.summary(res, stopped))
        self._show_run_folder()
        self._follow_state(self.runner.state)

    def _show_run_folder(self) -> None:
        if self.current.run_dir is None:
            return
        temp = self.current.is_temporary()
        self.saved_label.setText(f"Run folder{' (temporary)' if temp else ''}: {self.current.run_dir} "
                                 "(checkpoint.pt, best/last.safetensors, log.jsonl)")

    # ------------------------------------------------------------------ saving
    def model_file(self) -> Path | None:
        """The model the last run produced: best.safetensors, else last.safetensors (None before a run)."""
        return self.current.model_file()

    def save_model(self, path=None):
        """Copy the run's model (best, else last) to ``path`` (asked with a file dialog when None)."""
        src = self.model_file()
        if src is None:
            self.runner.fail(InputError("nothing to save yet: train first."))
            return None
        if path is None:
            start = self.out_folder.text().strip() or str(Path.home())
            first = self.current.job["first"] if self.current.job else "model"
            default = str(Path(start).expanduser() / f"{first}_sr.safetensors")
            path, _ = QFileDialog.getSaveFileName(self, "Save the trained model", default,
                                                  "Model files (*.safetensors)")
            if not path:
                return None
        try:
            dst = copy_model(src, path, self.current.inputs(self.model_path.text()), self.current.run_dir)
        except InputError as exc:
            self.runner.fail(exc)
            return None
        self.current.saved_path = dst
        which = "best" if src.name.startswith("best") else "last"
        self.saved_label.setText(f"Saved the {which} model to {dst}")
        self.status.setStyleSheet("")
        return dst

    # ------------------------------------------------------------------ teardown
    def _closed(self, ended: bool) -> None:
        if ended:  # the temporary run folder goes once its job has ended
            self.current.drop_temporary()
