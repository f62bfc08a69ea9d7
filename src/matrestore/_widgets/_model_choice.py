"""What the Enhance and Train dock widgets share about the model and the device they run on: the
model-file row (path + Browse…), its check (is a file chosen, does it exist), the note under the model
choice, and the device picker with a label of what "auto" finds on this computer.

:class:`ModelDeviceMixin` goes beside :class:`~matrestore._widgets._layers.LayerDock`; the widget
provides ``_sync_model`` (fills the note) and ``_browse_model`` (what a chosen file does).
"""

from __future__ import annotations

from pathlib import Path

from qtpy.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QLabel, QLineEdit, QPushButton

from .._validate import InputError
from ._worker import ERROR_STYLE

__all__ = ["MODEL_FILES", "ModelDeviceMixin", "default_model_installed", "load_cached", "model_file_state"]

DEFAULT = "default"  # the model choice that means the bundled default model

MODEL_FILES = "Model files (*.safetensors);;All files (*)"  # the file-dialog filter for model files


def default_model_installed() -> bool:
    """Whether the bundled default super-resolution model is installed."""
    from ..sr.modelio import DEFAULT_MODEL

    return DEFAULT_MODEL.is_file()


def _file_key(path: Path) -> tuple:
    """Cache key of a model file: (resolved path, modification time, size); the file must exist."""
    st = path.stat()
    return (str(path.resolve()), st.st_mtime_ns, st.st_size)


def load_cached(spec, cache: dict, *, default_path: Path, load):
    """``(model, key, cached)`` for ``spec`` ("default" or a path): the model in ``cache`` when its file
    is unchanged (same path, modification time and size), else ``load(spec)`` (a task's ``load_model``,
    which raises the engine's InputError for a corrupt or foreign file), stored in ``cache``.

    Shared by every workflow's widgets (SR enhance, denoise, LabDCT clean): ``default_path`` is the
    task's bundled model file; when it is missing, ``load("default")`` raises the task's own message."""
    if spec == DEFAULT:
        path = Path(default_path)
        if not path.is_file():
            load(DEFAULT)  # raises the engine's InputError ("no default ... installed")
    else:
        path = Path(spec).expanduser()
        if not path.exists():
            from .._validate import InputError

            raise InputError(f"model file not found: {path}")
        if not path.is_file():
            from .._validate import InputError

            raise InputError(f"model path is not a file: {path}")
    key = _file_key(path)
    model = cache.get("model") if cache.get("key") == key else None
    if model is not None:
        return model, key, True
    model = load(DEFAULT if spec == DEFAULT else str(path))
    cache.clear()
    cache.update(key=key, model=model)  # one dict assignment: safe to read later on the GUI thread
    return model, key, False


def model_file_state(text: str) -> tuple[Path, str | None]:
    """``(path, problem)`` of the model file typed as ``text``: ``problem`` is None when the file exists,
    else what to say ("choose a model file." or "model file not found: …")."""
    p = text.strip()
    path = Path(p).expanduser()
    if p and path.is_file():
        return path, None
    return path, "choose a model file." if not p else f"model file not found: {p}"


class ModelDeviceMixin:
    """The model-file row, the model note and the device picker of a dock widget."""

    # ------------------------------------------------------------------ model
    def _model_file_row(self, path_tip: str, browse_tip: str) -> QHBoxLayout:
        """``self.model_path`` and its Browse… button (``self.model_browse``), in a row; a change of the
        path re-checks the model (``_sync_model``), Browse… calls ``_browse_model``."""
        row = QHBoxLayout()
        self.model_path = QLineEdit()
        self.model_path.setPlaceholderText("path/to/model.safetensors")
        self.model_path.setToolTip(path_tip)
        self.model_browse = QPushButton("Browse…")
        self.model_browse.setToolTip(browse_tip)
        row.addWidget(self.model_path, 1)
        row.addWidget(self.model_browse)
        self.model_browse.clicked.connect(self._browse_model)
        self.model_path.textChanged.connect(self._sync_model)
        return row

    def _model_note_label(self, tooltip: str) -> QLabel:
        self.model_note = QLabel("")
        self.model_note.setWordWrap(True)
        self.model_note.setToolTip(tooltip)
        return self.model_note

    def _show_model_note(self, ok: bool, text: str) -> None:
        """Show ``text`` under the model choice, in the error style when ``ok`` is False."""
        self.model_note.setText(text)
        self.model_note.setStyleSheet("" if ok else ERROR_STYLE)

    def _ask_model_file(self, title: str) -> str:
        """A model file chosen in a file dialog ("" when cancelled)."""
        path, _ = QFileDialog.getOpenFileName(self, title, self.model_path.text(), MODEL_FILES)
        return path

    def _sync_model(self, *_) -> None:
        raise NotImplementedError

    def _show_model_choice(self, default_path: Path, installed_text: str, missing_text: str, describe=None) -> None:
        """The note under a "bundled default / model file" choice (what every widget's ``_sync_model``
        shows): the path row follows the radio buttons; the default's state or the chosen file's problem;
        ``describe(path)`` (a one-line summary from the file's metadata) when the file is usable."""
        default = self.model_default.isChecked()
        self.model_path.setEnabled(not default)
        self.model_browse.setEnabled(not default)
        if default:
            path = Path(default_path)
            ok = path.is_file()
            text = installed_text if ok else missing_text
        else:
            path, problem = model_file_state(self.model_path.text())
            ok, text = problem is None, problem or ""
        if ok and describe is not None:
            try:
                about = describe(path)
                text = f"{text}: {about}." if text and about else (text + "." if text else about)
            except InputError as exc:
                ok, text = False, str(exc)
        self._show_model_note(ok, text)
        self.model_note.setVisible(bool(text))

    def set_model(self, path=None) -> None:
        """Use the bundled default (``None`` / ``"default"``) or the model file ``path``."""
        if path is None or path == DEFAULT:
            self.model_default.setChecked(True)
        else:
            self.model_path.setText(str(path))
            self.model_file_radio.setChecked(True)
            self.settings.save("model_path")  # set here, not typed: no editingFinished to save it
        self._sync_model()

    def model_spec(self):
        """``"default"`` or the chosen model file's path; InputError when no file is chosen."""
        if self.model_default.isChecked():
            return DEFAULT
        p = self.model_path.text().strip()
        if not p:
            raise InputError("choose a model file (or the bundled default model).")
        return str(Path(p).expanduser())

    def _browse_model(self) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ device
    def _device_row(self, does: str = "runs") -> QHBoxLayout:
        """``self.device_combo`` (filled by :meth:`_sync_device`) and ``self.device_note``, in a row; the
        tooltip says where the network ``does`` ("runs", "trains")."""
        self.device_combo = QComboBox()
        self.device_combo.setToolTip(f"Where the network {does}. auto: CUDA if present, else Apple MPS, else the CPU.")
        self.device_note = QLabel("")
        self.device_note.setToolTip("The device 'auto' picks on this computer.")
        row = QHBoxLayout()
        row.addWidget(self.device_combo)
        row.addWidget(self.device_note, 1)
        self.device_combo.currentIndexChanged.connect(self._sync_device)
        return row

    def _sync_device(self, *_) -> None:
        """Offer "auto" and the devices found (once), and say what "auto" picks."""
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
        """The chosen device (None for "auto")."""
        d = self.device_combo.currentText()
        return None if d in ("", "auto") else d
