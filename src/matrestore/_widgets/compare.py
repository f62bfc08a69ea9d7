"""Compare dock widget: PSNR / SSIM / ESSIM of restored images against a ground truth.

Thin over :mod:`matrestore.evaluation` (the engine behind ``matrestore compare`` too, so the widget
and the CLI give the same numbers): the widget collects layers and parameters, runs
:func:`compare_job` in a worker thread (:class:`~matrestore._widgets._worker.TaskRunner`) and shows
what comes back: a table, the three baseline layers of an LR input, and optionally an SSIM / ESSIM
map layer. Input layers are only read, never changed.

Layer pickers offer 2-D single-channel image layers. Other image layers (RGB, 3-D stacks,
multiscale) stay visible in the candidate list, greyed out with the reason, and are named in a note
under the pickers. The options (mode, data range, map) are remembered between sessions; "Restore
defaults" sets them back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qtpy.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
)

from .. import evaluation
from .. import metrics as _metrics
from .._layerdata import OUTPUT_KEY
from .._validate import InputError, as_2d_image
from ..baselines import METHODS, upsampled_geometry
from ._layers import (LayerCheckList, LayerCombo, LayerDock, layer_key, layer_problem, put_image, same_layer,
                      spatial_units)
from .._paths import atomic_write_text
from ..progress import is_cancelled
from ._table import MetricsTable, copy_table
from ._worker import ERROR_STYLE, State

__all__ = ["CompareWidget", "compare_job", "layer_problem"]

MAPS = {"none": None, "SSIM map": "ssim", "ESSIM map": "essim"}
BEST = "best candidate"


# ---------------------------------------------------------------------------------------- engine calls
def compare_job(gt, *, lr=None, candidates=None, scale: int = 4, data_range=None, map_metric=None,
                map_of=None, cancel=None):
    """The engine calls behind the widget, one step at a time (a generator; no Qt, no layers).

    With ``lr``: :func:`evaluation.evaluate_baselines` once per baseline method (so progress and
    cancel come between methods; the numbers are those of one call with all methods). Otherwise
    :func:`evaluation.compare_images` once per candidate (``{name: array}``). ``map_metric``
    ("ssim" / "essim") adds the full map of the candidate ``map_of`` (None: the best one in that
    metric). Yields ``{"step", "total", "message"}``; returns ``None`` when cancelled, else
    ``{"mode", "metrics", "images", "data_range", "scale", "shape", "map"}``.
    """
    stopped = lambda: is_cancelled(cancel)  # noqa: E731
    gt = np.asarray(gt)
    scores: dict = {}
    images: dict = {}
    if lr is not None:
        lr = np.asarray(lr)
        total = len(METHODS) + bool(map_metric)
        ref, L = gt, data_range
        for i, method in enumerate(METHODS):
            if stopped():
                return None
            yield {"step": i, "total": total, "message": f"{method}: upsampling ×{scale} and scoring…"}
            res = evaluation.evaluate_baselines(gt, lr, scale, methods=(method,), data_range=data_range)
            scores[method] = res["metrics"][method]
            images[method] = res["images"][method]
            ref, L = res["hr"], res["data_range"]
        mode = "lr"
    else:
        if not candidates:
            raise InputError("check at least one candidate layer to compare with the ground truth.")
        total = len(candidates) + bool(map_metric)
        ref = as_2d_image(gt, "ground truth")
        L = _metrics.effective_data_range(ref) if data_range is None else data_range
        for i, (name, img) in enumerate(candidates.items()):
            if stopped():
                return None
            yield {"step": i, "total": total, "message": f"{name}: scoring…"}
            img = np.asarray(img)
            scores.update(evaluation.compare_images(ref, {name: img}, data_range=L))
            images[name] = img
        mode = "candidates"
    result_map = None
    if map_metric:
        if stopped():
            return None
        name = map_of if map_of in scores else max(scores, key=lambda k: scores[k][map_metric])
        yield {"step": total - 1, "total": total, "message": f"{map_metric.upper()} map of {name}…"}
        func = _metrics.ssim if map_metric == "ssim" else _metrics.essim
        value, full = func(ref, images[name], data_range=L, full=True)
        result_map = {"metric": map_metric, "candidate": name, "value": value, "data": full.astype(np.float32)}
    return {"mode": mode, "metrics": scores, "images": images if mode == "lr" else {}, "data_range": L,
            "scale": scale, "shape": tuple(ref.shape), "map": result_map}


# ---------------------------------------------------------------------------------------- layer helpers
def _shape(layer) -> tuple:
    return tuple(int(n) for n in layer.data.shape)


def _infer_factor(gt, lr) -> tuple[int | None, str]:
    """Scale factor from the layers' scale ratio, else from their sizes (None when neither says)."""
    r = np.asarray(lr.scale[-2:], float) / np.asarray(gt.scale[-2:], float)
    f = int(round(r[0]))
    if f >= 2 and np.allclose(r, f, rtol=1e-3):
        return f, "layer scales"
    (gh, gw), (lh, lw) = _shape(gt), _shape(lr)
    if lh and lw:
        f = gh // lh
        if f >= 2 and gw // lw == f and gh - f * lh < f and gw - f * lw < f:
            return f, "image sizes"
    return None, ""


# ---------------------------------------------------------------------------------------- widget
class CompareWidget(LayerDock):
    """Score candidate images (or the interpolation baselines of an LR image) against a ground truth."""

    settings_group = "compare"

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self.last_results: dict | None = None
        self._inferred_for: tuple | None = None
        self._job: dict | None = None
        self._build()
        self._remember({"mode_lr": self.mode_lr, "mode_candidates": self.mode_cand, "scale": self.scale_spin,
                        "range_auto": self.range_auto, "range": self.range_spin, "map": self.map_combo})
        self._start_runner(self.progress_bar, self.progress_label, self.status)
        self._watch_layers()
        self._sync_mode()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        form = QFormLayout()
        self.gt_combo = LayerCombo("Ground truth: the high-resolution (or clean) image the others are scored against.")
        form.addRow("ground truth", self.gt_combo)
        lay.addLayout(form)

        mode_row = QHBoxLayout()
        self.mode_lr = QRadioButton("LR input → baselines")
        self.mode_lr.setToolTip("Upsample one low-resolution layer with nearest, bicubic and Lanczos "
                                "interpolation, add the results as layers and score them.")
        self.mode_cand = QRadioButton("candidate layers")
        self.mode_cand.setToolTip("Score layers you already have (e.g. a network's output) against the ground truth.")
        self.mode_group = QButtonGroup(self)
        self.mode_group.addButton(self.mode_lr)
        self.mode_group.addButton(self.mode_cand)
        self.mode_lr.setChecked(True)
        mode_row.addWidget(self.mode_lr)
        mode_row.addWidget(self.mode_cand)
        mode_row.addStretch(1)
        lay.addLayout(mode_row)

        self.lr_box = QGroupBox("Low-resolution input")
        lf = QFormLayout(self.lr_box)
        self.lr_combo = LayerCombo("The low-resolution image; its size × the scale factor must match the ground truth.")
        self.scale_spin = QSpinBox(minimum=1, maximum=32, value=4)
        self.scale_spin.setPrefix("×")
        self.scale_spin.setToolTip("Integer scale factor between the LR layer and the ground truth. Inferred from "
                                   "the layers' scale ratio (or their sizes) when the layers are picked.")
        self.scale_hint = QLabel("")
        self.scale_hint.setToolTip("Where the scale factor came from.")
        srow = QHBoxLayout()
        srow.addWidget(self.scale_spin)
        srow.addWidget(self.scale_hint, 1)
        lf.addRow("LR layer", self.lr_combo)
        lf.addRow("scale factor", srow)
        lay.addWidget(self.lr_box)

        self.cand_box = QGroupBox("Candidates (same shape as the ground truth)")
        cf = QVBoxLayout(self.cand_box)
        self.cand_list = LayerCheckList("a candidate", "Check the layers to score. Greyed-out layers cannot be "
                                        "compared (reason shown).", max_height=110)
        cf.addWidget(self.cand_list)
        lay.addWidget(self.cand_box)

        self.invalid_note = self._unoffered_label()
        lay.addWidget(self.invalid_note)

        opts = QFormLayout()
        rrow = QHBoxLayout()
        self.range_auto = QCheckBox("auto")
        self.range_auto.setChecked(True)
        self.range_auto.setToolTip("Data range L of PSNR/SSIM/ESSIM: the effective range of the ground truth\n"
                                   "(1 for floats in [0, 1]; 255 for 8-bit, 4095 for 12-bit data, …).\n"
                                   "Uncheck to enter L yourself.")
        self.range_spin = QDoubleSpinBox(minimum=1e-6, maximum=1e12, value=255.0, decimals=4)
        self.range_spin.setToolTip("Data range L used when 'auto' is unchecked (maximum possible pixel value "
                                   "minus minimum).")
        rrow.addWidget(self.range_auto)
        rrow.addWidget(self.range_spin, 1)
        opts.addRow("data range", rrow)
        mrow = QHBoxLayout()
        self.map_combo = QComboBox()
        self.map_combo.addItems(list(MAPS))
        self.map_combo.setToolTip("Also add a per-pixel similarity map layer ('<ground truth>_ssim_map' or "
                                  "'_essim_map', 0 = dissimilar, 1 = identical), aligned with the ground truth.")
        self.map_of = QComboBox()
        self.map_of.setToolTip("Which candidate the map is made for (default: the best one in that metric).")
        mrow.addWidget(self.map_combo)
        mrow.addWidget(QLabel("of"))
        mrow.addWidget(self.map_of, 1)
        opts.addRow("map layer", mrow)
        lay.addLayout(opts)
        lay.addLayout(self._defaults_row("Set the mode, scale factor, data range and map layer options back to "
                                         "their defaults. (They are remembered between sessions.)"))

        self._add_run_controls(
            lay, run=("Compare", "Compute PSNR, SSIM and ESSIM (in the background; the viewer stays usable)."),
            cancel_tip="Stop the running comparison; nothing is added or changed.",
            progress=("%v / %m", "Progress of the running comparison."), step_tip="The step being computed.")

        self.table = MetricsTable("candidate",
                                   "PSNR (dB, higher is better), SSIM and ESSIM (1 = identical) of each candidate; "
                                   "the best value of each column is highlighted.")
        lay.addWidget(self.table)
        self.range_label = QLabel("")
        self.range_label.setWordWrap(True)
        self.range_label.setToolTip("The data range L the metrics use (PSNR = 10 log10(L² / MSE)).")
        lay.addWidget(self.range_label)
        crow = QHBoxLayout()
        self.copy_btn = QPushButton("Copy")
        self.copy_btn.setToolTip("Copy the table (tab-separated, full precision) to the clipboard, for a "
                                 "spreadsheet.")
        self.save_btn = QPushButton("Save CSV…")
        self.save_btn.setToolTip("Save the table as CSV (method,psnr,ssim,essim; full precision), chosen in a file dialog.")
        crow.addWidget(self.copy_btn)
        crow.addWidget(self.save_btn)
        lay.addLayout(crow)
        lay.addStretch(1)

        self.copy_btn.clicked.connect(self.copy_table)
        self.table.copy_requested.connect(self.copy_table)
        self.save_btn.clicked.connect(self._save_dialog)
        self.mode_lr.toggled.connect(self._sync_mode)
        self.gt_combo.currentIndexChanged.connect(self._on_selection)
        self.lr_combo.currentIndexChanged.connect(self._on_selection)
        self.cand_list.itemChanged.connect(self._sync_map)
        self.range_auto.toggled.connect(self._sync_range)
        self.map_combo.currentIndexChanged.connect(self._sync_map)

    # ------------------------------------------------------------------ layer pickers
    def _refresh_layers(self, event=None) -> None:
        images = self._image_layers()
        valid = [lyr for lyr in images if layer_problem(lyr) is None]
        by_size = sorted(valid, key=lambda lyr: np.prod(_shape(lyr)))
        gt_default = by_size[-1] if by_size else None
        lr_default = next((lyr for lyr in by_size if not same_layer(lyr, gt_default)), None)
        self.gt_combo.fill(valid, gt_default)
        self.lr_combo.fill(valid, lr_default)
        self._show_unoffered(images)
        self._on_selection()

    def _fill_candidates(self) -> None:
        gt = self.gt_layer()
        rows = []
        for lyr in self._image_layers():
            why = layer_problem(lyr) or ("ground truth" if same_layer(lyr, gt) else None)
            rows.append((lyr, why, lyr.name))
        self.cand_list.offer(rows)
        self._sync_map()

    def _on_selection(self, *_) -> None:
        self._fill_candidates()
        gt, lr = self.gt_layer(), self.lr_layer()
        key = (layer_key(gt), layer_key(lr))
        if gt is not None and lr is not None and not same_layer(gt, lr) and key != self._inferred_for:
            self._inferred_for = key
            factor, source = _infer_factor(gt, lr)
            if factor is not None:
                self.scale_spin.blockSignals(True)  # inferred from the layers: not remembered as the user's choice
                self.scale_spin.setValue(factor)
                self.scale_spin.blockSignals(False)
                self.scale_hint.setText(f"from the {source}")
            else:
                self.scale_hint.setText("")
        self._sync_range()

    def gt_layer(self):
        return self.gt_combo.layer()

    def lr_layer(self):
        return self.lr_combo.layer()

    def candidate_layers(self) -> list:
        """The checked candidate layers, in list order."""
        return self.cand_list.checked_layers()

    def set_candidates(self, names) -> None:
        """Check exactly the candidate layers named in ``names`` (for scripts and tests)."""
        self.cand_list.set_checked(names)

    # ------------------------------------------------------------------ options
    def _sync_mode(self, *_) -> None:
        lr_mode = self.mode_lr.isChecked()
        self.lr_box.setVisible(lr_mode)
        self.cand_box.setVisible(not lr_mode)
        self._sync_map()

    def _sync_map(self, *_) -> None:
        names = list(METHODS) if self.mode_lr.isChecked() else [lyr.name for lyr in self.candidate_layers()]
        keep = self.map_of.currentText()
        self.map_of.blockSignals(True)
        self.map_of.clear()
        self.map_of.addItems([BEST] + names)
        self.map_of.setCurrentText(keep if keep in names else BEST)
        self.map_of.blockSignals(False)
        self.map_of.setEnabled(MAPS[self.map_combo.currentText()] is not None)

    def _sync_range(self, *_) -> None:
        auto = self.range_auto.isChecked()
        self.range_spin.setEnabled(not auto)
        if not auto:
            self.range_label.setText(f"Data range L = {self.range_spin.value():g} (set by hand).")
            return
        gt = self.gt_layer()
        text = "Data range L: auto, the effective range of the ground truth"
        if gt is not None and isinstance(gt.data, np.ndarray) and gt.data.size <= 16_000_000 and layer_problem(gt) is None:
            value = _metrics.effective_data_range(gt.data)
            text += f" ('{gt.name}': L = {value:g})"
            self.range_spin.blockSignals(True)  # shows the value in use; not remembered as the user's choice
            self.range_spin.setValue(value)
            self.range_spin.blockSignals(False)
        self.range_label.setText(text + ".")

    def _follow_state(self, state) -> None:
        super()._follow_state(state)
        if state is State.FAILED:  # no table of an earlier run under the error
            self.table.clear_scores()
            self.last_results = None

    def data_range(self):
        """The data range to use: None for auto (the engine's effective range of the ground truth)."""
        return None if self.range_auto.isChecked() else float(self.range_spin.value())

    # ------------------------------------------------------------------ running
    def _collect(self) -> dict:
        """Snapshot of the inputs (layer data objects, names, geometry) or InputError."""
        gt = self.gt_layer()
        if gt is None:
            raise InputError("pick the ground-truth layer (a 2-D greyscale image layer).")
        if layer_problem(gt):
            raise InputError(f"ground truth '{gt.name}': {layer_problem(gt)}.")
        job = {"gt": gt, "gt_name": gt.name, "gt_scale": tuple(gt.scale[-2:]), "gt_translate": tuple(gt.translate[-2:]),
               "map_metric": MAPS[self.map_combo.currentText()], "data_range": self.data_range()}
        map_of = self.map_of.currentText()
        job["map_of"] = None if map_of == BEST else map_of
        if self.mode_lr.isChecked():
            lr = self.lr_layer()
            if lr is None:
                raise InputError("pick the low-resolution layer to upsample.")
            if same_layer(lr, gt):
                raise InputError("the LR layer and the ground truth are the same layer; pick two different layers.")
            if layer_problem(lr):
                raise InputError(f"LR layer '{lr.name}': {layer_problem(lr)}.")
            factor = int(self.scale_spin.value())
            scale, translate = upsampled_geometry(lr.scale[-2:], lr.translate[-2:], factor)
            job.update(mode="lr", lr=lr, lr_name=lr.name, factor=factor, out_scale=scale, out_translate=translate,
                       outputs=[f"{lr.name}_{m}" for m in METHODS], inputs=[gt, lr])
        else:
            cands = self.candidate_layers()
            if not cands:
                raise InputError("check at least one candidate layer to compare with the ground truth.")
            for c in cands:
                if layer_problem(c):
                    raise InputError(f"candidate '{c.name}': {layer_problem(c)}.")
            job.update(mode="candidates", candidates=cands, outputs=[], inputs=[gt, *cands])
        if job["map_metric"]:
            job["map_name"] = f"{gt.name}_{job['map_metric']}_map"
            job["outputs"].append(job["map_name"])
        taken = {lyr.name for lyr in job["inputs"]}
        clash = [n for n in job["outputs"] if n in taken]
        if clash:
            raise InputError(f"the output layer '{clash[0]}' would replace an input layer; rename that input.")
        return job

    def run(self) -> None:
        """Start the comparison in a worker thread (results arrive in :meth:`_show_results`)."""
        job = self._new_job()
        if job is None:
            return
        kwargs = dict(data_range=job["data_range"], map_metric=job["map_metric"], map_of=job["map_of"])
        if job["mode"] == "lr":
            kwargs.update(lr=job["lr"].data, scale=job["factor"])
        else:
            kwargs.update(candidates={c.name: c.data for c in job["candidates"]})
        self.runner.start(compare_job, job["gt"].data, on_returned=self._show_results, message="starting…", **kwargs)

    # ------------------------------------------------------------------ results (GUI thread)
    def _show_results(self, res) -> None:
        job = self._job
        if res is None or job is None:
            return
        scores = res["metrics"]
        if job["mode"] == "lr":
            lr = job["lr"]
            for method, name in zip(METHODS, job["outputs"]):
                md = {k: lr.metadata[k] for k in ("unit",) if k in lr.metadata}
                for k in ("pixel_size", "pixel_size_nm"):
                    if isinstance(lr.metadata.get(k), (int, float)):
                        md[k] = lr.metadata[k] / job["factor"]
                md[OUTPUT_KEY] = {"made_by": "compare", "method": method, "source": job["lr_name"],
                                  "scale_factor": job["factor"], "ground_truth": job["gt_name"],
                                  "metrics": dict(scores[method]), "data_range": res["data_range"]}
                self._put_layer(name, res["images"][method], job["out_scale"], job["out_translate"], md,
                                contrast_limits=tuple(lr.contrast_limits), colormap="gray", units=spatial_units(lr))
        if res["map"] is not None:
            m = res["map"]
            md = {OUTPUT_KEY: {"made_by": "compare", "metric": m["metric"], "candidate": m["candidate"],
                               "mean": m["value"], "ground_truth": job["gt_name"], "data_range": res["data_range"]}}
            layer = self._put_layer(job["map_name"], m["data"], job["gt_scale"], job["gt_translate"], md,
                                    contrast_limits=(0.0, 1.0), colormap="magma", units=spatial_units(job["gt"]))
            layer.contrast_limits = (0.0, 1.0)
        self.last_results = {
            "mode": job["mode"], "ground_truth": job["gt_name"], "metrics": scores, "data_range": res["data_range"],
            "scale": res["scale"] if job["mode"] == "lr" else None, "shape": res["shape"],
            "layers": list(job["outputs"]),
            "map": None if res["map"] is None else {k: v for k, v in res["map"].items() if k != "data"},
        }
        self.table.fill(scores)
        auto = job["data_range"] is None
        self.range_label.setText(f"Data range L = {res['data_range']:g} "
                                 + (f"(auto: effective range of '{job['gt_name']}')." if auto else "(set by hand)."))
        best = max(scores, key=lambda k: scores[k]["essim"])
        h, w = res["shape"]
        what = f"{len(scores)} baseline(s) of '{job['lr_name']}' ×{job['factor']}" if job["mode"] == "lr" \
            else f"{len(scores)} candidate(s)"
        self.status.setStyleSheet("")
        self.status.setText(f"Done: {what} against '{job['gt_name']}' ({h}×{w} px). Best ESSIM: {best}.")

    def _put_layer(self, name, data, scale, translate, metadata, contrast_limits, colormap, units=None):
        """Update the layer called ``name`` in place (second run) or add it."""
        return put_image(self.viewer, name, data, scale, translate, metadata, units=units,
                         contrast_limits=contrast_limits, colormap=colormap)

    # ------------------------------------------------------------------ export
    def table_csv(self) -> str:
        """CSV of the last results (``method,psnr,ssim,essim``, full precision), as the CLI writes it."""
        if not self.last_results:
            raise InputError("nothing to export yet: run a comparison first.")
        return self.table.csv()

    def copy_table(self) -> None:
        copy_table(self.table, self.runner, self.status, "nothing to copy yet: run a comparison first.")

    def save_csv(self, path) -> Path:
        """Write the table as CSV to ``path`` and return it."""
        path = atomic_write_text(Path(path), self.table_csv())
        self.status.setStyleSheet("")
        self.status.setText(f"Saved {path}")
        return path

    def _save_dialog(self) -> None:
        if not self.last_results:
            self.runner.fail(InputError("nothing to save yet: run a comparison first."))
            return
        default = f"{self.last_results['ground_truth']}_compare.csv"
        path, _ = QFileDialog.getSaveFileName(self, "Save comparison table", default, "CSV (*.csv)")
        if path:
            try:
                self.save_csv(path)
            except OSError as exc:
                self.status.setStyleSheet(ERROR_STYLE)
                self.status.setText(f"could not save {path}: {exc}")
