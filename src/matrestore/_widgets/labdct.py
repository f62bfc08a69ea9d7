"""LabDCT spot cleaning dock widget ("LabDCT: clean spots"): the network or the standard routine on a
projection stack layer (frames × rows × cols, or one 2-D frame).

Thin over the engine :mod:`matrestore.labdct` (the same calls as ``matrestore labdct clean|routine``):

- **network**: :func:`labdct.clean_iter` (the shipped default model or a model file, cached by file and
  mtime), then :func:`labdct.segment` at the threshold (5 of 255 by default);
- **standard routine**: :func:`labdct.standard_routine_iter` with :class:`labdct.RoutineOptions` (rolling
  median window, beam stop, the four LoG parameters), previewed live on the current frame
  (:func:`labdct.routine.routine_preview`, debounced, in a worker) in the layer ``<input>_preview``.

Results: ``<input>_cleaned`` (the network output in [0, 1], or the median-subtracted frames of the
routine, clipped at 0), the Labels layer ``<input>_spots`` (spots numbered per frame, as in the table) and
a sortable spot table (frame, label, ω when the layer's metadata has it, centroid, area, max / mean
intensity); a click on a row jumps to its frame and centres the view on the spot. Export: the cleaned
frames and the binary spot masks as a TIFF series into a folder (for grain-reconstruction software), the
table as CSV, through :class:`matrestore._paths.Outputs` (never an input, atomic writes). Input layers are
never modified; a second run updates the output layers in place.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from qtpy.QtCore import QAbstractTableModel, QModelIndex, Qt, QTimer
from qtpy.QtWidgets import (QAbstractItemView, QCheckBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGroupBox,
                            QHBoxLayout, QHeaderView, QLabel, QPushButton, QTableView, QVBoxLayout)

from .._layerdata import OUTPUT_KEY, made_by
from .._validate import InputError
from ..progress import Kind, eta_text, is_cancelled
from ._layers import LayerCombo, LayerDock, put_image, put_labels, radio_row, same_layer, spatial_units
from ._store import StoreRunMixin
from ._model_choice import ModelDeviceMixin, load_cached
from ._params import ParamForm
from ._worker import State, TaskRunner, relay

__all__ = ["CleanWidget", "SpotTableModel", "clean_job", "clean_store_job", "stack_store_reason", "preview_job", "stack_problem", "MIN_SIZE", "MADE_BY", "TABLE_COLUMNS"]

MIN_SIZE = 8  # px a side: smaller frames are refused with a message
MADE_BY = "labdct clean"
DEFAULT = "default"
PREVIEW_MS = 300  # debounce of the live routine preview
TABLE_COLUMNS = [("frame", "frame"), ("label", "label"), ("omega", "ω (°)"), ("centroid_row", "row"),
                 ("centroid_col", "col"), ("area", "area (px)"), ("max_intensity", "max"), ("mean_intensity", "mean")]


def stack_store_reason(layer) -> str | None:
    """Why a stack's network clean must go to a Zarr store (its float32 output would exceed
    ``_store.STORE_BYTES``), else None."""
    from . import _store

    if layer is None or getattr(layer, "ndim", 0) != 3:
        return None
    n, h, w = (int(v) for v in layer.data.shape)
    nbytes = n * h * w * 4
    if nbytes > _store.STORE_BYTES:
        return f"the cleaned stack would be {n}×{h}×{w} float32 ({nbytes / 2**30:.1f} GiB)"
    return None


def clean_store_job(data, path, *, method="network", model=DEFAULT, cache=None, threshold=None, routine=None,
                    omegas=None, device=None, chunk=None, overwrite=False, name="input", cancel=None):
    """The out-of-core clean behind the widget (a generator; no Qt): :func:`labdct.lazy.clean_to_zarr_iter`
    (``method="network"``) or :func:`labdct.lazy.routine_to_zarr_iter` (``"routine"``, options ``routine``: a
    :class:`RoutineOptions`; a first record carries ``contrast_limits`` for its frames, which are in counts)
    of the stack ``data`` (numpy, dask or Zarr, read frame by frame) into ``path``,
    then the spot table from the stored masks. Its ``phase="store"`` record lets the widget show the
    store as it fills. Returns ``{"store", "rows", "method", "model_meta", "device", "params", "n_frames",
    "elapsed_s"}`` (``None`` when cancelled: the store resumes on the next run)."""
    from .. import device as _device
    from ..labdct.infer import DEFAULT_THRESHOLD
    from ..labdct.lazy import clean_to_zarr_iter, open_frames, routine_to_zarr_iter, store_spot_table
    from ..labdct.routine import RoutineOptions, window_indices

    shape = tuple(int(n) for n in np.shape(data))
    if len(shape) != 3:
        raise InputError(f"input '{name}': shape {shape}; a Zarr store output needs a stack (frames × rows × cols).")
    if method not in ("network", "routine"):
        raise InputError(f"method must be 'network' or 'routine', got {method!r}.")
    st = open_frames(_frames(data), name=f"input '{name}'",
                     omegas=omegas if omegas is not None and len(omegas) == shape[0] else None)
    t0 = time.perf_counter()

    def with_eta(rec: dict) -> dict:
        if rec.get("kind") == Kind.STEP and rec.get("phase") == "blocks" and rec.get("total"):
            return {**rec, "message": eta_text(rec["step"], rec["total"], rec.get("elapsed_s"), "block")}
        return rec

    if method == "network":
        thr = DEFAULT_THRESHOLD if threshold is None else float(threshold)
        cache = {} if cache is None else cache
        yield {"message": "loading the model…"}
        net, key, _ = _load_model(model, cache)
        dev = _device.pick_device(device)
        gen = clean_to_zarr_iter(st, path, net, chunk=chunk, threshold=thr, overwrite=overwrite, cancel=cancel,
                                 device=dev, name=f"{name}_cleaned")
        model_meta = _model_meta(net)
        params, dev_text = {"threshold": thr, "model": str(model)}, _device.describe(dev)
    else:
        opts = (routine or RoutineOptions()).check()  # too few frames for the window: refused by the engine
        # display limits for frames in counts: frame 0 minus the median of its window (before the store exists)
        idx = window_indices(0, len(st), int(opts.window), bool(st.full_turn))
        corr0 = st[0] - np.median(np.stack([st[j] for j in idx]), axis=0)
        hi = float(np.percentile(corr0, 99.9))
        yield {"message": "rolling median of the first frame…", "contrast_limits": (0.0, hi if hi > 0 else 1.0)}
        gen = routine_to_zarr_iter(st, path, **opts.kwargs(), chunk=chunk, overwrite=overwrite, cancel=cancel,
                                   name=f"{name}_cleaned")
        model_meta, dev_text = None, "CPU"
        params = _routine_params(opts)
    out = yield from relay(gen, with_eta)
    if out is None or is_cancelled(cancel):
        return None
    yield {"message": "spot table from the stored masks…"}
    rows = store_spot_table(out, st, cancel=cancel)
    if rows is None:
        return None
    return {"store": str(out), "rows": rows, "method": method, "model_meta": model_meta, "device": dev_text,
            "params": {**params, "store": str(out)}, "n_frames": shape[0], "elapsed_s": time.perf_counter() - t0}


def _model_meta(net) -> dict:
    """What a result records of the network that made it (from its file's metadata and config)."""
    meta = dict(getattr(net, "meta", {}) or {})
    out = {k: meta[k] for k in ("architecture", "parameters", "calibration", "created", "task") if k in meta}
    out.update(preset=net.cfg.preset, neighbours=int(net.cfg.neighbours))
    return out


def _routine_params(opts) -> dict:
    """The routine's options as a result records them (JSON-able: a beam-stop box as a list)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in opts.kwargs().items()}


def _omega_key():
    from ..labdct.stack import OMEGA_KEY

    return OMEGA_KEY


def stack_problem(layer) -> str | None:
    """Why an image layer cannot be cleaned (None when it can: a 3-D stack or a 2-D frame, greyscale)."""
    if getattr(layer, "rgb", False):
        return "RGB: projection frames are greyscale"
    if getattr(layer, "multiscale", False):
        return "multiscale: not supported"
    if layer.ndim not in (2, 3):
        return f"{layer.ndim}-D: a stack (frames × rows × cols) or one 2-D frame is needed"
    return None


def _frames(data):
    """The layer data as the engine takes it, read lazily: a numpy array as it is, a dask / zarr stack as
    a list of per-frame views (each read when the engine asks for it)."""
    if isinstance(data, np.ndarray):
        return data
    if len(np.shape(data)) == 2:
        return np.asarray(data)
    return [data[k] for k in range(int(np.shape(data)[0]))]


def _load_model(spec, cache: dict):
    from ..labdct import load_model
    from ..labdct.modelio import DEFAULT_MODEL

    return load_cached(spec, cache, default_path=DEFAULT_MODEL, load=load_model)


def _label_frames(masks: np.ndarray) -> np.ndarray:
    """Spots numbered per frame (8-connected, as in the spot table)."""
    from scipy import ndimage as ndi

    m = masks if masks.ndim == 3 else masks[None]
    out = np.zeros(m.shape, np.int32)
    for k in range(len(m)):
        out[k] = ndi.label(m[k], np.ones((3, 3)))[0]
    if out.max() < 2**16:
        out = out.astype(np.uint16)
    return out if masks.ndim == 3 else out[0]


# ---------------------------------------------------------------------------------------- engine calls
def clean_job(data, *, method="network", model=DEFAULT, cache=None, threshold=None, routine=None, omegas=None,
              device=None, name="input", cancel=None):
    """The engine calls behind the Clean button (a generator; no Qt, no layers).

    ``data``: (N, H, W) or (H, W) frames (numpy, or anything indexable frame by frame); ``method``:
    ``"network"`` (``model``: "default" or a path, reused from ``cache`` when the file is unchanged;
    ``threshold`` for :func:`labdct.segment`) or ``"routine"`` (``routine``: a :class:`RoutineOptions`).
    Yields progress records (frames done, time left); returns ``None`` when cancelled, else ``{"cleaned",
    "contrast_limits", "labels", "rows", "method", "model_meta", "device", "elapsed_s", "params",
    "n_frames"}``."""
    from .. import device as _device
    from ..labdct.infer import DEFAULT_THRESHOLD, clean_iter, segment, spot_table
    from ..labdct.routine import RoutineOptions, standard_routine_iter
    from ..labdct.stack import as_stack

    shape = tuple(int(n) for n in np.shape(data))
    if len(shape) not in (2, 3):
        raise InputError(f"input '{name}': shape {shape}; a stack (frames × rows × cols) or one 2-D frame is needed.")
    if min(shape[-2:]) < MIN_SIZE:
        raise InputError(f"input '{name}': frames of {shape[-2]}×{shape[-1]} px are too small to clean "
                         f"(at least {MIN_SIZE} px a side).")
    frames = _frames(data)
    single = len(shape) == 2
    n = 1 if single else shape[0]
    if omegas is not None and len(omegas) != n:
        omegas = None  # metadata of another stack (e.g. a cropped layer): ω unknown rather than wrong
    cleaned = np.zeros((n,) + shape[-2:], np.float32)
    masks = np.zeros((n,) + shape[-2:], bool)
    rows: list = []
    t0 = time.perf_counter()
    model_meta, dev_text, params = None, "CPU", {}

    def with_eta(rec: dict) -> dict:
        if rec.get("kind") == Kind.STEP and rec.get("total"):
            return {**rec, "message": eta_text(rec["step"], rec["total"], rec.get("elapsed_s"), "frame")}
        return rec

    def first_frame_check(st):
        f = st[0]
        if float(f.max()) == float(f.min()):
            raise InputError(f"input '{name}': frame 0 is constant ({float(f.min()):g} everywhere); no spots to find.")

    if method == "network":
        thr = DEFAULT_THRESHOLD if threshold is None else float(threshold)
        if not 0 < thr < 1:
            raise InputError(f"threshold must be between 0 and 1 (of the cleaned output), got {thr}.")
        cache = {} if cache is None else cache
        yield {"message": "loading the model…"}
        net, key, _ = _load_model(model, cache)
        nb = int(net.cfg.neighbours)
        if single and nb:
            raise InputError(f"input '{name}' is a single 2-D frame, but this model also looks at each frame's two "
                             "neighbours in ω: open the whole stack (frames × rows × cols), or use a single-frame "
                             "model (trained with neighbours 0).")
        if nb and n < 3:
            raise InputError(f"input '{name}' has {n} frames, but this model also looks at each frame's two "
                             "neighbours in ω: at least 3 frames are needed (or a single-frame model).")
        st = as_stack(frames[None] if single else frames, name=f"input '{name}'")
        first_frame_check(st)
        dev = _device.pick_device(device)
        dev_text = _device.describe(dev)

        def sink(k, y):
            cleaned[k] = y
            masks[k] = segment(y, thr)

        try:
            yield from relay(clean_iter(st, net, device=dev, sink=sink, cancel=cancel), with_eta)  # frames via sink
        finally:
            if dev.type in ("cuda", "mps"):
                net.to("cpu")
                _device.free_memory(dev)
        model_meta = _model_meta(net)
        params = {"threshold": thr, "model": str(model)}
    elif method == "routine":
        opts = (routine or RoutineOptions()).check()
        if single:
            raise InputError(f"input '{name}' is a single 2-D frame, but the standard routine needs a stack: its "
                             f"rolling median compares each frame with the {int(opts.window) - 1} projections around "
                             "it. Open the whole stack, or use the network.")
        st = as_stack(frames, name=f"input '{name}'")
        first_frame_check(st)

        def sink(k, corr, mask):
            cleaned[k] = np.clip(corr, 0, None)
            masks[k] = mask

        yield from relay(standard_routine_iter(st, **opts.kwargs(), cancel=cancel, out=masks, sink=sink), with_eta)
        params = _routine_params(opts)
    else:
        raise InputError(f"method must be 'network' or 'routine', got {method!r}.")
    if is_cancelled(cancel):
        return None
    yield {"message": "spot table…"}
    stack_for_table = as_stack(frames[None] if single else frames, name=f"input '{name}'")
    for k in range(n):
        if is_cancelled(cancel):
            return None
        if masks[k].any():
            for r in spot_table(masks[k][None], stack_for_table[k][None],
                                omegas=None if omegas is None else [omegas[k]]):
                r["frame"] = k
                rows.append(r)
    labels = _label_frames(masks)
    sample = cleaned[np.unique(np.linspace(0, n - 1, min(n, 8)).round().astype(int))]
    hi = float(np.percentile(sample, 99.9)) if sample.size else 1.0
    return {"cleaned": cleaned[0] if single else cleaned, "contrast_limits": (0.0, hi if hi > 0 else 1.0), "labels": labels[0] if single else labels, "rows": rows,
            "method": method, "model_meta": model_meta, "device": dev_text, "params": params, "n_frames": n,
            "elapsed_s": time.perf_counter() - t0}


def preview_job(data, k: int, options, beamstop_cache: dict | None = None, cancel=None):
    """The routine on frame ``k`` alone (for the live preview): ``(k, corrected, mask)``."""
    from ..labdct.routine import routine_preview

    shape = tuple(int(n) for n in np.shape(data))
    if len(shape) == 3 and min(shape[-2:]) < MIN_SIZE:
        raise InputError(f"frames of {shape[-2]}×{shape[-1]} px are too small (at least {MIN_SIZE} px a side).")
    corr, mask = routine_preview(_frames(data), k, options, beamstop_cache)
    return int(k), corr, mask


def _camera(viewer):
    """The viewer's camera (``viewer.scene.camera`` from napari 0.9 on, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


# ---------------------------------------------------------------------------------------- spot table
class SpotTableModel(QAbstractTableModel):
    """The spot table as a Qt model (rows drawn on demand: a real stack has ~2000 spots a frame, far too
    many for one item per cell), sorted by any column (numpy, stable)."""

    DECIMALS = {"omega": 2, "centroid_row": 2, "centroid_col": 2, "max_intensity": 2, "mean_intensity": 3}

    def __init__(self, columns=TABLE_COLUMNS, parent=None):
        super().__init__(parent)
        self.columns = list(columns)
        self.rows: list = []
        self.order = np.zeros(0, int)
        self._sort = (0, Qt.AscendingOrder)

    def set_rows(self, rows) -> None:
        self.beginResetModel()
        self.rows = list(rows)
        self.order = np.arange(len(self.rows))
        self.endResetModel()
        self.sort(*self._sort)

    def rowCount(self, parent=QModelIndex()):  # noqa: N802 (Qt API)
        return 0 if parent.isValid() else len(self.order)

    def columnCount(self, parent=QModelIndex()):  # noqa: N802 (Qt API)
        return 0 if parent.isValid() else len(self.columns)

    def spot(self, view_row: int) -> dict:
        """The spot shown in row ``view_row`` (whatever the sorting)."""
        return self.rows[int(self.order[int(view_row)])]

    def text(self, view_row: int, column: int) -> str:
        key = self.columns[column][0]
        v = self.spot(view_row).get(key)
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.{self.DECIMALS.get(key, 2)}f}"
        return str(v)

    def data(self, index, role=Qt.DisplayRole):
        if not index.isValid():
            return None
        if role == Qt.DisplayRole:
            return self.text(index.row(), index.column())
        if role == Qt.TextAlignmentRole:
            return int(Qt.AlignRight | Qt.AlignVCenter)
        return None

    def headerData(self, section, orientation, role=Qt.DisplayRole):  # noqa: N802 (Qt API)
        if role == Qt.DisplayRole and orientation == Qt.Horizontal and 0 <= section < len(self.columns):
            return self.columns[section][1]
        return None

    def sort(self, column, order=Qt.AscendingOrder):
        self._sort = (int(column), order)
        if not self.rows or not 0 <= column < len(self.columns):
            return
        key = self.columns[column][0]
        vals = np.array([np.nan if r.get(key) is None else float(r[key]) for r in self.rows])
        idx = np.argsort(vals, kind="stable")
        if order == Qt.DescendingOrder:
            idx = idx[::-1]
        self.layoutAboutToBeChanged.emit()
        self.order = idx
        self.layoutChanged.emit()


# ---------------------------------------------------------------------------------------- widget
class CleanWidget(StoreRunMixin, ModelDeviceMixin, LayerDock):
    """Clean the spots of a LabDCT projection stack: network or standard routine (live preview)."""

    settings_group = "labdct_clean"

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self.model_cache: dict = {}
        self._job: dict | None = None
        self.last: dict | None = None  # the last result and its job (for the table and exports)
        self._bs_cache: dict = {}
        self._preview_pending = False
        self.spots_layer = None
        self.preview_frame = None
        self._build()
        self._sync_device()
        self._remember({"method_network": self.method_network, "method_routine": self.method_routine,
                        "model_default": self.model_default, "model_file": self.model_file_radio,
                        "model_path": self.model_path, "threshold": self.threshold_spin,
                        "device": self.device_combo, "live_preview": self.preview_check})
        self._start_runner(self.progress_bar, self.progress_label, self.status)
        self.preview_runner = TaskRunner(None, None, self.preview_note, notify=False, parent=self)
        self.preview_runner.state_changed.connect(self._preview_state)
        self.preview_runner.stop_when_closed(self)
        self._preview_timer = QTimer(self)
        self._preview_timer.setSingleShot(True)
        self._preview_timer.setInterval(PREVIEW_MS)
        self._preview_timer.timeout.connect(self.start_preview)
        self.viewer.dims.events.current_step.connect(self._schedule_preview)
        self._watch_layers()
        self._sync_method()
        self._sync_model()
        self._sync_store()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        form = QFormLayout()
        self.input_combo = LayerCombo("The projection stack to clean (frames × rows × cols; a single 2-D frame "
                                      "for a single-frame model). RGB and multiscale layers are not offered.")
        form.addRow("stack", self.input_combo)
        mrow, self.method_network, self.method_routine = radio_row(
            ("network", "The U-Net trained on forward-simulated spots over real backgrounds (Fang et al. 2021): "
                        "cleaned frames in [0, 1], spots where the output is above the threshold."),
            ("standard routine", "Rolling median over N projections subtracted from each frame, beam stop "
                                 "excluded, then LoG segmentation with four parameters (live preview)."))
        form.addRow("method", mrow)
        lay.addLayout(form)

        self.model_box = QGroupBox("Network")
        ml = QVBoxLayout(self.model_box)
        r, self.model_default, self.model_file_radio = radio_row(
            ("shipped default", "The LabDCT model shipped with matrestore (matrestore/labdct/models/default.safetensors)."),
            ("model file", "A model trained with `matrestore labdct train` or the 'LabDCT: train' widget."))
        ml.addLayout(r)
        ml.addLayout(self._model_file_row("The model file to use when 'model file' is selected.", "Choose a model file."))
        ml.addWidget(self._model_note_label("Whether the chosen model is available."))
        mf = QFormLayout()
        self.threshold_spin = QDoubleSpinBox()
        self.threshold_spin.setRange(0.1, 254.0)
        self.threshold_spin.setDecimals(1)
        self.threshold_spin.setValue(5.0)
        self.threshold_spin.setSuffix(" / 255")
        self.threshold_spin.setToolTip("Spots are the pixels of the cleaned output at or above this level "
                                       "(the paper's 5 of 255; the shipped model is calibrated for it).")
        mf.addRow("threshold", self.threshold_spin)
        mf.addRow("device", self._device_row())
        ml.addLayout(mf)
        lay.addWidget(self.model_box)

        from ..labdct.routine import RoutineOptions

        self.routine_box = QGroupBox("Standard routine")
        rl = QVBoxLayout(self.routine_box)
        self.options = ParamForm(RoutineOptions, settings=self.settings)
        rl.addWidget(self.options)
        self.preview_check = QCheckBox("live preview on the current frame")
        self.preview_check.setChecked(True)
        self.preview_check.setToolTip(f"Run the routine on the frame under the slider ({PREVIEW_MS} ms after a change "
                                      "of a parameter or of the frame) and show its spots in '<stack>_preview'.")
        rl.addWidget(self.preview_check)
        self.preview_note = QLabel("")
        self.preview_note.setWordWrap(True)
        self.preview_note.setToolTip("What the live preview shows, or why it cannot run.")
        rl.addWidget(self.preview_note)
        lay.addWidget(self.routine_box)
        lay.addWidget(self._output_box(
            "cleaned", frames=True, tip="Large stacks: the cleaned (network) or median-subtracted (routine) frames and "
            "the spot masks go to an OME-Zarr store, frame block by frame block (resumable); the layers show the store "
            "as it fills."))
        lay.addLayout(self._defaults_row("Set the method, model, threshold, device and routine parameters back to "
                                         "their defaults (they are remembered between sessions)."))

        self.invalid_note = self._unoffered_label()
        lay.addWidget(self.invalid_note)
        self._add_run_controls(
            lay, run=("Clean spots", "Clean the whole stack in the background: '<stack>_cleaned', the Labels layer "
                                     "'<stack>_spots' and the spot table (updated in place on later runs)."),
            cancel_tip="Stop after the current frame; nothing is added or changed.",
            progress=("%v / %m frames", "Frames done of all frames."),
            step_tip="Frames done, time so far and the estimated time left.")

        self.results_box = QGroupBox("Spots")
        tl = QVBoxLayout(self.results_box)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        tl.addWidget(self.summary)
        self.table_model = SpotTableModel(parent=self)
        self.table = QTableView()
        self.table.setModel(self.table_model)
        self.table.setToolTip("One row per spot (8-connected component of a frame's mask); centroid intensity-weighted, "
                              "in pixels of the frame. Click a row to go to its frame and spot; click a header to sort.")
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        hh = self.table.horizontalHeader()
        hh.setResizeContentsPrecision(100)
        hh.setSectionResizeMode(QHeaderView.ResizeToContents)
        hh.setStretchLastSection(True)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.AscendingOrder)
        self.table.setMinimumHeight(160)
        tl.addWidget(self.table)
        erow = QHBoxLayout()
        self.export_tiff_btn = QPushButton("Export TIFF series…")
        self.export_tiff_btn.setToolTip("Write the cleaned frames (float32) and the binary spot masks (0/255) as "
                                        "one TIFF per frame into a folder (not the input's folder).")
        self.export_csv_btn = QPushButton("Export CSV…")
        self.export_csv_btn.setToolTip("Write the spot table as CSV.")
        erow.addWidget(self.export_tiff_btn)
        erow.addWidget(self.export_csv_btn)
        tl.addLayout(erow)
        self.results_box.setVisible(False)
        lay.addWidget(self.results_box)
        lay.addStretch(1)

        self.method_network.toggled.connect(self._sync_method)
        self.model_default.toggled.connect(self._sync_model)
        self.input_combo.currentIndexChanged.connect(self._schedule_preview)
        self.input_combo.currentIndexChanged.connect(self._sync_store)
        self.options.changed.connect(self._schedule_preview)
        self.preview_check.toggled.connect(self._schedule_preview)
        self.table.clicked.connect(lambda index: self.go_to_row(index.row()))
        self.export_tiff_btn.clicked.connect(self._ask_export_tiffs)
        self.export_csv_btn.clicked.connect(self._ask_export_csv)

    # ------------------------------------------------------------------ method and model
    def method(self) -> str:
        return "network" if self.method_network.isChecked() else "routine"

    def set_method(self, method: str) -> None:
        (self.method_network if method == "network" else self.method_routine).setChecked(True)
        self._sync_method()

    def _sync_method(self, *_) -> None:
        net = self.method_network.isChecked()
        self.model_box.setVisible(net)
        self.routine_box.setVisible(not net)
        self._schedule_preview()

    def _sync_model(self, *_) -> None:
        from ..labdct.modelio import DEFAULT_MODEL

        self._show_model_choice(DEFAULT_MODEL, "shipped default model (experimental; see docs/model_labdct_default.md).",
                                "No default LabDCT model is installed: choose a model file.")

    def _browse_model(self) -> None:
        path = self._ask_model_file("LabDCT model")
        if path:
            self.set_model(path)

    def routine_options(self):
        """The routine's options as the engine takes them, checked by the engine."""
        from ..labdct.routine import RoutineOptions

        return RoutineOptions(**self.options.values()).check()

    # ------------------------------------------------------------------ layers
    def _image_layers(self) -> list:
        from napari.layers import Image

        return [lyr for lyr in self.viewer.layers if isinstance(lyr, Image)]

    def _show_unoffered(self, images) -> None:
        bad = [(lyr.name, stack_problem(lyr)) for lyr in images if stack_problem(lyr) is not None]
        self.invalid_note.setText("Not offered: " + "; ".join(f"'{n}' ({why})" for n, why in bad) if bad else "")
        self.invalid_note.setVisible(bool(bad))

    def _refresh_layers(self, event=None) -> None:
        images = self._image_layers()
        valid = [lyr for lyr in images if stack_problem(lyr) is None]
        plain = [lyr for lyr in valid if made_by(lyr.metadata) != MADE_BY]
        active = self.viewer.layers.selection.active
        default = next((lyr for lyr in plain if same_layer(lyr, active)), None) or (plain[0] if plain else None)
        self.input_combo.fill(valid, default or (valid[0] if valid else None))
        self._show_unoffered(images)
        if hasattr(self, "store_part"):
            self._sync_store()

    def _sync_store(self, *_) -> None:
        """The store is forced on for stacks whose cleaned output would exceed ``STORE_BYTES`` (float32);
        a lazy layer of a smaller stack may still be cleaned in memory. Default path beside the input."""
        layer = self.input_layer()
        self.store_part.sync(layer, why=stack_store_reason(layer))

    def input_layer(self):
        return self.input_combo.layer()

    def _frame_axis(self):
        return self.viewer.dims.ndim - 3

    def current_frame(self, layer=None) -> int:
        """The frame of ``layer`` (default: the input) under the viewer's slider."""
        layer = layer or self.input_layer()
        if layer is None or layer.ndim != 3:
            return 0
        axis = self._frame_axis()
        if axis < 0:
            return 0
        pt = float(self.viewer.dims.point[axis])
        k = int(round((pt - float(layer.translate[0])) / float(layer.scale[0])))
        return min(max(k, 0), int(layer.data.shape[0]) - 1)

    def set_frame(self, k: int, layer=None) -> None:
        """Move the viewer's slider to frame ``k`` of ``layer`` (default: the input)."""
        layer = layer or self.input_layer()
        if layer is None or layer.ndim != 3 or self._frame_axis() < 0:
            return
        self.viewer.dims.set_point(self._frame_axis(), float(layer.translate[0]) + float(layer.scale[0]) * int(k))

    # ------------------------------------------------------------------ live preview
    def _preview_wanted(self) -> bool:
        inp = self.input_layer()
        return (not self.method_network.isChecked() and self.preview_check.isChecked() and inp is not None
                and stack_problem(inp) is None and inp.ndim == 3)

    def _schedule_preview(self, *_) -> None:
        if self._preview_wanted():
            self._preview_timer.start()

    def start_preview(self) -> None:
        """Run the routine on the current frame in a worker (the result goes to ``<stack>_preview``)."""
        if not self._preview_wanted():
            return
        if self.preview_runner.is_running:
            self._preview_pending = True
            return
        self._preview_pending = False
        inp = self.input_layer()
        try:
            opts = self.routine_options()
        except InputError as exc:
            self.preview_runner.fail(exc)
            return
        key = (inp.unique_id if hasattr(inp, "unique_id") else inp.name, str(opts.beamstop), int(opts.window))
        if self._bs_cache.get("key") != key:
            self._bs_cache = {"key": key}
        k = self.current_frame(inp)
        self._preview_src = {"name": inp.name, "scale": tuple(float(v) for v in inp.scale[-2:]),
                             "translate": tuple(float(v) for v in inp.translate[-2:]), "units": spatial_units(inp),
                             "params": opts.kwargs()}
        self.preview_note.setStyleSheet("")
        self.preview_note.setText(f"preview: frame {k}…")
        self.preview_runner.start(preview_job, inp.data, k, opts, self._bs_cache, on_returned=self._show_preview)

    def _preview_state(self, state) -> None:
        if state is not State.RUNNING and self._preview_pending:
            self._preview_pending = False
            self._preview_timer.start()

    def _show_preview(self, res) -> None:
        if res is None:
            return
        k, corr, mask = res
        src = self._preview_src
        n = int(_label_frames(mask).max())
        md = {OUTPUT_KEY: {"made_by": MADE_BY + " (preview)", "source": src["name"], "frame": k,
                           "parameters": {a: (list(b) if isinstance(b, tuple) else b) for a, b in src["params"].items()}}}
        put_labels(self.viewer, f"{src['name']}_preview", mask.astype(np.uint8), src["scale"], src["translate"], md,
                    units=src["units"], opacity=0.8)
        self.preview_frame = k
        self.preview_note.setStyleSheet("")
        self.preview_note.setText(f"preview: frame {k}: {n} spot(s) with these parameters.")

    # ------------------------------------------------------------------ running
    def _collect(self) -> dict:
        inp = self.input_layer()
        if inp is None:
            bad = [lyr.name for lyr in self._image_layers()]
            raise InputError("open or pick a projection stack (frames × rows × cols)" +
                             (f"; not usable: {self.invalid_note.text()}" if bad else "."))
        why = stack_problem(inp)
        if why:
            raise InputError(f"input '{inp.name}': {why}.")
        h, w = (int(n) for n in inp.data.shape[-2:])
        if min(h, w) < MIN_SIZE:
            raise InputError(f"input '{inp.name}' has frames of {h}×{w} px: too small to clean (at least {MIN_SIZE} px a side).")
        out = {k: f"{inp.name}_{k}" for k in ("cleaned", "spots")}
        if any(n in self.viewer.layers and not (made_by(self.viewer.layers[n].metadata) or "").startswith(MADE_BY)
               for n in out.values()):
            raise InputError(f"a layer called '{out['cleaned']}' or '{out['spots']}' exists and was not made by this "
                             "widget; rename it first (inputs are never replaced).")
        method = self.method()
        job = {"input": inp, "name": inp.name, "method": method, "out": out,
               "scale": tuple(float(v) for v in inp.scale), "translate": tuple(float(v) for v in inp.translate),
               "units": tuple(inp.units) if getattr(inp, "units", None) is not None else None,
               "metadata": dict(inp.metadata or {}), "ndim": inp.ndim,
               "omegas": (inp.metadata or {}).get(_omega_key())}
        job["store"] = None
        if method == "network":
            job.update(model=self.model_spec(), threshold=self.threshold_spin.value() / 255.0, device=self.device())
        else:
            job.update(routine=self.routine_options())
        use, store, overwrite = self.store_part.values()
        if use:
            from ._store import check_not_input_store

            if inp.ndim != 3:
                raise InputError(f"input '{inp.name}' is a single frame; a Zarr store output needs a stack.")
            check_not_input_store(job["metadata"], store)
            job.update(store=store, overwrite=overwrite)
        return job

    def run(self):
        """Start cleaning in a worker (the result arrives in :meth:`_show_result`)."""
        job = self._new_job()
        if job is None:
            return None
        if job["store"] is not None:
            self._follow_store(lambda path, job=job: self._store_layers(job, path))
            return self.runner.start(clean_store_job, job["input"].data, job["store"], method=job["method"],
                                     model=job.get("model", DEFAULT), cache=self.model_cache,
                                     threshold=job.get("threshold"), routine=job.get("routine"), omegas=job["omegas"],
                                     device=job.get("device"), overwrite=job["overwrite"], name=job["name"],
                                     on_yielded=self._on_store_record, on_returned=self._show_store_result,
                                     message="starting…")
        return self.runner.start(clean_job, job["input"].data, method=job["method"], model=job.get("model", DEFAULT),
                                 cache=self.model_cache, threshold=job.get("threshold"), routine=job.get("routine"),
                                 omegas=job["omegas"], device=job.get("device"), name=job["name"],
                                 on_returned=self._show_result, message="starting…")

    # ------------------------------------------------------------------ results (GUI thread)
    def _show_result(self, res) -> None:
        job = self._job
        if res is None or job is None:
            return
        src = job["metadata"]
        md = {k: src[k] for k in ("unit", "pixel_size_nm", _omega_key(), "omega_source") if k in src}
        info = {"made_by": MADE_BY, "source": job["name"], "method": res["method"], "parameters": res["params"],
                "model_meta": res["model_meta"], "device": res["device"], "elapsed_s": round(float(res["elapsed_s"]), 3),
                "n_spots": len(res["rows"])}
        nd = res["cleaned"].ndim
        scale, translate = job["scale"][-nd:], job["translate"][-nd:]
        units = job["units"][-nd:] if job["units"] else None
        what = ("network output in [0, 1] (background ≈ 0)" if res["method"] == "network"
                else "frames minus their rolling median, clipped at 0")
        cmd = {**md, OUTPUT_KEY: {**info, "what": what}}
        clim = res["contrast_limits"]  # computed in the worker (a percentile of a whole stack takes a while)
        cl = put_image(self.viewer, job["out"]["cleaned"], res["cleaned"], scale, translate, cmd, units=units,
                       contrast_limits=clim, colormap="gray")
        cl.contrast_limits = clim
        lmd = {**md, OUTPUT_KEY: {**info, "what": "spots numbered per frame (8-connected), as in the spot table"}}
        self.spots_layer = put_labels(self.viewer, job["out"]["spots"], res["labels"], scale, translate, lmd,
                                       units=units, opacity=0.7)
        self.last = {"job": job, "result": res, "cleaned_layer": cl.name, "spots_layer": self.spots_layer.name}
        self.fill_table(res["rows"])
        nf = res["n_frames"]
        per = len(res["rows"]) / max(1, nf)
        self.summary.setText(f"{len(res['rows'])} spots in {nf} frame(s) ({per:.1f} per frame); "
                             f"ω {'known' if job['omegas'] is not None and len(job['omegas']) == nf else 'unknown'}.")
        self.results_box.setVisible(True)
        self.status.setStyleSheet("")
        self.status.setText(f"Done: '{cl.name}' and '{self.spots_layer.name}' ({res['method']}) in "
                            f"{res['elapsed_s']:.1f} s on {res['device']}.")

    # ------------------------------------------------------------------ store results (GUI thread)
    def _store_info(self, job, res=None) -> tuple:
        src = job["metadata"]
        md = {k: src[k] for k in ("unit", "pixel_size_nm", _omega_key(), "omega_source") if k in src}
        if job["method"] == "network":
            params = {"threshold": job["threshold"], "model": str(job["model"])}
        else:
            params = _routine_params(job["routine"])
        info = {"made_by": MADE_BY, "source": job["name"], "method": job["method"], "store": str(job["store"]),
                "parameters": params}
        if res is not None:
            info.update(model_meta=res["model_meta"], device=res["device"], n_spots=len(res["rows"]),
                        elapsed_s=round(float(res["elapsed_s"]), 3))
        return md, info

    def _store_layers(self, job, path, res=None):
        """The cleaned layer from the store's Zarr array (never a dask graph), refreshed as blocks complete."""
        from ._store import show_store

        md, info = self._store_info(job, res)
        if job["method"] == "network":
            what, clim = "network output in [0, 1] (background ≈ 0)", (0.0, 1.0)
        else:  # the routine's frames are in counts: the limits its job sent before the store existed
            what, clim = "frames minus their rolling median (not clipped)", tuple(job.get("store_clim") or (0.0, 1.0))
        cmd = {**md, "store": str(path), OUTPUT_KEY: {**info, "what": what}}
        return show_store(self.viewer, job["out"]["cleaned"], path, job["scale"], job["translate"], cmd,
                          units=job["units"], contrast_limits=clim)

    def _on_store_record(self, rec) -> None:
        if isinstance(rec, dict) and rec.get("contrast_limits") is not None and self._job is not None:
            self._job["store_clim"] = tuple(rec["contrast_limits"])  # the routine's frames are in counts
        super()._on_store_record(rec)

    def _show_store_result(self, res) -> None:
        import zarr

        from ..labdct.lazy import MASKS_PATH

        job = self._job
        if res is None or job is None:
            return
        view = self._store_layers(job, res["store"], res)
        view.refresh(force=True)
        md, info = self._store_info(job, res)
        masks = zarr.open_array(str(Path(res["store"]) / MASKS_PATH / "0"), mode="r")
        lmd = {**md, "store": res["store"],
               OUTPUT_KEY: {**info, "what": "spot masks from the store (1 = spot; spots numbered per frame in the table)"}}
        self.spots_layer = put_labels(self.viewer, job["out"]["spots"], masks, job["scale"], job["translate"], lmd,
                                       units=job["units"], opacity=0.7)
        self.last = {"job": job, "result": res, "cleaned_layer": view.layer.name, "spots_layer": self.spots_layer.name}
        self.fill_table(res["rows"])
        nf = res["n_frames"]
        self.summary.setText(f"{len(res['rows'])} spots in {nf} frame(s) ({len(res['rows']) / max(1, nf):.1f} per frame); "
                             f"written to {Path(res['store']).name}.")
        self.results_box.setVisible(True)
        self.status.setStyleSheet("")
        self.status.setText(f"Done: '{view.layer.name}' and '{self.spots_layer.name}' ({job['method']}) written to "
                            f"{Path(res['store']).name} in {res['elapsed_s']:.1f} s on {res['device']}.")

    def fill_table(self, rows) -> None:
        self.table_model.set_rows(rows)

    def spot_rows(self) -> list:
        return list(self.last["result"]["rows"]) if self.last else []

    def go_to_row(self, table_row: int) -> None:
        """Jump to the spot of a table row: the slider to its frame, the view centred on its centroid."""
        if not self.last or not 0 <= int(table_row) < self.table_model.rowCount():
            return
        self.go_to_spot(self.table_model.spot(table_row))

    def go_to_spot(self, spot: dict) -> None:
        job = self.last["job"]
        sc, tr = job["scale"][-2:], job["translate"][-2:]
        if job["ndim"] == 3 and self._frame_axis() >= 0:
            self.viewer.dims.set_point(self._frame_axis(), job["translate"][0] + job["scale"][0] * int(spot["frame"]))
        y = tr[0] + sc[0] * float(spot["centroid_row"])
        x = tr[1] + sc[1] * float(spot["centroid_col"])
        cam = _camera(self.viewer)
        center = list(cam.center)
        center[-2:] = [y, x]
        cam.center = tuple(center)
        if self.spots_layer is not None and self.spots_layer.name in self.viewer.layers:
            self.viewer.layers[self.spots_layer.name].selected_label = int(spot["label"])

    # ------------------------------------------------------------------ export
    def _outputs(self, overwrite: bool = False):
        from .._paths import Outputs

        src = (self.last["job"]["metadata"] if self.last else {}).get("source")
        return Outputs(inputs=[src] if src else [], overwrite=overwrite)

    def _need_result(self) -> None:
        if not self.last:
            raise InputError("nothing to export yet: clean a stack first.")

    def export_tiffs(self, folder) -> list:
        """The cleaned frames (``<stack>_cleaned_0001.tif``, float32) and the binary spot masks
        (``<stack>_spots_0001.tif``, 0/255 uint8), one TIFF per frame, into ``folder`` (not the input's own
        folder; never over an input or a file matrestore did not write). Returns the files written."""
        from ..io import write_tiff

        self._need_result()
        job, res = self.last["job"], self.last["result"]
        outs = self._outputs()
        src = job["metadata"].get("source")
        folder = Path(folder).expanduser()
        if src and Path(src).is_dir() and folder.exists() and Path(src).resolve() == folder.resolve():
            raise InputError(f"{folder} holds the input frames; choose another folder (the exported frames would "
                             "become part of the stack when it is opened again).")
        folder = outs.folder(folder)
        if "store" in res:  # out of core: frames read from the store one at a time as they are written
            import zarr

            from ..labdct.lazy import MASKS_PATH

            c = zarr.open_array(str(Path(res["store"]) / "0"), mode="r")
            lab = zarr.open_array(str(Path(res["store"]) / MASKS_PATH / "0"), mode="r")
        else:
            c, lab = res["cleaned"], res["labels"]
        if c.ndim == 2:
            c, lab = c[None], lab[None]
        stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in job["name"])
        plan = []
        for k in range(int(c.shape[0])):
            plan.append((outs.in_folder(folder, f"{stem}_cleaned_{k + 1:04d}.tif"), lambda k=k: np.asarray(c[k])))
            plan.append((outs.in_folder(folder, f"{stem}_spots_{k + 1:04d}.tif"),
                         lambda k=k: (np.asarray(lab[k]) > 0).astype(np.uint8) * 255))
        meta = {"what": f"LabDCT {res['method']} of '{job['name']}'", "parameters": res["params"]}
        written = []
        for path, frame in plan:  # every path checked before the first write
            written.append(write_tiff(path, frame(), metadata=meta))
        self.status.setStyleSheet("")
        self.status.setText(f"Wrote {len(written)} TIFFs ({int(c.shape[0])} frames, cleaned + masks) to {folder}.")
        return written

    def export_csv(self, path, overwrite: bool = False) -> Path:
        """The spot table as CSV (``labdct.write_spot_csv`` columns) at ``path``; ``overwrite`` replaces an
        existing file that is not an input (the file dialog has asked)."""
        import io as _io

        from .._paths import atomic_write_text
        from ..labdct.infer import write_spot_csv

        self._need_result()
        p = self._outputs(overwrite).file(path, "spot table")
        buf = _io.StringIO()
        write_spot_csv(self.last["result"]["rows"], buf)
        atomic_write_text(p, buf.getvalue())
        self.status.setStyleSheet("")
        self.status.setText(f"Wrote {len(self.last['result']['rows'])} spots to {p}.")
        return p

    def _ask_export_tiffs(self) -> None:
        try:
            self._need_result()
            folder = QFileDialog.getExistingDirectory(self, "Folder for the TIFF series", "")
            if folder:
                self.export_tiffs(folder)
        except InputError as exc:
            self.runner.fail(exc)

    def _ask_export_csv(self) -> None:
        try:
            self._need_result()
            path, _ = QFileDialog.getSaveFileName(self, "Spot table", f"{self.last['job']['name']}_spots.csv",
                                                  "CSV (*.csv);;All files (*)")
            if path:
                self.export_csv(path, overwrite=True)  # the dialog asked before replacing a file
        except InputError as exc:
            self.runner.fail(exc)

    def _closed(self, ended: bool) -> None:
        self._preview_timer.stop()
        self.preview_runner.stop()
        try:
            self.viewer.dims.events.current_step.disconnect(self._schedule_preview)
        except (TypeError, ValueError, RuntimeError):
            pass
