"""Denoise dock widget ("Denoise: apply"): remove scratches, stains, pits and speckle from an optical
micrograph while keeping its grain boundaries.

Thin over :func:`matrestore.denoise.denoise_iter` (the attention residual network, the engine behind
``matrestore denoise apply`` too) and :func:`matrestore.denoise.run_baseline` (the classical methods,
parameters calibrated without ground truth). The widget collects the input layer, the method (the
network, or one classical method), the model (bundled default or a file), the options of
:class:`~matrestore.denoise.apply.DenoiseOptions` (tile, halo, batch, histogram matching, colour) and
optionally one classical method to run beside the network; it runs :func:`denoise_job` in a worker
thread (:class:`~matrestore._widgets._worker.TaskRunner`: progress, cancel within one network layer,
errors in red) and puts the result into ``<input>_denoised`` (a classical method: ``<input>_<method>``)
with the input's scale, translate and units, so that it overlays the input; a second run updates the
layer in place. Colour micrographs are converted to grey (Rec. 601 luminance; equal channels: one
of them; alpha ignored) and the widget says so, or refused (option "colour images"). Input layers are
only read, never changed. The choices are remembered between sessions; "Restore defaults" sets them back.

Out of core: multiscale and Zarr/dask-backed layers are offered too; they (and outputs too large for
memory, or any input when "write to a Zarr store" is ticked) are denoised block by block into an
OME-Zarr store (:func:`denoise_store_job` → :func:`matrestore.denoise.denoise_to_zarr_iter`) shown as a
multiscale layer that fills in (:mod:`._store`). The classical methods run in memory only.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (QCheckBox, QFormLayout, QGroupBox, QHeaderView, QLabel, QPushButton, QTableWidgetItem,
                            QVBoxLayout, QWidget)

from .._layerdata import OUTPUT_KEY, made_by
from .._validate import InputError
from ..denoise.apply import DenoiseOptions
from ..denoise.grains import WHOLE_MAX_PX
from ..progress import Cancelled, Kind, format_duration, is_cancelled, record, run_blocking
from ._layers import LayerCombo, LayerDock, combo_box, put_image, put_labels, radio_row, same_layer, spatial_units
from ._model_choice import ModelDeviceMixin, load_cached
from ._params import ParamForm
from ._store import StoreRunMixin, check_not_input_store, level0, show_store, store_metadata
from ._worker import relay

__all__ = ["DenoiseWidget", "denoise_job", "denoise_store_job", "METHOD_NAMES", "denoise_layer_problem", "output_name"]

DEFAULT = "default"
NETWORK = "network"
MADE_BY = "denoise"
METHOD_NAMES = {"network": "attention residual network", "gaussian": "Gaussian", "median": "median",
                "bilateral": "bilateral", "nl_means": "non-local means", "tv": "total variation",
                "wavelet": "wavelet (BayesShrink)", "bm3d": "BM3D"}
GRAIN_RULES = {"auto (etched boundaries or grey levels)": "auto", "etched boundaries (dark lines)": "etched",
               "grey levels (as the evaluation)": "levels"}
GRAIN_COLUMNS = ("image", "grains", "inside", "mean area", "mean Ø", "G", "G (int.)")
SHORT_NAMES = {"network": "network", "nl_means": "NL-means", "tv": "TV", "wavelet": "wavelet", "bm3d": "BM3D"}
SETTINGS_GROUP = "denoise"  # the Denoise train widget sets "model_path" / "model_file" here (_settings.set_remembered)


def denoise_layer_problem(layer) -> str | None:
    """Why an image layer cannot be denoised (None when it can: 2-D grey or RGB(A); multiscale layers
    too, through a Zarr store)."""
    if layer.ndim != 2:
        return f"{layer.ndim}-D: only 2-D images can be denoised"
    return None


def output_name(name: str, method: str) -> str:
    """``<input>_denoised`` for the network, ``<input>_<method>`` for a classical method."""
    return f"{name}_denoised" if method == NETWORK else f"{name}_{method}"


def _load_model(spec, cache: dict):
    from ..denoise.modelio import DEFAULT_MODEL, load_model

    return load_cached(spec, cache, default_path=DEFAULT_MODEL, load=load_model)


def model_summary(model) -> dict:
    """A short, JSON-able description of a denoising model (for the result layer's metadata)."""
    meta = dict(getattr(model, "meta", {}) or {})
    out = {k: meta[k] for k in ("architecture", "parameters", "receptive_radius", "name", "created", "task") if k in meta}
    out["preset"] = getattr(model.cfg, "preset", None)
    if isinstance(meta.get("training"), dict):
        out["training"] = {k: v for k, v in meta["training"].items() if isinstance(v, (int, float, str))}
    if isinstance(meta.get("metrics"), dict):
        out["metrics"] = meta["metrics"]
    return out


def describe_model_file(path) -> str:
    """One line about a denoising model file from its metadata (weights not read); InputError for a file
    that is not a readable denoising model."""
    from .. import modelfile

    meta = modelfile.read_metadata(path, task="denoise")
    cfg = meta.get("config") or {}
    parts = [f"{cfg['preset']} preset"] if cfg.get("preset") else []
    if isinstance(meta.get("parameters"), int):
        parts.append(f"{meta['parameters'] / 1e3:.0f} k parameters")
    metrics = meta.get("metrics") or {}
    held = (metrics.get("held_out") or {}).get("network") or {}
    val = metrics.get("validation") or {}
    if isinstance(held.get("f1"), (int, float)):  # the figure of the model card (synthetic micrographs, unseen spectra)
        text = f"held-out boundary F1 {held['f1']:.3f}"
        if isinstance(held.get("count_err"), (int, float)):
            text += f", grain-count error {100 * held['count_err']:.0f} %"
        parts.append(text)
        real = metrics.get("nist_reference") or {}
        if isinstance(real.get("f1"), (int, float)):
            parts.append(f"real etched steel (NIST reference) boundary F1 {real['f1']:.3f}")
    elif isinstance(val.get("f1"), (int, float)):
        parts.append(f"validation boundary F1 {val['f1']:.3f}")
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------- engine calls
def _baseline(grey, method: str, calibrate: bool, colour: str, cancel):
    """Generator: a classical method in a helper thread, a heartbeat record every 0.5 s; ``None`` when
    cancelled (the helper thread finishes on its own and its result is dropped)."""
    from ..denoise.baselines import run_baseline

    t0 = time.perf_counter()

    def heartbeat():
        if is_cancelled(cancel):
            raise Cancelled("cancelled")
        return {"message": f"{METHOD_NAMES.get(method, method)}{' (calibrating)' if calibrate else ''} · "
                           f"{format_duration(time.perf_counter() - t0)}"}

    try:
        return (yield from run_blocking(lambda: run_baseline(grey, method, calibrate=calibrate, colour=colour,
                                                             return_params=True), heartbeat))
    except Cancelled:
        yield record(Kind.STOPPED, message="stopped")
        return None


def measure_job_grains(grey, outputs: list, grains: dict, cancel=None):
    """Generator: :func:`matrestore.denoise.measure_grains` of the input (grey) and of every output, all with
    one rule — "auto" chooses it on the input, the micrograph the user has (``grains``: ``pixel_size``,
    ``unit``, ``method`` auto/etched/levels).
    Returns ``{"rows": {name: summary}, "labels": the first output's grain labels, "method": the rule}`` or
    None when cancelled; an image over :data:`WHOLE_GRAINS_MAX_PX` is measured field by field
    (:func:`measure_fields_job`)."""
    from ..denoise.grains import choose_rule, measure_grains

    if grey.size > WHOLE_GRAINS_MAX_PX:  # a whole-image segmentation would take ~0.45 GB per megapixel
        return (yield from measure_fields_job([("input", grey)] + [(o["method"], o["image"]) for o in outputs],
                                              grains, cancel))
    method = grains.get("method", "auto")
    if method == "auto":
        method, _ = choose_rule(grey)  # the input passed prepare_input: 2-D, finite, not constant
    rows, labels = {}, None
    todo = [("input", grey)] + [(out["method"], out["image"]) for out in outputs]
    for k, (name, img) in enumerate(todo):
        if is_cancelled(cancel):
            return None
        yield {"message": f"measuring grains ({k + 1}/{len(todo)}: {METHOD_NAMES.get(name, name)})…"}
        try:
            res = measure_grains(img, grains.get("pixel_size"), grains.get("unit"), method=method)
        except InputError as exc:  # e.g. a constant result: say so in its row, keep the denoised images
            rows[name] = {"error": str(exc)}
            continue
        rows[name] = res["summary"]
        if k == 1:
            labels = res["labels"]
    return {"rows": rows, "labels": labels, "method": method}


STORE_FIELD_PX = 1024  # the ASTM E112 fields of a field-by-field grain measurement...
STORE_MAX_FIELDS = 25  # ...at most this many, spread evenly (about 40 s per image on two cores)
WHOLE_GRAINS_MAX_PX = WHOLE_MAX_PX  # larger in-memory images are measured field by field too


def measure_fields_job(todo: list, grains: dict, cancel=None):
    """Generator: the grains of each ``(name, image or store)`` in ``todo``, field by field
    (:func:`matrestore.denoise.fields.measure_fields_iter`: fields of ``grains.get("field", STORE_FIELD_PX)``
    px, at most ``STORE_MAX_FIELDS``, read one at a time), all with one rule ("auto": chosen on the first,
    the input). Returns ``{"rows": {name: field summary}, "fields": {name: per-field rows}, "labels": None,
    "method", "by_fields": True}`` or None when cancelled."""
    from ..denoise.fields import measure_fields_iter

    method = grains.get("method", "auto")
    rows, fields = {}, {}
    for name, src in todo:
        label = "input" if name == "input" else METHOD_NAMES.get(name, name)

        def say(rec, label=label):
            if rec.get("kind") == Kind.STEP:
                return {"message": f"grains of the {label}: field {rec['step']}/{rec['total']}…"}
            return {"message": f"grains of the {label}: {rec.get('message', '')}"}

        try:
            res = yield from relay(measure_fields_iter(src, grains.get("field", STORE_FIELD_PX),
                                                       pixel_size=grains.get("pixel_size"), unit=grains.get("unit"),
                                                       method=method, max_fields=grains.get("max_fields", STORE_MAX_FIELDS),
                                                       cancel=cancel), say)
        except InputError as exc:
            rows[name] = {"error": str(exc)}
            continue
        if res is None or is_cancelled(cancel):
            return None
        method = res["method"]  # the input's rule for the results too
        rows[name], fields[name] = res["summary"], res["fields"]
    return {"rows": rows, "fields": fields, "labels": None, "method": method, "by_fields": True}


def denoise_job(image, *, method: str = NETWORK, model=DEFAULT, cache=None, options: DenoiseOptions | None = None,
                device=None, beside: str | None = None, calibrate: bool = True, name: str = "input", cancel=None,
                grains: dict | None = None):
    """The engine calls behind the widget (a generator; no Qt, no layers).

    Checks the image (:func:`matrestore.denoise.apply.prepare_input`: dims, dtype, NaN, constant, size,
    colour), then runs ``method``: the network (model ``"default"`` or a path, reused from ``cache`` while
    the file is unchanged; :func:`~matrestore.denoise.denoise_iter` with ``options``) or a classical method
    (:func:`~matrestore.denoise.run_baseline`); ``beside`` adds one classical method after the network.
    ``grains`` (``{"pixel_size", "unit", "method"}``) also measures the grains of the input and of every
    output (:func:`measure_job_grains`). Returns ``None`` when cancelled, else ``{"outputs": [{"method",
    "image", "parameters", "elapsed_s"}, ...], "model_key", "model_meta", "device", "colour_note", "tiles",
    "grains", "elapsed_s"}``.
    """
    from .. import device as _device
    from ..denoise.apply import denoise_iter, prepare_input

    opts = (options or DenoiseOptions()).check()
    grey, note = prepare_input(image, opts.colour, f"input '{name}'")
    if not grains:
        del grey  # checked; the engine makes its own copy
    t_all = time.perf_counter()
    outputs, key, meta, dev_text, tiles = [], None, None, None, None
    if method == NETWORK:
        yield {"message": "loading the model…"}
        net, key, cached = _load_model(model, cache if cache is not None else {})
        dev = _device.pick_device(device)
        dev_text = _device.describe(dev)
        meta = model_summary(net)
        t0 = time.perf_counter()
        last = {}

        def keep(rec: dict) -> dict:
            if rec.get("kind") == Kind.SETUP:
                last.update(tiles=rec.get("total"), setup=rec.get("message"))
            if rec.get("kind") == Kind.WARNING and note and note in str(rec.get("message")):
                return {"message": note}  # said once in the status line, not as a toast as well
            return rec

        try:
            out = yield from relay(denoise_iter(image, net, device=dev, cancel=cancel, **opts.kwargs()), keep)
        finally:
            if dev.type in ("cuda", "mps"):
                net.to("cpu")  # the cached model waits on the CPU; the accelerator is given back
                _device.free_memory(dev)
        if out is None or is_cancelled(cancel):
            return None
        tiles = last.get("tiles")
        outputs.append({"method": NETWORK, "image": out, "elapsed_s": time.perf_counter() - t0,
                        "parameters": {**opts.kwargs(), "device": str(dev), "tiling": last.get("setup")}})
    extra = [method] if method != NETWORK else ([beside] if beside else [])
    for m in extra:
        yield {"message": f"{METHOD_NAMES.get(m, m)}…"}
        res = yield from _baseline(image, m, calibrate, opts.colour, cancel)
        if res is None or is_cancelled(cancel):
            return None
        img, params = res
        outputs.append({"method": m, "image": img, "elapsed_s": params.get("time_s"), "parameters": params})
    measured = None
    if grains:
        measured = yield from measure_job_grains(grey, outputs, grains, cancel)
        if measured is None:
            return None
    yield {"message": "done."}
    return {"outputs": outputs, "model_key": key, "model_meta": meta, "device": dev_text, "colour_note": note,
            "tiles": tiles, "grains": measured, "elapsed_s": time.perf_counter() - t_all}


def denoise_store_job(image, path, *, model=DEFAULT, cache=None, options: DenoiseOptions | None = None, device=None,
                      chunk=None, overwrite: bool = False, name: str = "input", cancel=None, grains: dict | None = None):
    """The out-of-core run behind the widget (a generator; no Qt): :func:`matrestore.denoise.denoise_to_zarr_iter`
    of ``image`` (level 0 of a multiscale layer, a dask, Zarr or numpy array) into the store ``path``. Its
    PHASE record ``phase="store"`` (the store exists) lets the widget show the layer that fills in.
    ``grains`` (``{"pixel_size", "unit", "method"}``) then measures the grains of the input and of the store
    field by field (:func:`measure_fields_job`). Returns ``{"store", "model_key", "model_meta", "device",
    "elapsed_s", "blocks", "colour_note", "histogram", "grains"}`` (``None`` when cancelled: the store is
    resumable)."""
    from .. import device as _device
    from ..denoise.lazy import denoise_to_zarr_iter

    opts = (options or DenoiseOptions()).check()
    yield {"message": "loading the model…"}
    net, key, _cached = _load_model(model, cache if cache is not None else {})
    dev = _device.pick_device(device)
    t0 = time.perf_counter()
    last: dict = {}

    def keep(rec: dict) -> dict:
        if rec.get("phase") == "blocks":
            last["blocks"] = rec.get("total")
        if rec.get("kind") == Kind.WARNING and "RGB" in str(rec.get("message")):
            last["colour"] = rec["message"]
            return {"message": rec["message"]}
        return rec

    try:
        out = yield from relay(denoise_to_zarr_iter(image, path, net, opts, chunk=chunk, overwrite=overwrite,
                                                    cancel=cancel, device=dev), keep)
    finally:
        if dev.type in ("cuda", "mps"):
            _device.free_memory(dev)
    if out is None or is_cancelled(cancel):
        return None
    elapsed = time.perf_counter() - t0
    measured = None
    if grains:
        measured = yield from measure_fields_job([("input", image), (NETWORK, out)], grains, cancel)
        if measured is None:
            return None
    return {"store": str(out), "model_key": key, "model_meta": model_summary(net), "device": _device.describe(dev),
            "elapsed_s": elapsed, "blocks": last.get("blocks"), "colour_note": last.get("colour"),
            "histogram": "sampled look-up" if opts.histogram else "off", "grains": measured}


# ---------------------------------------------------------------------------------------- widget
class DenoiseWidget(StoreRunMixin, ModelDeviceMixin, LayerDock):
    """Denoise an optical micrograph layer with the network or a classical method."""

    settings_group = SETTINGS_GROUP

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self.model_cache: dict = {}
        self.last_results: dict | None = None
        self._last_grains: dict | None = None
        self._job: dict | None = None
        self.etched_hint = False  # the input looks like a bright-field etched steel (see _etched_hint)
        self._hint_key, self._hint_rule = None, None
        self._build()
        self._sync_device()  # the device list must exist before its remembered choice is applied
        self._remember({"method": self.method_combo, "beside": self.beside_combo, "calibrate": self.calibrate_box,
                        "grains": self.grains_box, "grain_rule": self.grain_rule_combo,
                        "model_default": self.model_default, "model_file": self.model_file_radio,
                        "model_path": self.model_path, "device": self.device_combo})
        self._start_runner(self.progress_bar, self.progress_label, self.status)
        self._watch_layers()
        self._sync_method()
        self._sync_model()
        self._sync_device()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        from ..denoise.baselines import available_baselines

        self.baselines = available_baselines()
        lay = QVBoxLayout(self)
        form = QFormLayout()
        self.input_combo = LayerCombo("The optical micrograph to denoise: a 2-D grey or RGB image layer (colour is "
                                      "converted to grey luminance, see 'colour images' under Advanced); "
                                      "multiscale and Zarr-backed layers too (written to a Zarr store).")
        form.addRow("input", self.input_combo)
        methods = {METHOD_NAMES[NETWORK]: NETWORK, **{METHOD_NAMES.get(b, b): b for b in self.baselines}}
        self._methods = methods
        self.method_combo = combo_box(methods, "The network (trained on phase-field pairs: removes scratches, stains "
                                      "and pits, keeps grain boundaries), or one classical method of scikit-image "
                                      "with its parameter calibrated on the image itself (no ground truth needed)."
                                      + ("" if "bm3d" in self.baselines else "\nBM3D appears when the optional 'bm3d' "
                                         "package is installed."))
        form.addRow("method", self.method_combo)
        self._beside = {"(none)": None, **{METHOD_NAMES.get(b, b): b for b in self.baselines}}
        self.beside_combo = combo_box(self._beside, "Also run this classical method after the network, into "
                                      "'<input>_<method>', to compare side by side.")
        form.addRow("compare with", self.beside_combo)
        self.calibrate_box = QCheckBox("calibrate classical parameters")
        self.calibrate_box.setChecked(True)
        self.calibrate_box.setToolTip("Pick each classical method's parameter by J-invariant self-supervised "
                                      "calibration (skimage.restoration.calibrate_denoiser) scaled by the estimated "
                                      "noise level. Off: a rule of thumb (faster).")
        form.addRow("", self.calibrate_box)
        lay.addLayout(form)

        self.model_box = QGroupBox("Model")
        ml = QVBoxLayout(self.model_box)
        mrow, self.model_default, self.model_file_radio = radio_row(
            ("bundled default", "The denoising model shipped with matrestore "
                                "(matrestore/denoise/models/default.safetensors; see docs/model_denoise_default.md)."),
            ("model file", "A model trained with the 'Denoise: synthetic data and training' widget or "
                           "`matrestore denoise train` (a .safetensors file)."))
        ml.addLayout(mrow)
        ml.addLayout(self._model_file_row("The model file to use when 'model file' is selected.", "Choose a model file."))
        self.etched_button = QPushButton("use the bundled etched-steel model")
        self.etched_button.setToolTip("A second bundled model (matrestore/denoise/models/etched.safetensors), trained with "
                                      "a quarter of bright uniform-grain pairs: on a real bright-field etched steel it "
                                      "keeps the boundaries that grain sizing needs better than the default (see "
                                      "docs/model_denoise_default.md); on synthetic test images its boundary F1 is a "
                                      "little lower. Chosen as a model file.")
        self.etched_button.clicked.connect(self._use_etched)
        ml.addWidget(self.etched_button)
        self.hint_label = QLabel("")
        self.hint_label.setWordWrap(True)
        self.hint_label.setStyleSheet("color: #e0b050;")
        self.hint_label.setToolTip("A suggestion from the input's look (docs/denoise.md, 'Grains': the etched rule's test).")
        self.hint_label.setVisible(False)
        ml.addWidget(self.hint_label)
        ml.addWidget(self._model_note_label("Whether the chosen model is available."))
        lay.addWidget(self.model_box)

        lay.addWidget(self._grains_part())
        lay.addWidget(self._output_box("denoised", use_tip="Network only: the classical methods run in memory. "
                                       "Histogram matching is then a sampled look-up (an approximation of the "
                                       "in-memory rank matching, see docs/denoise.md)."))

        lay.addWidget(self._advanced_toggle("Show or hide the tiling, histogram, colour and device options."))
        self.adv_box = QWidget()
        af = QFormLayout(self.adv_box)
        af.setContentsMargins(12, 0, 0, 0)
        self.options = ParamForm(DenoiseOptions, settings=self.settings)
        self.options.add_row("device", self._device_row(), after="batch")
        af.addRow(self.options)
        af.addRow(self._defaults_row("Set the method, model and advanced options back to their defaults (they are "
                                     "remembered between sessions)."))
        self.adv_box.setVisible(False)
        lay.addWidget(self.adv_box)
        self.histogram_box = self.options.control("histogram")

        self.invalid_note = self._unoffered_label()
        lay.addWidget(self.invalid_note)
        self._add_run_controls(
            lay, run=("Denoise", "Denoise the input in the background (the viewer stays usable); the result goes into "
                                 "'<input>_denoised' (a classical method: '<input>_<method>'), updated in place."),
            cancel_tip="Stop within about a second (between network layers); nothing is added or changed.",
            progress=("%p %", "Tiles done of all tiles."), step_tip="The tile being computed, time so far and left.")
        lay.addStretch(1)

        self.method_combo.currentIndexChanged.connect(self._sync_method)
        self.model_default.toggled.connect(self._sync_model)
        self.input_combo.currentIndexChanged.connect(self._on_input)

    def _grains_part(self) -> QGroupBox:
        from ._train_parts import read_only_table

        box = QGroupBox("Grains")
        gl = QFormLayout(box)
        self.grains_box = QCheckBox("measure grains after denoising")
        self.grains_box.setChecked(True)
        self.grains_box.setToolTip("Segment the grains of the input and of every result and measure them: counts, mean "
                                   "area and diameter, ASTM E112 grain size number (planimetric and intercept) when "
                                   "the layer has a pixel size; the result's grains go into '<input>_grains' "
                                   "(outlines). A run into a Zarr store is measured field by field (ASTM E112 fields "
                                   f"of {STORE_FIELD_PX} px, at most {STORE_MAX_FIELDS}, with the 95 % confidence "
                                   "interval); no outlines then.")
        gl.addRow(self.grains_box)
        self.grain_rule_combo = combo_box(GRAIN_RULES, "How grains are found (docs/denoise.md, 'Grains'): dark etched "
                                          "boundary lines (bright-field etched steels), or steps between grain grey "
                                          "levels (tint etching, polarised light; the evaluation's rule); auto picks "
                                          "by whether the result has a thin dark boundary network.")
        gl.addRow("rule", self.grain_rule_combo)
        self.grain_table = read_only_table(list(GRAIN_COLUMNS), "Grains of the input and of each result (the same rule "
                                           "for all). 'inside': grains not cut by the image border; mean area and "
                                           "diameter Ø (equivalent circle) of those. G: ASTM E112 planimetric "
                                           "(Jeffries) grain size number; G (int.): the mean lineal intercept one.")
        hh = self.grain_table.horizontalHeader()
        for c in range(len(GRAIN_COLUMNS) - 1):
            hh.setSectionResizeMode(c, QHeaderView.ResizeToContents)
        hh.setSectionResizeMode(len(GRAIN_COLUMNS) - 1, QHeaderView.Stretch)
        self.grain_table.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)  # it fits the dock: no scrolling
        self.grain_table.setMinimumHeight(90)
        self.grain_table.setMaximumHeight(130)
        gl.addRow(self.grain_table)
        self.grain_save = QPushButton("Save per-grain table…")
        self.grain_save.setToolTip("Write every grain of the result (label, area in px and in the layer's units², "
                                   "equivalent diameter, centroid, border contact) as CSV, with the summary as JSON "
                                   "beside it; after a store run, every field of the result (grains, grains per "
                                   "area, mean intercept, G).")
        self.grain_save.setEnabled(False)
        self.grain_save.clicked.connect(self._ask_save_grains)
        gl.addRow(self.grain_save)
        self.grain_note = QLabel("")
        self.grain_note.setWordWrap(True)
        self.grain_note.setToolTip("The rule used and where the pixel size came from.")
        gl.addRow(self.grain_note)
        self.grains_box.toggled.connect(lambda on: self.grain_rule_combo.setEnabled(bool(on)))
        return box

    def _ask_save_grains(self) -> None:
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getSaveFileName(self, "Save the per-grain table", "grains.csv", "CSV (*.csv)")
        if path:
            try:
                self.save_grain_table(path)
            except (InputError, OSError) as exc:
                self.runner.fail(InputError(str(exc)))

    def save_grain_table(self, path) -> Path:
        """Write the last result's grains (:func:`matrestore.denoise.grains.grains_csv`) to ``path`` and the
        summaries of the grain table to ``<path>.json``; InputError before any grains were measured. Never
        replaces a file matrestore did not write (the dialog asks first; a script passes a new name)."""
        import json

        from .._paths import atomic_write_text
        from ..denoise.grains import grain_properties, grains_csv

        g = self._last_grains
        if not g or (g.get("labels") is None and not g.get("by_fields")):
            raise InputError("no grains measured yet: denoise with 'measure grains after denoising' ticked.")
        req = g["request"]
        path = Path(path)
        doc = {"source": g["source"], "rule": g["method"], "pixel_size": req.get("pixel_size"),
               "unit": req.get("unit") or "px", "summaries": g["rows"], "written_by": "matrestore"}
        if g.get("by_fields"):
            from ..denoise.fields import fields_csv

            rows = g["fields"].get(g["main"]) or []
            atomic_write_text(path, fields_csv(rows))
            doc["fields"] = g["fields"]
            what = f"{len(rows)} fields"
        else:
            rows = grain_properties(g["labels"], req.get("pixel_size"), req.get("unit"))
            atomic_write_text(path, grains_csv(rows))
            what = f"{len(rows)} grains"
        atomic_write_text(path.with_suffix(".json"), json.dumps(doc, indent=1, default=str))
        self.status.setStyleSheet("")
        self.status.setText(f"Saved {what} to {path.name} (summary: {path.with_suffix('.json').name}).")
        return path

    def grain_request(self, layer) -> dict | None:
        """What 'measure grains' asks of the engine for ``layer``: ``{"pixel_size", "unit", "method"}`` (pixel
        size and unit from the layer's scale and units; none when its units are pixels), or None when off."""
        from ..denoise.grains import UNIT_TO_MM

        if not self.grains_box.isChecked():
            return None
        units = spatial_units(layer) or ()
        unit = str(units[-1]) if units else None
        px = float(layer.scale[-1])
        if unit is None or unit.lower() not in UNIT_TO_MM:
            px, unit = None, None
        return {"pixel_size": px, "unit": unit, "method": GRAIN_RULES[self.grain_rule_combo.currentText()]}

    def _show_grains(self, job: dict, res: dict, main_method: str) -> str:
        """Fill the grain table, put '<input>_grains' (outlines of the result's grains); a status phrase."""
        g = res.get("grains")
        self._last_grains = None if not g else dict(g, request=job["grains"], source=job["name"], main=main_method)
        by_fields = bool(g and g.get("by_fields"))
        self.grain_save.setEnabled(bool(g and (g.get("labels") is not None or (by_fields and g["fields"].get(main_method)))))
        self.grain_save.setText("Save per-field table…" if by_fields else "Save per-grain table…")
        if not g:
            return ""
        req = job["grains"]
        unit = req.get("unit")
        u = {"micrometer": "µm", "nanometer": "nm", "millimeter": "mm", "um": "µm"}.get(str(unit), unit) if unit else "px"
        self.grain_table.setRowCount(len(g["rows"]))
        heads = list(GRAIN_COLUMNS)
        heads[3], heads[4] = f"area {u}²", f"Ø {u}"
        self.grain_table.setHorizontalHeaderLabels(heads)
        for r, (name, s) in enumerate(g["rows"].items()):
            label = "input" if name == "input" else SHORT_NAMES.get(name, METHOD_NAMES.get(name, name))
            if "error" in s:
                cells = [label] + ["–"] * (len(GRAIN_COLUMNS) - 1)
            elif by_fields:  # field summaries: grains counted in the fields, Jeffries mean area 1/N_A
                area = s["mean_area"] if s["mean_area"] is not None else s["mean_area_px"]
                cells = [label, str(s["grains_counted"]), "–", "–" if area is None else f"{area:.4g}", "–",
                         "–" if s["astm_g"] is None else f"{s['astm_g']:.2f}",
                         "–" if s["astm_g_intercept"] is None else f"{s['astm_g_intercept']:.2f}"]
            else:
                area = s["mean_area"] if s["mean_area"] is not None else s["mean_area_px"]
                cells = [label, str(s["count"]), str(s["inside"]), f"{area:.4g}", f"{s['mean_diameter']:.4g}",
                         "–" if s["astm_g"] is None else f"{s['astm_g']:.2f}",
                         "–" if s["astm_g_intercept"] is None else f"{s['astm_g_intercept']:.2f}"]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(f"grains not measured: {s['error']}" if "error" in s else f"{heads[c]}: {text}")
                self.grain_table.setItem(r, c, item)
        rule = {"etched": "etched boundaries", "levels": "grey levels"}.get(g["method"], g["method"])
        note = f"Rule: {rule}. "
        fs = (g["rows"].get(main_method) or {}) if by_fields else {}
        if by_fields and "fields" in fs:
            na = fs["grains_per_area"]
            note += (f"Measured field by field: {fs['measured']} of {fs['fields']} fields of {fs['field_px']} px"
                     + (f", relative accuracy {na['ra_percent']:.1f} % (95 % confidence interval of the grains per "
                        "area)" if na.get("ra_percent") is not None else "") + "; mean area: 1/N_A. ")
        note += (f"Pixel size {req['pixel_size']:.4g} {u} from the layer." if req.get("pixel_size") is not None else
                 "No pixel size (the layer's units are pixels): sizes in px, no ASTM number; open the file with "
                 "matrestore's reader or set the layer's scale and units.")
        self.grain_note.setText(note)
        stale = f"{job['name']}_grains"
        if g.get("labels") is None and stale in self.viewer.layers and \
                made_by(self.viewer.layers[stale].metadata) == MADE_BY:
            self.viewer.layers.remove(stale)  # an outline of an earlier result would not match this one
        if g.get("labels") is not None:
            md = {OUTPUT_KEY: {"made_by": MADE_BY, "source": job["name"], "what": f"grains of the {main_method} result",
                               "rule": g["method"], "summary": g["rows"].get(main_method)}}
            put_labels(self.viewer, f"{job['name']}_grains", g["labels"], job["scale"], job["translate"], md,
                       units=job["units"], contour=1, opacity=0.8)
        s = g["rows"].get(main_method) or {}
        if "error" in s or not s:
            return f" Grains not measured: {s.get('error', 'no result')}"
        if by_fields:
            return (f" Grains: {s['grains_counted']} in {s['measured']} fields ({rule})"
                    + (f", ASTM G {s['astm_g']:.2f}." if s.get("astm_g") is not None else "."))
        return f" Grains: {s.get('count')} ({rule})" + (f", ASTM G {s['astm_g']:.2f}." if s.get("astm_g") is not None else ".")

    def restore_defaults(self) -> None:
        super().restore_defaults()
        self._sync_method()
        self._sync_model()
        self._sync_device()

    # ------------------------------------------------------------------ choices
    def method(self) -> str:
        return self._methods[self.method_combo.currentText()]

    def set_method(self, method: str, beside: str | None = None) -> None:
        """Choose the method (``"network"`` or a baseline name) and the method run beside the network."""
        self.method_combo.setCurrentText(next(t for t, v in self._methods.items() if v == method))
        self.beside_combo.setCurrentText(next(t for t, v in self._beside.items() if v == beside))

    def beside(self) -> str | None:
        return self._beside[self.beside_combo.currentText()] if self.method() == NETWORK else None

    def _sync_method(self, *_) -> None:
        net = self.method() == NETWORK
        self.model_box.setEnabled(net)
        self.beside_combo.setEnabled(net)
        for name in ("tile", "halo", "batch", "histogram"):
            self.options.control(name).setEnabled(net)
        self.device_combo.setEnabled(net)

    def _sync_model(self, *_) -> None:
        from ..denoise.modelio import DEFAULT_MODEL

        self._etched_hint()
        self._show_model_choice(DEFAULT_MODEL, "default model installed",
                                "No default denoising model is installed: choose a model file.", describe_model_file)

    def _use_etched(self) -> None:
        from ..denoise.modelio import ETCHED_MODEL

        self.set_model(str(ETCHED_MODEL))

    def _browse_model(self) -> None:
        path = self._ask_model_file("Denoising model")
        if path:
            self.set_model(path)

    def denoise_options(self) -> DenoiseOptions:
        """The options as the engine takes them, checked by the engine (InputError names a bad one)."""
        return DenoiseOptions(**self.options.values()).check()

    # ------------------------------------------------------------------ layers
    def _refresh_layers(self, event=None) -> None:
        images = self._image_layers()
        valid = [lyr for lyr in images if denoise_layer_problem(lyr) is None]
        plain = [lyr for lyr in valid if made_by(lyr.metadata) is None]
        active = self.viewer.layers.selection.active
        default = next((lyr for lyr in plain if same_layer(lyr, active)), None) or (plain[0] if plain else None)
        if default is None and valid:
            default = valid[0]
        self.input_combo.fill(valid, default)
        bad = [(lyr.name, denoise_layer_problem(lyr)) for lyr in images if denoise_layer_problem(lyr)]
        self.invalid_note.setText("Not offered: " + "; ".join(f"'{n}' ({why})" for n, why in bad) if bad else "")
        self.invalid_note.setVisible(bool(bad))
        self.store_part.sync(self.input_layer(), 1)
        self._etched_hint()

    def _on_input(self, *_) -> None:
        self.store_part.sync(self.input_layer(), 1)
        self._etched_hint()

    HINT_MAX_PX = 1_000_000  # the look (~0.25 s at 1 MP) of larger or lazy layers is not judged on the GUI thread

    def _etched_hint(self) -> None:
        """Under the model choice: suggest the bundled etched-steel model when the input looks like a bright-field
        etched steel (a thin dark boundary network: :func:`matrestore.denoise.grains.choose_rule`) and the
        default model is chosen. Small in-memory layers only; any failure just gives no hint."""
        from ..denoise.grains import choose_rule

        self.etched_hint = False
        layer = self.input_layer()
        if layer is None or getattr(layer, "multiscale", False) or not self.model_default.isChecked():
            self._show_hint("")
            return
        data = layer.data
        if not isinstance(data, np.ndarray) or data.size > self.HINT_MAX_PX * (data.shape[-1] if data.ndim == 3 else 1):
            self._show_hint("")
            return
        key = (id(data), data.shape)
        if self._hint_key != key:
            try:
                from ..denoise.apply import prepare_input

                grey, _ = prepare_input(data, "luminance", "input")
                self._hint_rule = choose_rule(grey)[0]
            except Exception:  # noqa: BLE001 - no hint for an image the engine will refuse anyway
                self._hint_rule = None
            self._hint_key = key
        self.etched_hint = self._hint_rule == "etched"
        self._show_hint("This micrograph looks like a bright-field etched steel (thin dark boundaries): the bundled "
                        "etched-steel model keeps such boundaries better for grain sizing." if self.etched_hint else "")

    def _show_hint(self, text: str) -> None:
        self.hint_label.setText(text)
        self.hint_label.setVisible(bool(text))

    def input_layer(self):
        return self.input_combo.layer()

    # ------------------------------------------------------------------ running
    def _collect(self) -> dict:
        """Snapshot of the inputs (layer data, name, geometry, options) or InputError."""
        inp = self.input_layer()
        if inp is None:
            raise InputError("open or pick a 2-D image layer (an optical micrograph) to denoise.")
        if denoise_layer_problem(inp):
            raise InputError(f"input '{inp.name}': {denoise_layer_problem(inp)}.")
        method = self.method()
        opts = self.denoise_options()
        outs = [output_name(inp.name, method)] + ([output_name(inp.name, self.beside())] if self.beside() else [])
        if inp.name in outs:
            raise InputError(f"the output layer '{inp.name}' would replace the input; rename the input layer.")
        use_store, store, overwrite = self.store_part.values()
        if use_store:
            why = self.store_part.reason
            need = f"this input needs a Zarr store ({why})" if why else "'write to a Zarr store' is ticked"
            if method != NETWORK:
                raise InputError(f"{METHOD_NAMES.get(method, method)} runs in memory only, and {need}; choose the "
                                 "network" + ("." if why else ", or untick 'write to a Zarr store'."))
            if self.beside():
                raise InputError(f"'compare with' runs a classical method in memory only, and {need}; set "
                                 "'compare with' to (none).")
            check_not_input_store(inp.metadata, store)
        return {"store": store, "overwrite": overwrite, "chunk": self.store_part.block_side() if use_store else None, "input": inp, "name": inp.name, "method": method, "beside": self.beside(),
                "calibrate": self.calibrate_box.isChecked(), "options": opts,
                "model": self.model_spec() if method == NETWORK else None, "device": self.device(),
                "scale": tuple(float(v) for v in inp.scale[-2:]), "translate": tuple(float(v) for v in inp.translate[-2:]),
                "units": spatial_units(inp), "rgb": bool(getattr(inp, "rgb", False)),
                "grains": self.grain_request(inp),
                "contrast_limits": tuple(inp.contrast_limits), "metadata": dict(inp.metadata or {})}

    def run(self):
        """Start denoising in a worker thread (the result arrives in :meth:`_show_result`)."""
        job = self._new_job()
        if job is None:
            return None
        if job["store"] is not None:
            self._follow_store(lambda path, job=job: self._store_layer(job, path))
            return self.runner.start(
                denoise_store_job, level0(job["input"]), job["store"], model=job["model"] or DEFAULT,
                cache=self.model_cache, options=job["options"], device=job["device"], overwrite=job["overwrite"],
                chunk=job["chunk"], name=job["name"], grains=job["grains"], on_yielded=self._on_store_record,
                on_returned=self._show_store_result,
                message="starting…")
        return self.runner.start(
            denoise_job, job["input"].data, method=job["method"], model=job["model"] or DEFAULT,
            cache=self.model_cache, options=job["options"], device=job["device"], beside=job["beside"],
            calibrate=job["calibrate"], name=job["name"], grains=job["grains"], on_returned=self._show_result,
            message="starting…")

    # ------------------------------------------------------------------ results (GUI thread)
    def _metadata(self, job: dict, res: dict, out: dict) -> dict:
        src = job["metadata"]
        md = {k: src[k] for k in ("unit", "pixel_size", "pixel_size_nm", "pixel_size_source") if k in src}
        info = {"made_by": MADE_BY, "source": job["name"], "method": out["method"],
                "method_name": METHOD_NAMES.get(out["method"], out["method"]),
                "parameters": out["parameters"], "elapsed_s": round(float(out["elapsed_s"] or 0.0), 3)}
        if out["method"] == NETWORK:
            info.update(model=job["model"], model_meta=res["model_meta"], device=res["device"], tiles=res["tiles"])
        else:
            info["calibrated"] = bool(out["parameters"].get("calibrated"))
        if res.get("colour_note"):
            info["colour"] = res["colour_note"]
        md[OUTPUT_KEY] = info
        return md

    def _show_result(self, res) -> None:
        job = self._job
        if res is None or job is None:
            return
        names, parts = [], []
        for out in res["outputs"]:
            img = out["image"]
            if job["rgb"]:
                clim = (float(np.percentile(img, 0.5)), float(np.percentile(img, 99.5)))
                clim = clim if clim[1] > clim[0] else (float(img.min()), float(img.min()) + 1.0)
            else:
                clim = job["contrast_limits"]
            name = output_name(job["name"], out["method"])
            layer = put_image(self.viewer, name, img, job["scale"], job["translate"], self._metadata(job, res, out),
                              units=job["units"], contrast_limits=clim, colormap="gray")
            layer.contrast_limits = clim
            names.append(layer.name)
            parts.append(f"'{layer.name}' ({METHOD_NAMES.get(out['method'], out['method'])}, "
                         f"{format_duration(out['elapsed_s'] or 0.0)})")
        text = "Done: " + ", ".join(parts) + (f" on {res['device']}" if res.get("device") else "") + "."
        if res.get("colour_note"):
            text += f" Colour: {res['colour_note']}."
        text += self._show_grains(job, res, res["outputs"][0]["method"])
        self.last_results = {"layers": names, "elapsed_s": res["elapsed_s"], "device": res["device"],
                             "colour_note": res.get("colour_note"), "grains": res.get("grains")}
        self.status.setStyleSheet("")
        self.status.setText(text)

    # ------------------------------------------------------------------ store output (GUI thread)
    def _store_clim(self, job: dict) -> tuple:
        if not job["rgb"]:
            return job["contrast_limits"]
        dt = np.dtype(getattr(level0(job["input"]), "dtype", np.float32))
        return (0.0, float(np.iinfo(dt).max)) if np.issubdtype(dt, np.integer) else (0.0, 1.0)

    def _store_layer(self, job: dict, path, res: dict | None = None):
        """Show the store at ``path`` as the layer '<input>_denoised' (multiscale, explicit contrast limits)."""
        md = store_metadata(job["metadata"], 1)
        if "pixel_size_source" in job["metadata"]:
            md["pixel_size_source"] = job["metadata"]["pixel_size_source"]
        info = {"made_by": MADE_BY, "source": job["name"], "method": NETWORK, "method_name": METHOD_NAMES[NETWORK],
                "store": str(path), "model": job["model"],
                "parameters": {**job["options"].kwargs(), "device": job["device"]}}
        if res is not None:
            info.update(model_meta=res["model_meta"], device=res["device"], elapsed_s=round(float(res["elapsed_s"]), 3),
                        blocks=res.get("blocks"), histogram_matching=res.get("histogram"))
            if res.get("colour_note"):
                info["colour"] = res["colour_note"]
        md[OUTPUT_KEY] = info
        md["store"] = str(path)
        return show_store(self.viewer, output_name(job["name"], NETWORK), path, job["scale"], job["translate"], md,
                          units=job["units"], contrast_limits=self._store_clim(job))

    def _show_store_result(self, res) -> None:
        job = self._job
        if res is None or job is None:
            return
        view = self._store_layer(job, res["store"], res)  # the final levels (coarser ones may have been added)
        shape = view.layer.data[0].shape if view.layer.multiscale else view.layer.data.shape
        text = (f"Done: '{view.layer.name}' ({shape[0]}×{shape[1]} px) written to {Path(res['store']).name} in "
                f"{format_duration(res['elapsed_s'])} on {res['device']}")
        text += (", histogram matched by a sampled look-up." if res.get("histogram") != "off" else ".")
        if res.get("colour_note"):
            text += f" Colour: {res['colour_note']}."
        text += self._show_grains(job, res, NETWORK)
        self.last_results = {"layers": [view.layer.name], "elapsed_s": res["elapsed_s"], "device": res["device"],
                             "colour_note": res.get("colour_note"), "store": res["store"], "grains": res.get("grains")}
        self.status.setStyleSheet("")
        self.status.setText(text)
