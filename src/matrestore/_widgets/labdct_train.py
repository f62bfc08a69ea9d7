"""LabDCT train dock widget ("LabDCT: train"): a spot-cleaning network from forward-simulated spots on the
backgrounds of a real projection stack.

Thin over the engine (the same calls as ``matrestore labdct background`` + ``matrestore labdct train``):
:func:`labdct.background.extract_background_iter` (appendix A of the paper: spot mask, filling, rolling
median, normalisation) on the chosen stack layer, then :func:`labdct.train` with a
:class:`labdct.TrainConfig` made from the form (network preset, steps, batch, learning rate, simulated
scenes and frames, detector window, seed). While it runs: the step bar with the time left, the live loss
plot, the validation table (loss, spot F1, best threshold) and three preview layers (a simulated input
frame, its ground truth and the current network's output), updated in place. **Cancel** stops after the
current step and keeps the checkpoint; **Resume** continues it; **Save model…** copies the best model and
(optionally) makes it the model of the "LabDCT: clean spots" widget through the remembered settings.
The stack layer is only read.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
from qtpy.QtWidgets import QCheckBox, QFileDialog, QFormLayout, QGroupBox, QPushButton, QSpinBox, QVBoxLayout

from .._layerdata import made_by
from .._validate import InputError
from ..progress import Kind, format_duration
from ._layers import LayerCombo, LayerDock, same_layer, spatial_units
from ._model_choice import ModelDeviceMixin
from ._params import ParamForm
from ._settings import set_remembered
from ._train_parts import PREVIEW_KIND, PreviewLayers, ProgressPart, TrainControls, TrainRun, VScroll, copy_model
from ._worker import State, relay

__all__ = ["LabdctTrainWidget", "train_job", "PREVIEW_LAYERS", "CLEAN_GROUP"]

PREVIEW_LAYERS = {"input": "labdct_preview_input", "target": "labdct_preview_truth", "output": "labdct_preview_output"}
PREVIEW_WHAT = {"input": "a simulated validation frame (spots on a real background, Poisson noise)",
                "target": "its ground truth (LoG segmentation of the noise-free spots)",
                "output": "the current network's output"}
CLEAN_GROUP = "labdct_clean"  # the settings group of the Clean widget ("use the model in Clean")
FORM_FIELDS = ["preset", "steps", "batch", "lr", "val_every", "scenes", "scene_frames", "grain_min_um", "grain_max_um",
               "val_scenes", "scene_size", "patch", "seed"]


def _frames(data):
    if isinstance(data, np.ndarray):
        return data
    return [data[k] for k in range(int(np.shape(data)[0]))]


# ---------------------------------------------------------------------------------------- engine calls
def train_job(background=None, *, out_dir, options=None, window=60, i_bg=None, resume=False, device=None,
              name="stack", cancel=None):
    """The engine calls behind the Train button (a generator; no Qt, no layers).

    ``background``: a real stack (N, H, W) whose normalised background ``I_BG`` is extracted first (or
    ``i_bg``, one extracted before: Resume); ``options``: :class:`labdct.TrainConfig` fields. Yields
    progress records with messages (phase, step, loss, time left). Returns ``{"i_bg", "best", "out_dir",
    "device", "elapsed_s", "stopped"}`` (also after a cancel, when the checkpoint is kept)."""
    from .. import device as _device
    from ..labdct.background import extract_background_iter
    from ..labdct.stack import as_stack
    from ..labdct.train import TrainConfig, train

    cfg = TrainConfig(**dict(options or {}))
    if cfg.scene_size is not None and cfg.scene_size < 32:
        raise InputError(f"detector window {cfg.scene_size} px is too small (at least 32 px, or the full detector).")
    t0 = time.perf_counter()
    if i_bg is None:
        if background is None:
            raise InputError("choose a real projection stack for the backgrounds.")
        shape = tuple(int(n) for n in np.shape(background))
        if len(shape) != 3:
            raise InputError(f"'{name}' has shape {shape}: the backgrounds come from a stack of real projections "
                             "(frames × rows × cols): the rolling median needs the frames around each one.")
        if min(shape[-2:]) < 32:
            raise InputError(f"'{name}' has frames of {shape[1]}×{shape[2]} px: too small for training (at least 32 px).")
        st = as_stack(_frames(background), name=f"'{name}'", min_frames=3)
        yield {"message": "extracting the background (spot mask, filling, rolling median)…", "phase": "background"}
        i_bg = yield from relay(extract_background_iter(st, window=int(window), cancel=cancel),
                                lambda r: {**r, "phase": "background"})
        if i_bg is None:
            return {"i_bg": None, "best": None, "out_dir": str(out_dir), "device": "", "elapsed_s": 0.0, "stopped": True}
    dev = _device.pick_device(device)
    t_steps, n_steps = None, 0

    def with_message(rec: dict) -> dict:
        nonlocal t_steps, n_steps
        kind = rec.get("kind")
        msg = rec.get("message", "")
        if kind == Kind.SETUP:
            t_steps, n_steps = time.perf_counter(), 0
        elif kind == Kind.STEP:
            n_steps += 1
            per = (time.perf_counter() - (t_steps or t0)) / max(n_steps, 1)
            msg = (f"step {rec['step']}/{rec['total']} · loss {rec['losses']['loss']:.4g} · {per:.2g} s/step · "
                   f"about {format_duration(per * (rec['total'] - rec['step']))} left")
        elif kind == Kind.EPOCH:
            v = rec["val"]
            msg = f"validated at step {rec['step']}: loss {v['loss']:.4f}, spot F1 {v['f1']:.3f}"
        return {**rec, "message": msg, "phase": rec.get("phase", "training")}

    try:
        best = yield from relay(train(i_bg, out_dir, config=cfg, resume=resume, cancel=cancel, device=dev,
                                      steps=cfg.steps if resume else None), with_message)
    finally:
        _device.free_memory(dev)
    return {"i_bg": i_bg, "best": None if best is None else str(best), "out_dir": str(out_dir),
            "device": _device.describe(dev), "elapsed_s": time.perf_counter() - t0, "stopped": best is None}


def _val_row(h: dict) -> list:
    v = h["val"]
    return [str(v.get("step", h["epoch"])), f"{v['loss']:.4f}", f"{v['f1']:.3f}", f"{v['best_threshold']:.3g}"]


# ---------------------------------------------------------------------------------------- widget
class LabdctTrainWidget(TrainControls, ModelDeviceMixin, LayerDock):
    """Train a LabDCT spot-cleaning network on simulated spots over a real stack's backgrounds."""

    settings_group = "labdct_train"

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self.current = TrainRun()
        self.previews = PreviewLayers(napari_viewer)
        self.i_bg = None
        self._build()
        self._sync_device()
        self._remember({"device": self.device_combo, "output_folder": self.out_folder, "bg_window": self.window_spin,
                        "use_in_clean": self.use_in_clean})
        self._start_runner(self.progress_bar, self.progress_label, self.status)
        self._watch_layers()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        lay = VScroll.body_of(self)  # the widget is tall: it scrolls in a small window

        dbox = QGroupBox("Backgrounds")
        df = QFormLayout(dbox)
        self.stack_combo = LayerCombo("A real projection stack of your detector (frames × rows × cols): its spots are "
                                      "masked and filled and its rolling median normalised into the backgrounds "
                                      "the simulated spots are put on (appendix A of the paper). Use frames the "
                                      "network will not be evaluated on.")
        df.addRow("real stack", self.stack_combo)
        self.window_spin = QSpinBox()
        self.window_spin.setRange(3, 1000)
        self.window_spin.setValue(60)
        self.window_spin.setSuffix(" frames")
        self.window_spin.setToolTip("Rolling-median window of the background extraction (the paper: 60; all frames "
                                    "when the stack has fewer).")
        df.addRow("median window", self.window_spin)
        lay.addWidget(dbox)

        from ..labdct.train import TrainConfig

        sbox = QGroupBox("Simulation and training")
        sl = QVBoxLayout(sbox)
        self.options = ParamForm(TrainConfig, names=FORM_FIELDS, settings=self.settings)
        self.options.add_row("device", self._device_row("trains"))
        sl.addWidget(self.options)
        self.options.add_row("run folder", self._output_folder_row())
        sl.addLayout(self._defaults_row("Set the training settings back to their defaults (remembered between sessions)."))
        lay.addWidget(sbox)

        self.resume_btn = QPushButton("Resume")
        self.resume_btn.setToolTip("Continue the stopped run from its checkpoint (same backgrounds and settings).")
        self.save_btn = QPushButton("Save model…")
        self.save_btn.setToolTip("Copy the best model of the run (else its last) to a .safetensors file.")
        lay.addLayout(self._run_buttons(("Train", "Extract the backgrounds, simulate the training scenes and train, "
                                                  "in the background (the viewer stays usable)."),
                                        "Stop after the current step; the checkpoint and the last model are kept "
                                        "(Resume continues).", extra=(self.resume_btn, self.save_btn)))
        self.use_in_clean = QCheckBox("use the saved model in 'LabDCT: clean spots'")
        self.use_in_clean.setChecked(True)
        self.use_in_clean.setToolTip("After Save model…, choose the saved file as the model of the Clean widget "
                                     "(open ones and the next one opened).")
        lay.addWidget(self.use_in_clean)
        part = ProgressPart(
            loss_keys=("loss", "bce", "dice"),
            loss_tip="Training loss against the step: total (BCE + Dice for the shipped loss) and its parts.",
            val_headers=["step", "val loss", "spot F1", "threshold"],
            val_tip="Validation on held-out simulated scenes: loss, spot-level F1 at the best threshold (that "
                    "threshold is calibrated onto 5/255 in the saved model). The best row is bold.",
            val_row=_val_row)
        self._add_training_progress(lay, part, ("%v / %m", "Steps (or background frames) done."),
                                    "Step, loss and time left.")
        self.epoch_bar.setFormat("validation %v / %m")
        self.resume_btn.clicked.connect(self.resume)
        self.save_btn.clicked.connect(lambda *_: self.save_model())

    def _browse_model(self) -> None:  # no model file row here (ModelDeviceMixin's device part only)
        pass

    def _sync_model(self, *_) -> None:
        pass

    # ------------------------------------------------------------------ layers
    def _refresh_layers(self, event=None) -> None:
        ok = [lyr for lyr in self._image_layers() if lyr.ndim == 3 and not getattr(lyr, "rgb", False)
              and not getattr(lyr, "multiscale", False) and made_by(lyr.metadata) != PREVIEW_KIND]
        active = self.viewer.layers.selection.active
        default = next((lyr for lyr in ok if same_layer(lyr, active)), None) or (ok[0] if ok else None)
        self.stack_combo.fill(ok, default)

    # the run's facts, for scripts and tests
    run_dir = property(lambda self: self.current.run_dir)
    history = property(lambda self: self.current.history)

    def train_options(self) -> dict:
        return dict(self.options.values())

    # ------------------------------------------------------------------ running
    def _collect(self) -> dict:
        lyr = self.stack_combo.layer()
        if lyr is None:
            raise InputError("open a real projection stack (frames × rows × cols) for the backgrounds; 2-D, RGB and "
                             "multiscale layers are not offered.")
        opts = self.train_options()
        src = (lyr.name, tuple(float(v) for v in lyr.scale[-2:]), tuple(float(v) for v in lyr.translate[-2:]),
               tuple(int(n) for n in lyr.data.shape[-2:]), spatial_units(lyr))
        return {"layer": lyr, "name": lyr.name, "options": opts, "window": self.window_spin.value(),
                "device": self.device(), "source": src}

    def _new_run(self, job: dict) -> None:
        self.i_bg = None
        o = job["options"]
        self.progress_part.reset(math.ceil(o["steps"] / o["val_every"]))

    def _can_resume(self) -> bool:
        return self.current.has_checkpoint() and self.i_bg is not None

    def _start(self, resume: bool):
        job = self.current.job
        self.current.t_start = time.perf_counter()
        return self.runner.start(
            train_job, None if resume else job["layer"].data, out_dir=str(self.current.run_dir), options=job["options"],
            window=job["window"], i_bg=self.i_bg if resume else None, resume=resume, device=job["device"],
            name=job["name"], on_yielded=self._on_record, on_returned=self._finish, on_stopped=self._finish,
            message="starting…")

    def _follow_state(self, state) -> None:
        super()._follow_state(state)
        running = state is State.RUNNING
        run = self.current
        self.resume_btn.setEnabled(not running and state is State.STOPPED and run.has_checkpoint())
        self.save_btn.setEnabled(not running and run.model_file() is not None)

    # ------------------------------------------------------------------ records (GUI thread)
    def _on_record(self, rec) -> None:
        if not isinstance(rec, dict) or rec.get("phase") == "background":
            return
        self.progress_part.show(rec, self.current)
        if rec.get("kind") == Kind.PREVIEW and rec.get("images"):
            imgs = rec["images"]
            self.previews.show_row({k: imgs[k] for k in PREVIEW_LAYERS if k in imgs}, PREVIEW_LAYERS,
                                   self._preview_source(imgs), {"source": self.current.job["name"],
                                                                "step": self.current.progress.get("step")},
                                   what=PREVIEW_WHAT, clim_from=None)

    def _preview_source(self, imgs) -> tuple:
        name, scale, translate, _, units = self.current.job["source"]
        return (name, scale, translate, np.shape(imgs["input"]), units)

    def preview_layers(self) -> dict:
        return self.previews.layers(PREVIEW_LAYERS)

    def _finish(self, res) -> None:
        if res is not None and res.get("i_bg") is not None:
            self.i_bg = res["i_bg"]
        run = self.current
        run.result = res
        best = run.best()
        stopped = res is None or res.get("stopped")
        text = (f"{'Stopped' if stopped else 'Done'}: step {run.progress.get('step', 0)}/{run.progress.get('total', 0)} "
                f"in {format_duration(run.elapsed())}" + (f" on {res['device']}" if res and res.get("device") else "") + ".")
        if best is not None:
            text += f" Best validation spot F1 {best['val']['f1']:.3f} (step {best['val'].get('step')})."
        if run.model_file() is not None:
            text += " Save the model with 'Save model…'."
        if stopped and run.has_checkpoint():
            text += " Resume continues from the checkpoint."
        self.status.setStyleSheet("")
        self.status.setText(text)
        if run.run_dir is not None:
            self.saved_label.setText(f"Run folder{' (temporary)' if run.is_temporary() else ''}: {run.run_dir}")
        self._follow_state(self.runner.state)

    # ------------------------------------------------------------------ saving
    def model_file(self) -> Path | None:
        return self.current.model_file()

    def save_model(self, path=None):
        """Copy the run's model (best, else last) to ``path`` (asked when None); with "use in Clean", make
        it the Clean widget's model file (remembered settings; open Clean widgets take it at once)."""
        from ..labdct.modelio import DEFAULT_MODEL

        src = self.model_file()
        if src is None:
            self.runner.fail(InputError("nothing to save yet: train first."))
            return None
        if path is None:
            start = self.out_folder.text().strip() or str(Path.home())
            path, _ = QFileDialog.getSaveFileName(self, "Save the trained model",
                                                  str(Path(start).expanduser() / "labdct_model.safetensors"),
                                                  "Model files (*.safetensors)")
            if not path:
                return None
        try:
            dst = copy_model(src, path, [DEFAULT_MODEL], self.current.run_dir)
        except InputError as exc:
            self.runner.fail(exc)
            return None
        self.current.saved_path = dst
        text = f"Saved the {'best' if src.name.startswith('best') else 'last'} model to {dst}"
        if self.use_in_clean.isChecked():
            n = set_remembered(CLEAN_GROUP, {"method_network": True, "model_file": True, "model_path": str(dst)})
            text += (f"; 'LabDCT: clean spots' uses it ({n} open widget(s) updated)." if n
                     else "; 'LabDCT: clean spots' will use it when opened.")
        self.saved_label.setText(text)
        self.status.setStyleSheet("")
        return dst

    def _closed(self, ended: bool) -> None:
        if ended:
            self.current.drop_temporary()
