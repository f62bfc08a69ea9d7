"""Denoise train dock widget ("Denoise: synthetic data and training"): see what the denoiser learns from,
then teach it your own micrographs' look.

**Synthetic data.** Check real optical micrograph layers (their Fourier magnitude spectrum and grey-level
histogram are the texture source, paper Fig. 1), set the phase-field recipe
(:class:`~matrestore.denoise.synth.SynthOptions`: size, grains, steps, seed, etched boundaries, magnitude
mix; the model constants L, κ, dt and the number of order parameters under "phase-field constants") and
press **Make sample pair**: :func:`~matrestore.denoise.synth.sample_pairs_iter` runs in a worker and the
layers ``synth_clean`` (ground truth), ``synth_labels`` (grain labels, a Labels layer over it),
``synth_noisy`` (the network's input; one per checked micrograph: ``synth_noisy_2``, …) and
``synth_artefacts`` (where scratches, pits and stains were drawn, a Labels layer over the noisy image;
the grain labels are drawn as outlines)
appear to the right of the user's layers, updated in place on the next press.

**Training.** :func:`matrestore.denoise.train` (the engine behind ``matrestore denoise train``) on pairs
synthesised on the fly from the same checked layers, from a new network of a preset or fine-tuning the
bundled or a file model, with the :class:`~matrestore.denoise.train.TrainConfig` options; a run folder
per run (checkpoint, best/last model, log). While it runs: epoch and step progress, a live loss plot,
the validation table (boundary F1, PSNR after an affine fit, MSE) and three preview layers
(``denoise_preview_noisy`` / ``_prediction`` / ``_clean`` of a validation pair) after every epoch.
**Cancel** keeps a checkpoint, **Resume** continues it, **Save model…** copies the best model,
**Use in Denoise: apply** hands it to that widget (through its remembered settings: also an open one).
Input layers are only read.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QPushButton, QToolButton,
                            QVBoxLayout, QWidget)

from .._layerdata import OUTPUT_KEY, made_by
from .._validate import InputError
from ..denoise.synth import SynthOptions
from ..denoise.train import TrainConfig
from ..params import describe
from ..progress import format_duration
from ._layers import LayerCheckList, LayerDock, combo_box, put_image, put_labels, spatial_units
from ._model_choice import ModelDeviceMixin, model_file_state
from ._params import ParamForm
from ._settings import set_remembered
from ._train_parts import PREVIEW_KIND, PreviewLayers, ProgressPart, TrainControls, TrainRun, VScroll, copy_model
from ._worker import State, relay

__all__ = ["DenoiseTrainWidget", "synth_job", "train_job", "SYNTH_KIND", "PREVIEW_LAYER_NAMES", "BASES"]

SYNTH_KIND = "denoise synthetic pair"  # made_by of the sample-pair layers
PREVIEW_LAYER_NAMES = {"noisy": "denoise_preview_noisy", "prediction": "denoise_preview_prediction",
                       "clean": "denoise_preview_clean"}
PREVIEW_WHAT = {"noisy": "the (normalised) noisy input of a validation pair",
                "prediction": "the current network's output for it", "clean": "its ground truth"}
BASES = {"fine-tune the bundled default model": "default", "fine-tune a model file": "file",
         "train a new model": "new"}
APPLY_GROUP = "denoise"  # the settings group of "Denoise: apply" (its model_default / model_file / model_path)
SYNTH_BASIC = [n for n, (p, _) in describe(SynthOptions).items() if not p.advanced]
SYNTH_ADVANCED = [n for n, (p, _) in describe(SynthOptions).items() if p.advanced]
TRAIN_MAIN = ["preset", "epochs", "steps_per_epoch", "batch_size", "patch", "structures", "val_structures"]
TRAIN_ADVANCED = ["structure_size", "lr", "schedule", "boundary_weight", "procedural", "seed", "checkpoint_every"]
MASK_CODES = {"scratch": 1, "pit": 2, "stain": 3}


def real_problem(layer) -> str | None:
    """Why an image layer cannot be a real micrograph (texture source); None when it can."""
    if getattr(layer, "multiscale", False):
        return "multiscale: not supported"
    if layer.ndim != 2:
        return f"{layer.ndim}-D: only 2-D images"
    kind = made_by(layer.metadata)
    if kind == SYNTH_KIND:
        return "a synthetic pair layer"
    if kind == PREVIEW_KIND:
        return "a training preview"
    if kind is not None:
        return "a matrestore result"
    return None


# ---------------------------------------------------------------------------------------- engine calls
def synth_job(reals, *, options: SynthOptions | None = None, cancel=None):
    """A sample pair per real micrograph (``[(array, name), ...]``) from one phase-field structure, as
    :func:`~matrestore.denoise.synth.sample_pairs_iter` makes them (a generator; no Qt). Returns its result
    with ``elapsed_s`` (``None`` when cancelled)."""
    from ..denoise.synth import sample_pairs_iter

    t0 = time.perf_counter()
    opts = (options or SynthOptions()).check()

    def with_message(rec: dict) -> dict:
        if str(rec.get("kind")) == "step" and rec.get("phase") != "pairs":
            return {**rec, "phase": "phase field", "message": f"phase-field step {rec['step']}/{rec['total']} · "
                                                                 f"{format_duration(rec.get('elapsed_s') or 0.0)}"}
        return rec

    res = yield from relay(sample_pairs_iter(list(reals), opts, cancel=cancel), with_message)
    if res is None:
        return None
    return dict(res, elapsed_s=time.perf_counter() - t0, options=opts)


def train_job(reals, *, out_dir, init=None, resume=False, device=None, options=None, cancel=None):
    """:func:`matrestore.denoise.train` (``reals``: ``[(array, name), ...]``; ``init``: ``"default"``, a
    model file or None; ``options``: TrainConfig fields) with a ``message`` on every record for the
    progress line (a generator; no Qt). Returns the engine's result with ``device`` and ``elapsed_s``."""
    from .. import device as _device
    from ..denoise.train import train

    opts = dict(options or {})
    dev = _device.pick_device(device)
    gen = train(list(reals), out_dir, resume=resume, init=init, cancel=cancel, device=dev, preview=True, **opts)
    t0 = time.perf_counter()
    t_steps, n_steps = None, 0

    def with_message(rec: dict) -> dict:
        nonlocal t_steps, n_steps
        kind, msg = str(rec.get("kind")), rec.get("message", "")
        if kind == "setup" and rec.get("total") and rec.get("epoch") is not None:
            t_steps, n_steps = time.perf_counter(), 0
        elif kind == "step" and "losses" in rec:
            n_steps += 1
            per = (time.perf_counter() - (t_steps or t0)) / max(n_steps, 1)
            msg = (f"epoch {rec['epoch'] + 1} · step {rec['step']}/{rec['total']} · loss {rec['losses']['loss']:.4g} · "
                   f"{per:.2g} s/step · about {format_duration(per * (rec['total'] - rec['step']))} left")
        elif kind == "epoch":
            v = rec.get("val") or {}
            msg = f"epoch {rec['epoch']} validated: boundary F1 {v.get('f1', float('nan')):.3f}"
        elif kind == "stopped":
            msg = "stopped: checkpoint saved."
        return {**rec, "message": msg}

    try:
        result = yield from relay(gen, with_message)
    finally:
        _device.free_memory(dev)
    if result is not None:
        result = dict(result, device=_device.describe(dev), elapsed_s=time.perf_counter() - t0)
    return result


def _val_row(h: dict) -> tuple:
    v = h["val"]
    return (str(h["epoch"]), f"{v['f1']:.3f}", f"{v['psnr']:.2f}", f"{v['mse']:.5f}")


# ---------------------------------------------------------------------------------------- widget
class DenoiseTrainWidget(TrainControls, ModelDeviceMixin, LayerDock):
    """Make synthetic training pairs from real micrograph layers and train a denoiser on them."""

    settings_group = "denoise_train"

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self.current = TrainRun()
        self.previews = PreviewLayers(napari_viewer)
        self.last_pair: dict | None = None
        self._build()
        self._start_runner(self.progress_bar, self.progress_label, self.status)
        self._sync_device()
        self._remember({"base": self.base_combo, "model_file": self.model_path, "device": self.device_combo,
                        "output_folder": self.out_folder})
        self._watch_layers()
        self._sync_model()
        self._sync_device()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        lay = VScroll.body_of(self)  # the widget is tall: it scrolls in a small window

        rbox = QGroupBox("Real micrographs (texture sources)")
        rl = QVBoxLayout(rbox)
        self.real_list = LayerCheckList("a texture source", "Check the real optical micrographs (2-D grey or RGB "
                                        "image layers) whose magnitude spectrum and grey-level histogram make the "
                                        "synthetic noisy images (paper Fig. 1d–e): for the sample pair and for "
                                        "training. Each must be at least as large as the pair / training patch.",
                                        max_height=80)
        rl.addWidget(self.real_list)
        lay.addWidget(rbox)

        sbox = QGroupBox("Synthetic data")
        sl = QVBoxLayout(sbox)
        self.synth_form = ParamForm(SynthOptions, names=SYNTH_BASIC, settings=self.settings)
        sl.addWidget(self.synth_form)
        self.constants_toggle = QToolButton()
        self.constants_toggle.setText("phase-field constants")
        self.constants_toggle.setCheckable(True)
        self.constants_toggle.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.constants_toggle.setArrowType(Qt.RightArrow)
        self.constants_toggle.setStyleSheet("QToolButton { border: none; }")
        self.constants_toggle.setToolTip("Show or hide the Allen–Cahn model's constants (L, κ, dt, order parameters).")
        sl.addWidget(self.constants_toggle)
        self.synth_advanced = ParamForm(SynthOptions, names=SYNTH_ADVANCED, settings=self.settings)
        self.synth_advanced.setVisible(False)
        sl.addWidget(self.synth_advanced)
        self.pair_btn = QPushButton("Make sample pair")
        self.pair_btn.setToolTip("Make one phase-field structure and its noisy/clean pair with every checked real "
                                 "micrograph, in the background; shown as the layers synth_clean, synth_labels, "
                                 "synth_noisy and synth_artefacts (updated in place next time).")
        sl.addWidget(self.pair_btn)
        lay.addWidget(sbox)

        tbox = QGroupBox("Training")
        tf = QFormLayout(tbox)
        self.base_combo = combo_box(BASES, "Fine-tune the bundled default model (fastest, least data), a model file, "
                                           "or train a new network of the chosen preset.")
        tf.addRow("base model", self.base_combo)
        row = self._model_file_row("The model file to fine-tune.", "Choose the model file to fine-tune.")
        self.model_row = QWidget()
        row.setContentsMargins(0, 0, 0, 0)
        self.model_row.setLayout(row)
        tf.addRow("model file", self.model_row)
        tf.addRow(self._model_note_label("Whether the chosen base model is available."))
        self.train_form = ParamForm(TrainConfig, names=TRAIN_MAIN, settings=self.settings)
        tf.addRow(self.train_form)
        lay.addWidget(tbox)

        self.train_advanced = ParamForm(TrainConfig, names=TRAIN_ADVANCED, settings=self.settings)
        self._advanced_part(lay, self.train_advanced,
                            "Show or hide the learning-rate, structure, seed, device and output folder options.",
                            "Set every setting of this widget back to its default (the layer choices stay).",
                            extra=", the cached structures")

        self.resume_btn = QPushButton("Resume")
        self.resume_btn.setToolTip("Continue the stopped run from its checkpoint (same data; the epochs may be raised).")
        self.save_btn = QPushButton("Save model…")
        self.save_btn.setToolTip("Copy the best model of the last run (else its last) to a .safetensors file.")
        self.use_btn = QPushButton("Use in Denoise: apply")
        self.use_btn.setToolTip("Make the saved model (else the run's best) the model file of 'Denoise: apply' "
                                "(an open one at once, else the next one opened).")
        lay.addLayout(self._run_buttons(("Train", "Start training in the background (the viewer stays usable)."),
                                        "Stop after the current step (or the current structure); a checkpoint and "
                                        "the last model are kept (Resume continues).",
                                        extra=(self.resume_btn,)))
        brow = QHBoxLayout()
        brow.addWidget(self.save_btn)
        brow.addWidget(self.use_btn)
        lay.addLayout(brow)
        part = ProgressPart(
            loss_keys=("loss", "mse"), loss_tip="Training loss against the step: loss (MSE + λ‖w‖², eq. 11) and "
            "the MSE to the ground truth (intensities in [0, 1]).",
            val_headers=["epoch", "boundary F1", "PSNR (affine, dB)", "MSE"],
            val_tip="Validation after every epoch, on fixed pairs made from held-out structures: boundary F1 "
                    "(2-px tolerance) of a segmentation of the output, PSNR after an affine fit to the ground truth, "
                    "MSE. The best epoch (kept as best.safetensors) is bold.", val_row=_val_row)
        self._add_training_progress(
            lay, part, ("%v / %m", "Work done of all work (phase-field steps, structures, training steps)."),
            "Epoch, step, current loss and the estimated time left.")
        self.epoch_bar.setVisible(False)

        self.constants_toggle.toggled.connect(self._toggle_constants)
        self.pair_btn.clicked.connect(lambda *_: self.make_pair())
        self.resume_btn.clicked.connect(lambda *_: self.resume())
        self.save_btn.clicked.connect(lambda *_: self.save_model())
        self.use_btn.clicked.connect(lambda *_: self.use_in_apply())
        self.base_combo.currentIndexChanged.connect(self._sync_model)

    def _toggle_constants(self, on: bool) -> None:
        self.constants_toggle.setArrowType(Qt.DownArrow if on else Qt.RightArrow)
        self.synth_advanced.setVisible(on)

    def restore_defaults(self) -> None:
        super().restore_defaults()
        self._sync_model()
        self._sync_device()

    # ------------------------------------------------------------------ model choice
    def base(self) -> str:
        return BASES[self.base_combo.currentText()]

    def set_base(self, base: str, path=None) -> None:
        """``"new"`` (a network of the preset), ``"default"`` or ``"file"`` (with ``path``)."""
        self.base_combo.setCurrentText(next(k for k, v in BASES.items() if v == base))
        if path is not None:
            self.model_path.setText(str(path))
        self._sync_model()

    def _sync_model(self, *_) -> None:
        from ..denoise.modelio import DEFAULT_MODEL

        base = self.base()
        self.model_row.setEnabled(base == "file")
        self.train_form.control("preset").setEnabled(base == "new")
        if base == "default":
            ok = DEFAULT_MODEL.is_file()
            text = "fine-tunes the bundled default model (its architecture; the preset is not used)." if ok else (
                "No default model is installed: choose a model file or train a new model.")
        elif base == "file":
            _, problem = model_file_state(self.model_path.text())
            ok = problem is None
            text = "fine-tunes this file (it is never changed)." if ok else problem
        else:
            ok, text = True, "a new, untrained network of the preset below."
        self._show_model_note(ok, text)

    def _browse_model(self) -> None:
        path = self._ask_model_file("Model to fine-tune")
        if path:
            self.set_base("file", path)

    def _init(self):
        base = self.base()
        if base == "new":
            return None
        if base == "default":
            from ..denoise.modelio import DEFAULT_MODEL

            if not DEFAULT_MODEL.is_file():
                raise InputError("no default denoising model is installed: choose a model file or train a new model.")
            return "default"
        path, problem = model_file_state(self.model_path.text())
        if problem:
            raise InputError(problem)
        return str(path)

    # ------------------------------------------------------------------ layers
    def _refresh_layers(self, event=None) -> None:
        images = self._image_layers()
        self.real_list.offer([(lyr, real_problem(lyr), lyr.name) for lyr in images],
                             checked_by_default=lambda lyr: real_problem(lyr) is None)

    def real_layers(self) -> list:
        return self.real_list.checked_layers()

    def set_real_layers(self, names) -> None:
        """Check exactly the real micrograph layers named in ``names`` (for scripts and tests)."""
        self.real_list.set_checked(names)

    def _reals(self) -> tuple[list, list]:
        """``([(array, name), ...], [layer geometry, ...])`` of the checked real micrographs, or InputError."""
        layers = self.real_layers()
        if not layers:
            raise InputError("check at least one real optical micrograph layer (the texture source).")
        reals, geom = [], []
        for lyr in layers:
            reals.append((np.asarray(lyr.data), lyr.name))
            geom.append((lyr.name, tuple(float(v) for v in lyr.scale[-2:]), tuple(float(v) for v in lyr.translate[-2:]),
                         tuple(int(n) for n in np.asarray(lyr.data).shape[:2]), spatial_units(lyr)))
        return reals, geom

    # ------------------------------------------------------------------ synthetic pair
    def synth_options(self) -> SynthOptions:
        return SynthOptions(**self.synth_form.values(), **self.synth_advanced.values()).check()

    def make_pair(self):
        """Make a sample pair in a worker thread (layers added in :meth:`_show_pair`)."""
        if self.runner.is_running:
            return None
        try:
            reals, geom = self._reals()
            opts = self.synth_options()
        except InputError as exc:
            self.runner.fail(exc)
            return None
        self._pair_geom = geom
        return self.runner.start(synth_job, reals, options=opts, on_returned=self._show_pair,
                                 message="making the phase-field structure…")

    def _right_of_user_layers(self) -> float:
        xs = [float(lyr.extent.world[1][-1]) + float(lyr.scale[-1]) for lyr in self.viewer.layers
              if made_by(lyr.metadata) != SYNTH_KIND]
        return max(xs, default=0.0)

    def pair_extent(self):
        """``((y0, x0), (y1, x1))`` world corners of the sample-pair layers (None before a pair)."""
        ext = [lyr.extent.world for lyr in self.viewer.layers if made_by(lyr.metadata) == SYNTH_KIND]
        if not ext:
            return None
        return (tuple(min(float(e[0][i]) for e in ext) for i in (-2, -1)),
                tuple(max(float(e[1][i]) for e in ext) for i in (-2, -1)))

    def _show_pair(self, res) -> None:
        if res is None:
            return
        name0, (sy, sx), (ty, _), _, units = self._pair_geom[0]
        pairs, pf, opts = res["pairs"], res["structure"], res["options"]
        n = pairs[0].clean.shape[1]
        gap = max(n // 8, 4)
        x0 = self._right_of_user_layers() + gap * sx
        col = lambda k: (ty, x0 + k * (n + gap) * sx)  # noqa: E731
        recipe = {"options": {k: getattr(opts, k) for k in describe(SynthOptions)}, "phase_field": pf.params,
                  "grains": pf.n_grains}
        base = {"made_by": SYNTH_KIND, **recipe}
        clean = put_image(self.viewer, "synth_clean", pairs[0].clean, (sy, sx), col(0),
                          {OUTPUT_KEY: {**base, "what": "ground truth: one grey level per grain"}}, units=units,
                          contrast_limits=(0.0, 1.0), colormap="gray")
        put_labels(self.viewer, "synth_labels", pairs[0].labels, (sy, sx), col(0),
                   {OUTPUT_KEY: {**base, "what": f"grain labels ({pf.n_grains} grains)"}}, units, contour=1, opacity=0.8)
        names = {"clean": clean.name, "labels": "synth_labels", "noisy": [], "artefacts": "synth_artefacts"}
        for j, (pair, real) in enumerate(zip(pairs, res["names"])):
            name = "synth_noisy" if j == 0 else f"synth_noisy_{j + 1}"
            lo, hi = float(np.percentile(pair.noisy, 0.5)), float(np.percentile(pair.noisy, 99.5))
            layer = put_image(self.viewer, name, pair.noisy, (sy, sx), col(1 + j),
                              {OUTPUT_KEY: {**base, "what": f"noisy input made with the spectrum and histogram of "
                                                            f"'{real}'", "real": real, "recipe": pair.recipe}},
                              units=units, contrast_limits=(lo, hi if hi > lo else lo + 1.0), colormap="gray")
            layer.contrast_limits = (lo, hi if hi > lo else lo + 1.0)
            names["noisy"].append(name)
        art = np.zeros(pairs[0].labels.shape, np.uint8)
        for key in ("stain", "pit", "scratch"):  # scratches drawn last: on top
            art[pairs[0].masks[key]] = MASK_CODES[key]
        put_labels(self.viewer, "synth_artefacts", art, (sy, sx), col(1),
                   {OUTPUT_KEY: {**base, "what": "artefact masks: 1 scratch, 2 etch pit, 3 stain", "codes": MASK_CODES}},
                   units, contour=0, opacity=0.3)
        self.last_pair = {"layers": names, "grains": pf.n_grains, "elapsed_s": res["elapsed_s"]}
        self.status.setStyleSheet("")
        self.status.setText(f"Sample pair: {pf.n_grains} grains, {n}×{n} px, {len(pairs)} noisy image(s) in "
                            f"{format_duration(res['elapsed_s'])}; artefacts: 1 scratch, 2 pit, 3 stain.")

    # ------------------------------------------------------------------ training
    run_dir = property(lambda self: self.current.run_dir)
    history = property(lambda self: self.current.history)
    progress = property(lambda self: self.current.progress)
    saved_path = property(lambda self: self.current.saved_path)

    def train_options(self) -> dict:
        opts = {**self.train_form.values(), **self.train_advanced.values()}
        if opts["val_structures"] >= opts["structures"]:
            raise InputError(f"validation structures ({opts['val_structures']}) must be fewer than structures "
                             f"({opts['structures']}).")
        if opts["patch"] > opts["structure_size"]:
            raise InputError(f"the patch ({opts['patch']} px) must not exceed the structure size "
                             f"({opts['structure_size']} px); see Advanced.")
        return opts

    def _collect(self) -> dict:
        reals, geom = self._reals()
        options = self.train_options()
        for (arr, name), g in zip(reals, geom):
            if min(g[3]) < options["patch"]:
                raise InputError(f"real micrograph '{name}' is {g[3][0]}×{g[3][1]} px: smaller than the training "
                                 f"patch ({options['patch']} px).")
        init = self._init()
        if init is not None:
            options.pop("preset")
        base = {"new": f"a new {options.get('preset')} network", "default": "the bundled default model",
                "file": f"the model file {init}"}[self.base()]
        return {"reals": reals, "geom": geom, "init": init, "base": base, "options": options, "device": self.device(),
                "first": reals[0][1]}

    def _new_run(self, job: dict) -> None:
        self.progress_part.reset(job["options"]["epochs"])

    def _before_resume(self) -> None:
        """The run's data and recipe, with the number of epochs set now."""
        self.current.job["options"]["epochs"] = self.train_form.value("epochs")
        self.progress_part.epoch_bar.setRange(0, int(self.current.job["options"]["epochs"]))

    def _start(self, resume: bool):
        job = self.current.job
        self.current.t_start = time.perf_counter()
        self.epoch_bar.setVisible(True)
        return self.runner.start(train_job, job["reals"], out_dir=str(self.current.run_dir), init=job["init"],
                                 resume=resume, device=job["device"], options=job["options"],
                                 on_yielded=self._on_record, on_returned=self._on_done, on_stopped=self._on_stopped,
                                 message="making the phase-field structures…")

    def _follow_state(self, state) -> None:
        super()._follow_state(state)
        running = state is State.RUNNING
        run = self.current
        self.pair_btn.setEnabled(not running)
        self.resume_btn.setEnabled(not running and state is State.STOPPED and run.job is not None
                                   and run.has_checkpoint())
        has_model = run.model_file() is not None
        self.save_btn.setEnabled(not running and has_model)
        self.use_btn.setEnabled(not running and (has_model or run.saved_path is not None))

    def _on_record(self, rec) -> None:
        if not isinstance(rec, dict) or self.current.job is None:
            return
        if str(rec.get("kind")) == "phase":  # structures: not training steps
            return
        if str(rec.get("kind")) == "setup" and rec.get("epoch") is None:
            return  # the first setup record counts structures, not steps
        self.progress_part.show({**rec, "kind": str(rec.get("kind"))}, self.current)
        if str(rec.get("kind")) == "epoch" and rec.get("preview") is not None:
            pv = rec["preview"]
            self.previews.show_row({k: pv[k] for k in ("noisy", "prediction", "clean")}, PREVIEW_LAYER_NAMES,
                                   self.current.job["geom"][0], {"source": "validation pair", "epoch": rec["epoch"]},
                                   PREVIEW_WHAT, clim_from=None)

    def preview_layers(self) -> dict:
        return self.previews.layers(PREVIEW_LAYER_NAMES)

    def validation_text(self) -> str:
        return self.progress_part.validation_text()

    def _on_done(self, res) -> None:
        self._finish(res, stopped=False)

    def _on_stopped(self, res) -> None:
        self._finish(res, stopped=True)

    def _finish(self, res, stopped: bool) -> None:
        run = self.current
        run.result = res
        best = run.best()
        p = run.progress
        text = (f"{'Stopped' if stopped else 'Done'}: step {p.get('step', 0)}/{p.get('total', 0)} in "
                f"{format_duration(run.elapsed())}{' on ' + res['device'] if res and res.get('device') else ''}; "
                f"base: {run.job['base']}.")
        if best is not None:
            text += f" Best: epoch {best['epoch']} (boundary F1 {best['val']['f1']:.3f})."
        if stopped:
            text += " Resume continues from the checkpoint."
        self.status.setStyleSheet("")
        self.status.setText(text)
        if run.run_dir is not None:
            self.saved_label.setText(f"Run folder{' (temporary)' if run.is_temporary() else ''}: {run.run_dir} "
                                     "(checkpoint.pt, best/last.safetensors, log.jsonl)")
        self._follow_state(self.runner.state)

    # ------------------------------------------------------------------ saving and handing over
    def model_file(self) -> Path | None:
        return self.current.model_file()

    def _protected(self) -> list:
        from ..denoise.modelio import DEFAULT_MODEL

        out = [DEFAULT_MODEL]
        job = self.current.job
        if job is not None and job["init"] not in (None, "default"):
            out.append(Path(job["init"]))
        if self.model_path.text().strip():
            out.append(Path(self.model_path.text().strip()).expanduser())
        return out

    def save_model(self, path=None):
        """Copy the run's model (best, else last) to ``path`` (asked with a file dialog when None)."""
        src = self.model_file()
        if src is None:
            self.runner.fail(InputError("nothing to save yet: train first."))
            return None
        if path is None:
            start = self.out_folder.text().strip() or str(Path.home())
            default = str(Path(start).expanduser() / f"{self.current.job['first']}_denoise.safetensors")
            path, _ = QFileDialog.getSaveFileName(self, "Save the trained model", default, "Model files (*.safetensors)")
            if not path:
                return None
        try:
            dst = copy_model(src, path, self._protected(), self.current.run_dir)
        except InputError as exc:
            self.runner.fail(exc)
            return None
        self.current.saved_path = dst
        self.saved_label.setText(f"Saved the {'best' if src.name.startswith('best') else 'last'} model to {dst}")
        self.status.setStyleSheet("")
        self._follow_state(self.runner.state)
        return dst

    def use_in_apply(self):
        """Make the saved model (else the run's best, unless the run folder is temporary) the model file of
        "Denoise: apply" (its remembered settings: an open one takes it at once). Returns the path."""
        path = self.current.saved_path
        if path is None:
            path = self.model_file()
            if path is None:
                self.runner.fail(InputError("nothing to use yet: train first."))
                return None
            if self.current.is_temporary():
                self.runner.fail(InputError("the run folder is temporary (deleted with the next run): save the "
                                            "model first (Save model…)."))
                return None
        n = set_remembered(APPLY_GROUP, {"model_path": str(path), "model_default": False, "model_file": True})
        self.status.setStyleSheet("")
        self.status.setText(f"'Denoise: apply' uses {path}" + (" (the open widget too)." if n else
                                                               " from the next time it is opened."))
        return path

    def _closed(self, ended: bool) -> None:
        if ended:
            self.current.drop_temporary()
