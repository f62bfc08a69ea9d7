"""The out-of-core output of an image-to-image widget: where the Zarr store goes, and the multiscale
layer that shows it while it fills.

:class:`StoreOutputPart` (a checkbox, the store path with Browse…, "replace an existing store") is
switched on — and cannot be switched off — when the input is multiscale, not in memory (dask, Zarr), or
its output would exceed :data:`STORE_BYTES`; its default path lies beside the input's file
(``<stem>_<suffix>.zarr``), never in a temporary folder: with no file behind the input the user picks one.
:func:`show_store` adds (or replaces) the layer of a store from its Zarr arrays (not a dask graph: napari
would compute it on the GUI thread), with explicit contrast limits; :meth:`StoreView.refresh` re-reads
what the blocks have written, at most every :attr:`StoreView.every_s` seconds.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from qtpy.QtWidgets import (QCheckBox, QFileDialog, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QSpinBox, QVBoxLayout,
                            QWidget)

from .._validate import InputError

__all__ = ["STORE_BYTES", "needs_store", "default_store_path", "StoreOutputPart", "show_store", "StoreView",
           "level0", "check_not_input_store", "StoreFeed", "store_metadata"]

STORE_BYTES = 2 * 2**30  # outputs above this (float32 bytes) are written to a Zarr store, not held in memory


def level0(layer):
    """The full-resolution data of an image layer (level 0 of a multiscale layer)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def needs_store(layer, scale: int) -> str | None:
    """Why ``layer``'s output must go to a Zarr store (None when memory will do)."""
    if layer is None:
        return None
    if getattr(layer, "multiscale", False):
        return "the input is a multiscale image"
    data = level0(layer)
    h, w = (int(v) for v in (data.shape[:2] if getattr(layer, "rgb", False) else data.shape[-2:]))
    nbytes = h * w * int(scale) ** 2 * 4
    if nbytes > STORE_BYTES:
        return f"the output would be {h * scale}×{w * scale} px ({nbytes / 2**30:.1f} GiB)"
    if not isinstance(data, np.ndarray):
        return "the input is not in memory (a lazy or Zarr-backed array)"
    return None


def default_store_path(layer, suffix: str) -> Path | None:
    """``<stem>_<suffix>.zarr`` beside the file the layer was opened from (None without one)."""
    if layer is None:
        return None
    src = getattr(getattr(layer, "source", None), "path", None) or (layer.metadata or {}).get("store") \
        or (layer.metadata or {}).get("source")
    if not src:
        return None
    p = Path(str(src))
    stem = p.name[: -len(".zarr")] if p.name.endswith(".zarr") else p.stem
    return p.with_name(f"{stem}_{suffix}.zarr")


class StoreOutputPart(QWidget):
    """Output: in memory, or a Zarr store (path, Browse…, replace an existing store)."""

    _NOT_GIVEN = object()

    def __init__(self, suffix: str, parent=None, *, frames: bool = False):
        """``frames``: blocks of whole frames of a stack (the block side counts frames, not pixels)."""
        super().__init__(parent)
        self.suffix = suffix
        self._forced: str | None = None
        self._auto_path = ""
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.use = QCheckBox("write to a Zarr store (out of core, resumable)")
        self.use.setToolTip("Compute block by block into an OME-Zarr store on disk and show it as a multiscale "
                            "layer that fills in. On for inputs that are multiscale, not in memory, or whose "
                            "output would not fit in memory. A rerun with the same settings resumes.")
        lay.addWidget(self.use)
        row = QHBoxLayout()
        self.path = QLineEdit()
        self.path.setPlaceholderText("path/to/output.zarr")
        self.path.setToolTip("The OME-Zarr store to write (a folder ending in .zarr). Default: beside the input's file.")
        self.browse = QPushButton("Browse…")
        self.browse.setToolTip("Choose where to write the store.")
        row.addWidget(self.path, 1)
        row.addWidget(self.browse)
        lay.addLayout(row)
        crow = QHBoxLayout()
        crow.addWidget(QLabel("block side"))
        self.chunk = QSpinBox()
        self.chunk.setRange(0, 65536)
        self.chunk.setSpecialValueText("auto")
        if frames:
            crow.itemAt(0).widget().setText("frames per block")
            self.chunk.setRange(0, 4096)
            self.chunk.setSingleStep(4)
            self.chunk.setSuffix(" frames")
            self.chunk.setToolTip("Whole frames per block (each block also reads its neighbour frames). auto: 8. "
                                  "Larger blocks need more memory and give coarser progress; every block is one "
                                  "unit of resume.")
        else:
            self.chunk.setSingleStep(256)
            self.chunk.setSuffix(" px")
            self.chunk.setToolTip("Input pixels per block side (rounded to the tile grid). auto: 1024. Larger "
                                  "blocks need more memory and give coarser progress; every block is one unit of "
                                  "resume.")
        crow.addWidget(self.chunk)
        crow.addStretch(1)
        lay.addLayout(crow)
        self.overwrite = QCheckBox("replace an existing store")
        self.overwrite.setToolTip("Replace a store at this path that holds something else (another image, model "
                                  "or options). A store of this very computation is resumed either way.")
        lay.addWidget(self.overwrite)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        lay.addWidget(self.note)
        self.use.toggled.connect(self._sync_enabled)
        self.browse.clicked.connect(self._browse)
        self._sync_enabled()

    def _sync_enabled(self, *_):
        on = self.use.isChecked()
        for w in (self.path, self.browse, self.overwrite, self.chunk):
            w.setEnabled(on)

    def _browse(self):
        path, _ = QFileDialog.getSaveFileName(self, "Output Zarr store", self.path.text(), "Zarr stores (*.zarr)")
        if path:
            self.path.setText(path if path.endswith(".zarr") else path + ".zarr")

    def sync(self, layer, scale: int = 1, why=_NOT_GIVEN) -> None:
        """Follow the input: force the store on when it is needed (``why``: the reason, default
        :func:`needs_store` of ``layer`` at ``scale``; ``None``: not needed), offer the default path."""
        if why is self._NOT_GIVEN:
            why = needs_store(layer, scale)
        self._forced = why
        if why:
            self.use.setChecked(True)
        self.use.setEnabled(why is None)
        auto = default_store_path(layer, self.suffix)
        auto_text = "" if auto is None else str(auto)
        if not self.path.text().strip() or self.path.text() == self._auto_path:
            self.path.setText(auto_text)
        self._auto_path = auto_text
        self.note.setText(f"Written to a Zarr store: {why}." if why else "")

    @property
    def reason(self) -> str | None:
        """Why the store is forced on for the current input (None when memory will do)."""
        return self._forced

    def block_side(self) -> int | None:
        """The block side chosen (None for auto)."""
        return int(self.chunk.value()) or None

    def values(self) -> tuple[bool, Path | None, bool]:
        """``(use_store, path, overwrite)``; InputError when a store is needed and no path is given."""
        if not self.use.isChecked():
            return False, None, False
        text = self.path.text().strip()
        if not text:
            raise InputError("choose where to write the Zarr store (the input has no file to put it beside).")
        if not text.rstrip("/").endswith(".zarr"):
            raise InputError(f"the output store must be a folder ending in .zarr, got {text}.")
        return True, Path(text).expanduser(), self.overwrite.isChecked()


def _levels(path) -> list:
    import zarr

    from ..ngff import _quiet

    root = zarr.open_group(str(path), mode="r")
    ctx = _quiet()
    try:
        keys = sorted((k for k in root.array_keys() if k.isdigit()), key=int)
    finally:
        ctx.__exit__(None, None, None)
    return [root[k] for k in keys]


class StoreView:
    """The layer of a store being written, refreshed at most every ``every_s`` seconds."""

    every_s = 2.0

    def __init__(self, layer, path):
        self.layer, self.path, self._last = layer, Path(path), 0.0

    def refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= self.every_s:
            self._last = now
            # napari (0.9) keeps the coarsest level of a 2-D multiscale layer as a cached numpy copy (its
            # thumbnail level, also what is drawn when zoomed out): drop it so the filled blocks show
            clear = getattr(getattr(self.layer, "_level_materializer", None), "cache_clear", None)
            if callable(clear):
                clear()
            self.layer.refresh()


def show_store(viewer, name, path, scale, translate, metadata, units=None, contrast_limits=(0.0, 1.0)) -> StoreView:
    """Add (or replace) the layer ``name`` showing the store at ``path`` (multiscale from its levels)."""
    from ._layers import put_image

    levels = _levels(path)
    data = levels if len(levels) > 1 else levels[0]
    if name in viewer.layers:  # the number of levels can change between runs: a fresh layer
        old = viewer.layers[name]
        if getattr(old, "multiscale", False) != (len(levels) > 1):
            viewer.layers.remove(old)
    layer = put_image(viewer, name, data, scale, translate, metadata, units=units, contrast_limits=contrast_limits,
                      colormap="gray", multiscale=len(levels) > 1)
    layer.contrast_limits = contrast_limits
    return StoreView(layer, path)


def check_not_input_store(metadata: dict, store: Path) -> None:
    """InputError when ``store`` is the store (or file) the input layer was read from."""
    src = (metadata or {}).get("store") or (metadata or {}).get("source")
    if src and Path(str(src)).expanduser().resolve() == Path(store).expanduser().resolve():
        raise InputError("the output store is the input's own store; choose another output path.")


def store_metadata(source: dict, scale: int = 1) -> dict:
    """The output layer's unit and pixel size (the input's divided by ``scale``) from the input layer's
    metadata ``source``."""
    md = {k: source[k] for k in ("unit",) if k in source}
    for k in ("pixel_size", "pixel_size_nm"):
        if isinstance(source.get(k), (int, float)) and not isinstance(source.get(k), bool):
            md[k] = source[k] / scale
    return md


class StoreFeed:
    """Follows a store run's records on the GUI thread: ``show(path)`` (returning a :class:`StoreView`)
    when the store exists (the ``phase="store"`` record), a refresh of that view as blocks complete."""

    def __init__(self, show):
        self.show = show
        self.view: StoreView | None = None

    def __call__(self, rec) -> None:
        if not isinstance(rec, dict):
            return
        if rec.get("phase") == "store" and rec.get("store"):
            self.view = self.show(rec["store"])
        elif rec.get("phase") == "blocks" and self.view is not None:
            self.view.refresh()


class StoreRunMixin:
    """For a dock whose runs may write to a store (Enhance, Denoise: apply, LabDCT: clean spots): its
    *Output* box, and the feed that shows the store's layer while a store run fills it."""

    _store_feed: StoreFeed | None = None

    def _output_box(self, suffix: str, *, frames: bool = False, tip: str = "", use_tip: str = "") -> QGroupBox:
        """The "Output" group (``self.output_box``) holding ``self.store_part`` (a :class:`StoreOutputPart`
        with store names ``<input>_<suffix>.zarr``; ``use_tip`` is added to its checkbox's tooltip)."""
        self.output_box = QGroupBox("Output")
        lay = QVBoxLayout(self.output_box)
        self.store_part = StoreOutputPart(suffix, frames=frames)
        if tip:
            self.store_part.setToolTip(tip)
        if use_tip:
            self.store_part.use.setToolTip(self.store_part.use.toolTip() + " " + use_tip)
        lay.addWidget(self.store_part)
        return self.output_box

    def _follow_store(self, show) -> None:
        """The next run writes a store: ``show(path)`` (returning a :class:`StoreView`) once it exists,
        refreshed as its blocks complete (see :meth:`_on_store_record`)."""
        self._store_feed = StoreFeed(show)

    def _on_store_record(self, rec) -> None:
        """A store run's progress record (the runner's ``on_yielded``): show and refresh the store layer."""
        if self._store_feed is not None and getattr(self, "_job", None) is not None:
            self._store_feed(rec)
