"""Enhance dock widget: reference-based super-resolution (TTSR) of a 2-D micrograph layer.

Thin over :func:`matrestore.sr.enhance_iter` (the engine behind ``matrestore sr enhance`` too): the
widget collects the input layer, the references (image layers and/or a folder), the model and the
tiling options, runs :func:`enhance_job` in a worker thread
(:class:`~matrestore._widgets._worker.TaskRunner`: progress, cancel, errors) and puts the result into
the layer ``<input>_sr``, scaled and shifted so that it overlays the input
(:func:`matrestore.baselines.upsampled_geometry`). A second run updates that layer in place. With a
ground-truth layer, the nearest / bicubic / Lanczos baselines and the result are scored
(:func:`matrestore.evaluation.evaluate_baselines`) and shown in a copyable table. Input layers are
only read, never changed. The model choice, the reference folder and the advanced options are
remembered between sessions; "Restore defaults" sets them back.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from qtpy.QtWidgets import (
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .. import evaluation
from .._validate import InputError, as_2d_image
from ..baselines import upsampled_geometry
from ..progress import is_cancelled
from ..sr.enhance import EnhanceOptions
from ._layers import (LayerCombo, LayerDock, layer_problem, put_image, radio_row,
                      same_layer, spatial_units)
from ._params import ParamForm
from ._store import StoreRunMixin, check_not_input_store, level0, show_store, store_metadata
from ._model_choice import ModelDeviceMixin, load_cached
from ._worker import relay
from ._table import MetricsTable, copy_table
from .._layerdata import OUTPUT_KEY, ROLE_KEY

__all__ = ["EnhanceWidget", "enhance_job", "enhance_store_job", "MIN_SIZE"]

MIN_SIZE = 8  # LR px a side: smaller inputs are refused with a message
DEFAULT = "default"
RESULT_NAME = "ttsr"


def _load_model(spec, cache: dict):
    """The SR model for ``spec`` ("default" or a path), from ``cache`` when the file is unchanged."""
    from ..sr import load_model
    from ..sr.modelio import DEFAULT_MODEL

    return load_cached(spec, cache, default_path=DEFAULT_MODEL, load=load_model)


def describe_model_file(path) -> str:
    """One line about a model file, from its metadata only (the weights are not read): preset, scale,
    size and the gain over bicubic when the file records it: on held-out images (``metrics.held_out``,
    written by ``scripts/eval_default.py --record``) if measured, else on the validation cells.
    InputError for a file that is not a readable super-resolution model."""
    from .. import modelfile
    from ..sr.modelio import held_out_summary

    meta = modelfile.read_metadata(path, task="sr")
    cfg = meta.get("config") or {}
    parts = [f"{cfg['preset']} preset"] if cfg.get("preset") else []
    if meta.get("scale"):
        parts.append(f"×{meta['scale']}")
    if isinstance(meta.get("parameters"), int):
        parts.append(f"{meta['parameters'] / 1e3:.0f} k parameters")
    held = held_out_summary(meta)
    gain = ((meta.get("metrics") or {}).get("validation") or {}).get("psnr_gain_db")
    if held:
        parts.append(held)
    elif isinstance(gain, (int, float)):
        parts.append(f"validation: {gain:+.2f} dB PSNR over bicubic")
    return ", ".join(parts)


def model_summary(model) -> dict:
    """A short, JSON-able description of a model (for the result layer's metadata)."""
    meta = dict(getattr(model, "meta", {}) or {})
    cfg = meta.get("config", {})
    out = {k: meta[k] for k in ("architecture", "scale", "parameters", "note", "name", "created", "task") if k in meta}
    out.setdefault("scale", int(model.scale))
    if "preset" in cfg:
        out["preset"] = cfg["preset"]
    if isinstance(meta.get("training"), dict):
        out["training"] = {k: v for k, v in meta["training"].items() if isinstance(v, (int, float, str))}
    if isinstance(meta.get("metrics"), dict):
        out["metrics"] = meta["metrics"]
    if isinstance(meta.get("versions"), dict):
        out["versions"] = meta["versions"]
    return out


# ---------------------------------------------------------------------------------------- engine calls
def enhance_job(lr, *, references, model="default", cache=None, tile=None, batch=None, device=None,
                mode="fast", top_k=None, gt=None, name="input", uncertainty: int = 0, cancel=None):
    """The engine calls behind the widget (a generator; no Qt, no layers).

    Loads the model (``"default"`` or a path; reused from ``cache`` when the file has not changed),
    checks the input, runs :func:`matrestore.sr.enhance_iter` (yielding its progress records with an
    estimate of the time left) and, with ``gt``, scores the baselines and the result with
    :func:`matrestore.evaluation.evaluate_baselines`. Returns ``None`` when cancelled, else
    ``{"image", "scale", "model_key", "model_meta", "device", "elapsed_s", "tiles", "references",
    "metrics", "data_range", "uncertainty"}``. With ``uncertainty = n`` (2..8) it also returns the
    standard deviation of the enhancement over ``n`` flips/rotations of the input
    (:func:`matrestore.ser.tta_uncertainty_iter`), the map that scan-enhance-rescan proposes ROIs on.
    """
    from .. import device as _device
    from ..sr import enhance_iter, load_references

    cache = {} if cache is None else cache
    yield {"message": "loading the model…"}
    mdl, key, cached = _load_model(model, cache)
    s = int(mdl.scale)
    img = as_2d_image(lr, f"input '{name}'", min_size=MIN_SIZE)
    if gt is not None:
        evaluation.match_lr_hr(as_2d_image(gt, "ground truth"), img, s)  # refuse a misfit before the long part
    dev = _device.pick_device(device)
    yield {"message": f"reading the references{' (model cached)' if cached else ''}…"}
    bank = load_references(references, crop=mdl.cfg.ref_crop, scale=s)
    t0 = time.perf_counter()
    result = None
    try:
        gen = enhance_iter(img, bank, mdl, tile=tile, batch=batch, device=dev, cancel=cancel, mode=mode, top_k=top_k)
        last = {}

        def keep_last(rec: dict) -> dict:
            nonlocal last
            if rec.get("phase") == "tiles":
                last = rec
            return rec

        result = yield from relay(gen, keep_last)
        if result is None or is_cancelled(cancel):
            return None
        elapsed = time.perf_counter() - t0
        out = {"image": result, "scale": s, "model_key": key, "model_meta": model_summary(mdl),
               "device": _device.describe(dev), "device_name": str(dev), "elapsed_s": elapsed,
               "tiles": last.get("total"), "tile": last.get("tile"), "batch": last.get("batch"),
               "references": bank.summary(), "metrics": None, "data_range": None, "uncertainty": None}
        if uncertainty:
            import torch

            from .. import ser
            from ..sr import RefFeatures, enhance as sr_enhance

            with torch.no_grad():
                feats = RefFeatures(mdl, bank, dev)  # reference features once for all augmentations

            def one(a):
                return sr_enhance(a, bank, mdl, tile=tile, batch=batch, device=dev, cancel=cancel, mode=mode,
                                  top_k=top_k, ref_features=feats)

            tta = yield from ser.tta_uncertainty_iter(img, one, n_aug=int(uncertainty), cancel=cancel)
            if tta is None:
                return None
            out["uncertainty"] = tta[1].astype(np.float32)
        if gt is not None:
            total = last.get("total") or 1
            yield {"step": total, "total": total, "message": "scoring against the ground truth…"}
            if is_cancelled(cancel):
                return None
            res = evaluation.evaluate_baselines(gt, lr=img, scale=s, extra={RESULT_NAME: result})
            out["metrics"], out["data_range"] = res["metrics"], res["data_range"]
        return out
    finally:
        if dev.type in ("cuda", "mps"):
            mdl.to("cpu")  # the cached model waits on the CPU; the accelerator is given back
            _device.free_memory(dev)


def enhance_store_job(lr, path, *, references, model="default", cache=None, tile=None, batch=None, device=None,
                      top_k=None, chunk=None, overwrite=False, name="input", cancel=None):
    """The out-of-core run behind the widget (a generator; no Qt): :func:`matrestore.sr.enhance_to_zarr_iter`
    of the lazy input ``lr`` (level 0 of a multiscale layer, a dask or Zarr array) into the store ``path``.
    Its PHASE record ``phase="store"`` (the store exists) lets the widget show the layer that fills in.
    Returns ``{"store", "scale", "model_key", "model_meta", "device", "elapsed_s", "blocks"}``."""
    from .. import device as _device
    from ..sr import enhance_to_zarr_iter, load_references

    cache = {} if cache is None else cache
    yield {"message": "loading the model…"}
    mdl, key, cached = _load_model(model, cache)
    if min(int(v) for v in lr.shape[-2:]) < MIN_SIZE:
        raise InputError(f"input '{name}' is too small to enhance (at least {MIN_SIZE} px a side).")
    dev = _device.pick_device(device)
    yield {"message": f"reading the references{' (model cached)' if cached else ''}…"}
    bank = load_references(references, crop=mdl.cfg.ref_crop, scale=int(mdl.scale))
    t0 = time.perf_counter()
    last = {}

    def keep(rec: dict) -> dict:
        nonlocal last
        if rec.get("phase") == "blocks":
            last = rec
        return rec

    out = yield from relay(enhance_to_zarr_iter(lr, path, bank, mdl, chunk=chunk, overwrite=overwrite, cancel=cancel,
                                                tile=tile, batch=batch, top_k=top_k, device=dev), keep)
    if out is None:
        return None
    return {"store": str(out), "scale": int(mdl.scale), "model_key": key, "model_meta": model_summary(mdl),
            "device": _device.describe(dev), "elapsed_s": time.perf_counter() - t0, "blocks": last.get("total")}


# ---------------------------------------------------------------------------------------- widget
class EnhanceWidget(StoreRunMixin, ModelDeviceMixin, LayerDock):
    """Super-resolve a 2-D micrograph layer with a TTSR model and HR reference images."""

    settings_group = "enhance"


    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self.last_results: dict | None = None
        self.model_cache: dict = {}
        self._job: dict | None = None
        self._build()
        self._sync_device()  # fills the device list before its remembered choice is applied
        self._remember({"model_default": self.model_default, "model_file": self.model_file_radio,
                        "model_path": self.model_path, "reference_folder": self.ref_folder,
                        "device": self.device_combo})  # the options remember themselves (ParamForm)
        self._start_runner(self.progress_bar, self.progress_label, self.status)
        self._watch_layers()
        self._sync_model()
        self._sync_device()

    @property
    def _input_choices(self) -> list:
        return self.input_combo.choices

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        form = QFormLayout()
        self.input_combo = LayerCombo("The low-resolution 2-D greyscale image to super-resolve (multiscale and "
                                      "Zarr-backed layers too: they are written to a Zarr store). RGB and 3-D "
                                      "layers are not offered (see the note below).")
        form.addRow("input", self.input_combo)
        self.gt_combo = LayerCombo("Optional ground truth (a high-resolution image of the same field, s × the "
                                   "input's size): after enhancing, the result and the nearest / bicubic / Lanczos "
                                   "baselines are scored against it (PSNR, SSIM, ESSIM).")
        form.addRow("ground truth", self.gt_combo)
        lay.addLayout(form)

        lay.addWidget(self._references_box(
            "References (sharp images of similar material)", "a reference",
            "Check the image layers to use as references. Layers marked as references "
            f"(metadata['{ROLE_KEY}'] == 'reference', e.g. HR rescans) are checked for you.", 100,
            "A folder of HR reference images (tif, png, jpg, bmp); used together with the checked layers. Leave "
            "empty to use the layers only."))

        mbox = QGroupBox("Model")
        ml = QVBoxLayout(mbox)
        mrow, self.model_default, self.model_file_radio = radio_row(
            ("bundled default", "The super-resolution model shipped with matrestore "
                                "(matrestore/sr/models/default.safetensors)."),
            ("model file", "A model trained with `matrestore sr train` (a .safetensors file)."))
        ml.addLayout(mrow)
        ml.addLayout(self._model_file_row("The model file to use when 'model file' is selected.",
                                          "Choose a model file."))
        ml.addWidget(self._model_note_label("Whether the chosen model is available."))
        lay.addWidget(mbox)

        lay.addWidget(self._output_box("sr"))

        lay.addWidget(self._advanced_toggle("Show or hide the tiling, device and reference-selection options."))
        self.adv_box = QWidget()
        af = QFormLayout(self.adv_box)
        af.setContentsMargins(12, 0, 0, 0)
        self.options = ParamForm(EnhanceOptions, settings=self.settings)
        self.options.add_row("device", self._device_row(), after="batch")
        af.addRow(self.options)
        self.tile_spin, self.batch_spin, self.topk_spin, self.mode_combo, self.unc_spin = (
            self.options.control(n) for n in ("tile", "batch", "top_k", "mode", "uncertainty"))
        af.addRow(self._defaults_row("Set the model choice, the reference folder and the advanced options (tile, "
                                     "batch, device, top-k, stitching, uncertainty) back to their defaults. "
                                     "(They are remembered between sessions.)"))
        self.adv_box.setVisible(False)
        lay.addWidget(self.adv_box)

        self.invalid_note = self._unoffered_label()
        lay.addWidget(self.invalid_note)

        self._add_run_controls(
            lay, run=("Enhance", "Super-resolve the input in the background (the viewer stays usable); the result "
                                 "goes into the layer '<input>_sr', updated in place on later runs."),
            cancel_tip="Stop within about a second (between network layers); nothing is added or changed.",
            progress=("%v / %m tiles", "Tiles done of all tiles."),
            step_tip="The step being computed, time so far and the estimated time left.")

        self.table_box = QGroupBox("Against the ground truth")
        tl = QVBoxLayout(self.table_box)
        self.table = MetricsTable("method",
                                   "PSNR (dB, higher is better), SSIM and ESSIM (1 = identical) of the interpolation "
                                   "baselines and the TTSR result against the ground truth; the best value of each "
                                   "column is highlighted.")
        tl.addWidget(self.table)
        crow = QHBoxLayout()
        self.range_label = QLabel("")
        self.range_label.setWordWrap(True)
        self.range_label.setToolTip("The data range L the metrics use (the effective range of the ground truth).")
        self.copy_btn = QPushButton("Copy")
        self.copy_btn.setToolTip("Copy the table (tab-separated, full precision) to the clipboard, for a spreadsheet.")
        crow.addWidget(self.range_label, 1)
        crow.addWidget(self.copy_btn)
        tl.addLayout(crow)
        self.table_box.setVisible(False)
        lay.addWidget(self.table_box)
        lay.addStretch(1)

        self.copy_btn.clicked.connect(self.copy_table)
        self.table.copy_requested.connect(self.copy_table)
        self.model_default.toggled.connect(self._sync_model)
        self.input_combo.currentIndexChanged.connect(self._on_input)
        self.gt_combo.currentIndexChanged.connect(self._on_input)

    # ------------------------------------------------------------------ model
    def _sync_model(self, *_) -> None:
        from ..sr.modelio import DEFAULT_MODEL

        self._show_model_choice(DEFAULT_MODEL, "default model installed", "No default model is installed yet: choose "
                                "a model file trained with `matrestore sr train`.", describe_model_file)

    def _browse_model(self) -> None:
        path = self._ask_model_file("Super-resolution model")
        if path:
            self.set_model(path)

    # ------------------------------------------------------------------ layer pickers
    @staticmethod
    def _is_reference(layer) -> bool:
        return (layer.metadata or {}).get(ROLE_KEY) == "reference"

    @staticmethod
    def _is_output(layer) -> bool:
        md = (layer.metadata or {}).get(OUTPUT_KEY)
        return isinstance(md, dict) and md.get("made_by") == "enhance"

    def _refresh_layers(self, event=None) -> None:
        images = self._image_layers()
        inputs = [lyr for lyr in images if layer_problem(lyr, multiscale_ok=True) is None]
        valid = [lyr for lyr in images if layer_problem(lyr) is None]
        plain = [lyr for lyr in inputs if not self._is_reference(lyr) and not self._is_output(lyr)]
        active = self.viewer.layers.selection.active
        default = next((lyr for lyr in plain if same_layer(lyr, active)), None) or (
            min(plain, key=lambda l: np.prod(level0(l).shape)) if plain else None)
        if default is None and inputs:
            default = inputs[0]
        self.input_combo.fill(inputs, default)
        self.gt_combo.fill([None] + valid, None)  # "(none)" unless a ground truth is chosen
        self._show_unoffered([lyr for lyr in images if layer_problem(lyr, multiscale_ok=True) is not None])
        self._fill_refs()
        self.store_part.sync(self.input_layer(), 4)

    def _on_input(self, *_) -> None:
        self._fill_refs()
        self.store_part.sync(self.input_layer(), 4)

    def _fill_refs(self) -> None:
        inp, gt = self.input_layer(), self.gt_layer()
        out_name = f"{inp.name}_sr" if inp is not None else None
        rows = []
        for lyr in self._image_layers():
            why = layer_problem(lyr)
            if why is None and same_layer(lyr, inp):
                why = "the input"
            elif why is None and same_layer(lyr, gt):
                why = "the ground truth"  # a reference showing the scored field would flatter the result
            elif why is None and (lyr.name == out_name or self._is_output(lyr)):
                why = "a super-resolution result"
            rows.append((lyr, why, lyr.name + ("  (marked as reference)" if self._is_reference(lyr) else "")))
        self.ref_list.offer(rows, checked_by_default=self._is_reference)

    def input_layer(self):
        return self.input_combo.layer()

    def gt_layer(self):
        return self.gt_combo.layer()

    def reference_layers(self) -> list:
        """The checked reference layers, in list order."""
        return self.ref_list.checked_layers()

    def set_references(self, names) -> None:
        """Check exactly the reference layers named in ``names`` (for scripts and tests)."""
        self.ref_list.set_checked(names)

    # ------------------------------------------------------------------ running
    def _collect(self) -> dict:
        """Snapshot of the inputs (layer data objects, names, geometry, options) or InputError."""
        inp = self.input_layer()
        if inp is None:
            raise InputError("open or pick a 2-D greyscale image layer to enhance.")
        if layer_problem(inp, multiscale_ok=True):
            raise InputError(f"input '{inp.name}': {layer_problem(inp, multiscale_ok=True)}.")
        h, w = (int(n) for n in level0(inp).shape[-2:])
        if min(h, w) < MIN_SIZE:
            raise InputError(f"input '{inp.name}' is {h}×{w} px: too small to enhance "
                             f"(at least {MIN_SIZE} px a side).")
        refs = self.reference_layers()
        folder = self.ref_folder.text().strip()
        if not refs and not folder:
            raise InputError("no references: check at least one reference image layer or choose a folder of "
                             "high-resolution reference images.")
        if folder and not Path(folder).expanduser().is_dir():
            raise InputError(f"reference folder not found: {folder}")
        gt = self.gt_layer()
        if same_layer(gt, inp):
            raise InputError("the input and the ground truth are the same layer; pick two different layers.")
        if gt is not None and layer_problem(gt):
            raise InputError(f"ground truth '{gt.name}': {layer_problem(gt)}.")
        out_name = f"{inp.name}_sr"
        inputs = [inp, *refs] + ([gt] if gt is not None else [])
        if any(lyr.name == out_name for lyr in inputs):
            raise InputError(f"the output layer '{out_name}' would replace an input layer; rename that input.")
        spec = self.model_spec()
        opts = self.enhance_options()
        use_store, store, overwrite = self.store_part.values()
        if use_store:
            if gt is not None:
                raise InputError("scoring against a ground truth needs the result in memory: choose '(none)' as "
                                 "ground truth, or untick 'write to a Zarr store'.")
            if opts.uncertainty:
                raise InputError("the uncertainty map is not available for Zarr-store outputs; set it to off.")
            if opts.mode != "fast":
                raise InputError("Zarr-store outputs use the fast stitching mode; choose it in the advanced options.")
            check_not_input_store(inp.metadata, store)
        sources = [lyr.data for lyr in refs] + ([str(Path(folder).expanduser())] if folder else [])
        ref_names = [lyr.name for lyr in refs] + ([f"folder {folder}"] if folder else [])
        params = {"tile": opts.tile, "batch": opts.batch, "device": self.device(), "mode": opts.mode,
                  "top_k": opts.top_k, "uncertainty": opts.uncertainty or 0}
        return {"input": inp, "name": inp.name, "out_name": out_name, "gt": gt, "gt_name": gt.name if gt else None,
                "scale": tuple(float(v) for v in inp.scale[-2:]), "translate": tuple(float(v) for v in inp.translate[-2:]),
                "metadata": dict(inp.metadata or {}), "contrast_limits": tuple(inp.contrast_limits),
                "units": spatial_units(inp),
                "sources": sources, "ref_names": ref_names, "model": spec, "params": params,
                "store": store, "overwrite": overwrite, "chunk": self.store_part.block_side()}

    def enhance_options(self) -> EnhanceOptions:
        """The options as the engine takes them, checked by the engine (InputError names a bad one)."""
        return EnhanceOptions(**self.options.values()).check()

    def run(self):
        """Start enhancing in a worker thread (the result arrives in :meth:`_show_result`)."""
        job = self._new_job()
        if job is None:
            return None
        p = job["params"]
        if job["store"] is not None:
            self._follow_store(lambda path, job=job: self._store_layer(job, path))
            return self.runner.start(
                enhance_store_job, level0(job["input"]), job["store"], references=job["sources"], model=job["model"],
                cache=self.model_cache, tile=p["tile"], batch=p["batch"], device=p["device"], top_k=p["top_k"],
                overwrite=job["overwrite"], chunk=job["chunk"], name=job["name"], on_yielded=self._on_store_record,
                on_returned=self._show_store_result, message="starting…")
        return self.runner.start(
            enhance_job, job["input"].data, references=job["sources"], model=job["model"], cache=self.model_cache,
            tile=p["tile"], batch=p["batch"], device=p["device"], mode=p["mode"], top_k=p["top_k"],
            gt=None if job["gt"] is None else job["gt"].data, name=job["name"], uncertainty=p["uncertainty"],
            on_returned=self._show_result, message="starting…")

    # ------------------------------------------------------------------ results (GUI thread)
    def _result_metadata(self, job: dict, res: dict) -> dict:
        s = res["scale"]
        src = job["metadata"]
        md = {k: src[k] for k in ("unit",) if k in src}
        for k in ("pixel_size", "pixel_size_nm"):
            if isinstance(src.get(k), (int, float)) and not isinstance(src.get(k), bool):
                md[k] = src[k] / s
        info = {
            "made_by": "enhance", "source": job["name"], "scale_factor": s,
            "model": job["model"], "model_meta": res["model_meta"],
            "references": job["ref_names"], "reference_bank": res["references"],
            "parameters": {**job["params"], "tile_used": res.get("tile"), "batch_used": res.get("batch")},
            "device": res["device"], "elapsed_s": round(float(res["elapsed_s"]), 3), "tiles": res.get("tiles"),
        }
        if res.get("metrics"):
            info.update(ground_truth=job["gt_name"], metrics={k: dict(v) for k, v in res["metrics"].items()},
                        data_range=res["data_range"])
        md[OUTPUT_KEY] = info
        return md

    def _show_result(self, res) -> None:
        job = self._job
        if res is None or job is None:
            return
        s = res["scale"]
        scale, translate = upsampled_geometry(job["scale"], job["translate"], s)
        md = self._result_metadata(job, res)
        layer = self._put_layer(job["out_name"], res["image"], scale, translate, md, job["contrast_limits"],
                                job["units"])
        if res.get("uncertainty") is not None:
            umd = {k: v for k, v in md.items() if k != OUTPUT_KEY}
            umd[OUTPUT_KEY] = {"made_by": "enhance (uncertainty)", "source": job["name"],
                               "what": f"standard deviation of the enhancement over {job['params']['uncertainty']} "
                                       "flips/rotations of the input (test-time augmentation), intensity units"}
            u = res["uncertainty"]
            ulayer = self._put_layer(f"{job['out_name']}_uncertainty", u, scale, translate, umd,
                                     (0.0, float(np.percentile(u, 99.5)) or 1.0), job["units"])
            ulayer.colormap = "inferno"
            ulayer.visible = False
        h, w = res["image"].shape
        text = (f"Done: '{layer.name}' ({h}×{w} px, ×{s}) in {res['elapsed_s']:.1f} s on {res['device']}, "
                f"{len(job['ref_names'])} reference source(s).")
        self.last_results = {"layer": layer.name, "scale": s, "elapsed_s": res["elapsed_s"], "device": res["device"],
                             "metrics": res["metrics"], "ground_truth": job["gt_name"], "data_range": res["data_range"]}
        if res["metrics"]:
            self.table.fill(res["metrics"])
            self.range_label.setText(f"'{job['gt_name']}', data range L = {res['data_range']:g}")
            self.table_box.setVisible(True)
            best = max(res["metrics"], key=lambda k: res["metrics"][k]["essim"])
            text += f" Best ESSIM: {best}."
        else:
            self.table.clear_scores()
            self.table_box.setVisible(False)
        self.status.setStyleSheet("")
        self.status.setText(text)

    def _store_layer(self, job: dict, path, res: dict | None = None):
        """Show the store at ``path`` as the layer '<input>_sr' (multiscale, explicit contrast limits)."""
        scale, translate = upsampled_geometry(job["scale"], job["translate"], 4)
        md = store_metadata(job["metadata"], 4)
        info = {"made_by": "enhance", "source": job["name"], "scale_factor": 4, "store": str(path),
                "model": job["model"], "references": job["ref_names"], "parameters": dict(job["params"])}
        if res is not None:
            info.update(model_meta=res["model_meta"], device=res["device"], elapsed_s=round(float(res["elapsed_s"]), 3),
                        blocks=res.get("blocks"))
        md[OUTPUT_KEY] = info
        md["store"] = str(path)
        return show_store(self.viewer, job["out_name"], path, scale, translate, md, units=job["units"],
                          contrast_limits=job["contrast_limits"])

    def _show_store_result(self, res) -> None:
        job = self._job
        if res is None or job is None:
            return
        view = self._store_layer(job, res["store"], res)  # the final levels (coarser ones may have been added)
        shape = view.layer.data[0].shape if view.layer.multiscale else view.layer.data.shape
        self.last_results = {"layer": view.layer.name, "scale": 4, "elapsed_s": res["elapsed_s"],
                             "device": res["device"], "metrics": None, "store": res["store"]}
        self.table.clear_scores()
        self.table_box.setVisible(False)
        self.status.setStyleSheet("")
        self.status.setText(f"Done: '{view.layer.name}' ({shape[0]}×{shape[1]} px, ×4) written to "
                            f"{Path(res['store']).name} in {res['elapsed_s']:.1f} s on {res['device']}.")

    def _put_layer(self, name, data, scale, translate, metadata, contrast_limits, units=None):
        """Update the layer called ``name`` in place (second run) or add it."""
        return put_image(self.viewer, name, data, scale, translate, metadata, units=units,
                         contrast_limits=contrast_limits, colormap="gray")

    # ------------------------------------------------------------------ export
    def table_csv(self) -> str:
        """CSV of the last ground-truth table (``method,psnr,ssim,essim``, full precision)."""
        if not self.last_results or not self.last_results.get("metrics"):
            raise InputError("nothing to copy yet: enhance with a ground-truth layer chosen first.")
        return self.table.csv()

    def copy_table(self) -> None:
        copy_table(self.table, self.runner, self.status,
                   "nothing to copy yet: enhance with a ground-truth layer chosen first.")
