"""What the dock widgets (Compare, Enhance, Scan-enhance-rescan, Train) share: layer pickers that follow
the viewer's layer list, the run / cancel / progress / status controls, remembered settings with a
"Restore defaults" button, the "Advanced" toggle, reference and folder pickers, small control makers
(:func:`combo_box`, :func:`spin_box`, :func:`radio_row`, :func:`selectable_label`) and adding or
updating an output layer (:func:`put_image`).

- :class:`LayerCombo`: a combo box of layers (optionally with a "(none)" entry) that keeps the chosen
  layer, by its key (:func:`layer_key`), when the layer list changes (added, removed, reordered, renamed layers).
- :class:`LayerCheckList`: a list of layers to check (candidates, references); layers that cannot be
  used stay visible, greyed out with the reason; it remembers what the user checked across refills.
- :class:`LayerDock`: the base of the dock widgets: follows the layer list (``_refresh_layers``),
  stops its runner and lets go of the viewer's events when closed (then ``_closed`` for the rest).
- :func:`layer_problem`: why an image layer cannot be used (RGB, multiscale, not 2-D).
"""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ._settings import WidgetSettings
from ._worker import State, TaskRunner

__all__ = ["LAYER_EVENTS", "NONE", "LayerCheckList", "LayerCombo", "LayerDock", "combo_box", "image_layers",
           "layer_key", "layer_problem", "put_image", "radio_row", "same_layer", "selectable_label", "spatial_units",
           "spin_box"]

LAYER_EVENTS = ("inserted", "removed", "reordered", "renamed")  # the layer-list events a picker follows
NONE = "(none)"  # the text of the None entry of a LayerCombo
_NOTHING = object()  # no choice made yet (not even "(none)")


def layer_key(layer):
    """A stable key of a layer: napari's ``unique_id``. Not ``id()`` and not ``is``: napari hands plugins
    a ``PublicOnlyProxy`` viewer whose every attribute access wraps the layer in a new proxy object (and
    Python reuses the ``id`` of a freed layer)."""
    if layer is None:
        return None
    key = getattr(layer, "unique_id", None)
    return key if key is not None else id(layer)


def same_layer(a, b) -> bool:
    """Whether ``a`` and ``b`` are the same layer (also through napari's proxies); False for ``None``."""
    return a is not None and b is not None and layer_key(a) == layer_key(b)


def image_layers(viewer) -> list:
    """The viewer's image layers, in layer-list order."""
    from napari.layers import Image

    return [lyr for lyr in viewer.layers if isinstance(lyr, Image)]


def layer_problem(layer, multiscale_ok: bool = False) -> str | None:
    """Why an image layer cannot be compared or enhanced (None when it can: 2-D, one channel, one scale;
    multiscale too with ``multiscale_ok``, for the out-of-core inputs)."""
    if getattr(layer, "rgb", False):
        return "RGB: convert it to greyscale first"
    if getattr(layer, "multiscale", False) and not multiscale_ok:
        return "multiscale: not supported"
    if layer.ndim != 2:
        return f"{layer.ndim}-D: only 2-D images can be compared"
    return None


class LayerCombo(QComboBox):
    """A combo box of layers; ``None`` among them is shown as "(none)"."""

    def __init__(self, tooltip: str = "", parent=None):
        super().__init__(parent)
        self.choices: list = []
        self.setToolTip(tooltip)

    def layer(self):
        """The chosen layer (None for "(none)" or when there is nothing to choose)."""
        i = self.currentIndex()
        return self.choices[i] if 0 <= i < len(self.choices) else None

    def fill(self, layers, default=None) -> None:
        """Offer ``layers``; the chosen layer stays chosen when it is still offered, else ``default``
        (nothing chosen when that is not offered either). Emits no signals."""
        keep = layer_key(self.layer()) if self.currentIndex() >= 0 else _NOTHING
        self.choices = list(layers)
        keys = [layer_key(lyr) for lyr in self.choices]
        self.blockSignals(True)
        self.clear()
        self.addItems([NONE if lyr is None else lyr.name for lyr in self.choices])
        pick = keep if keep in keys else layer_key(default)
        self.setCurrentIndex(keys.index(pick) if pick in keys else -1)
        self.blockSignals(False)


class LayerCheckList(QListWidget):
    """A list of layers with check boxes; those that cannot be used are greyed out with the reason."""

    def __init__(self, role: str, tooltip: str = "", max_height: int = 110, parent=None):
        super().__init__(parent)
        self.role = role  # "a candidate", "a reference": for the tooltip of a greyed-out layer
        self.layers: list = []
        self.setToolTip(tooltip)
        self.setMaximumHeight(max_height)
        self._on: set = set()  # keys (layer_key) of the layers the user checked ...
        self._off: set = set()  # ... and unchecked: both survive refills of the list
        self.itemChanged.connect(self._remember)

    def _remember(self, item) -> None:
        key, on = layer_key(self.layer_of(item)), item.checkState() == Qt.Checked
        (self._on.add if on else self._on.discard)(key)
        (self._off.discard if on else self._off.add)(key)

    def offer(self, rows, checked_by_default=None) -> None:
        """Show ``rows`` of ``(layer, why, label)`` (``why``: None for a usable layer, else why it is greyed
        out), checked as the user left them; a layer the user never touched is checked when
        ``checked_by_default(layer)`` says so (e.g. layers marked as references)."""
        self.fill([(lyr, why, label, layer_key(lyr) in self._on or (
            checked_by_default is not None and checked_by_default(lyr) and layer_key(lyr) not in self._off))
            for lyr, why, label in rows])

    def fill(self, rows) -> None:
        """Show ``rows`` of ``(layer, why, label, checked)``: ``why`` None for a usable layer (shown as
        ``label``, checked or not), else the reason it is greyed out. Emits no signals."""
        self.blockSignals(True)
        self.clear()
        self.layers = []
        for lyr, why, label, checked in rows:
            item = QListWidgetItem(label if why is None else f"{lyr.name}  ({why})")
            if why is None:
                item.setFlags(Qt.ItemIsEnabled | Qt.ItemIsUserCheckable | Qt.ItemIsSelectable)
                item.setCheckState(Qt.Checked if checked else Qt.Unchecked)
                h, w = (int(n) for n in lyr.data.shape[-2:])
                item.setToolTip(f"{lyr.name}: {h}×{w} px")
            else:
                item.setFlags(Qt.NoItemFlags)
                item.setToolTip(f"{lyr.name} cannot be {self.role}: {why}.")
            self.addItem(item)
            self.layers.append(lyr)
        self.blockSignals(False)

    def layer_of(self, item):
        return self.layers[self.row(item)]

    def checked_layers(self) -> list:
        """The checked (usable) layers, in list order."""
        out = []
        for i, lyr in enumerate(self.layers):
            item = self.item(i)
            if item.flags() & Qt.ItemIsEnabled and item.checkState() == Qt.Checked:
                out.append(lyr)
        return out

    def set_checked(self, names) -> None:
        """Check exactly the usable layers named in ``names`` (remembered as the user's choice)."""
        names = set(names)
        for i, lyr in enumerate(self.layers):
            item = self.item(i)
            if item.flags() & Qt.ItemIsUserCheckable:
                item.setCheckState(Qt.Checked if lyr.name in names else Qt.Unchecked)


def selectable_label(tooltip: str) -> QLabel:
    """A word-wrapped label whose text can be selected (and copied) with the mouse."""
    label = QLabel("")
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextSelectableByMouse)
    label.setToolTip(tooltip)
    return label


def combo_box(items, tooltip: str) -> QComboBox:
    """A combo box offering ``items`` (texts), the first chosen."""
    combo = QComboBox()
    combo.addItems(list(items))
    combo.setToolTip(tooltip)
    return combo


def spin_box(tooltip: str, *, suffix: str = "", special: str = "", double: bool = False, **kwargs):
    """A QSpinBox (QDoubleSpinBox with ``double``) made with ``kwargs`` (minimum, maximum, value, …), its
    ``suffix`` and ``special`` text (shown for the minimum) when given."""
    box = (QDoubleSpinBox if double else QSpinBox)(**kwargs)
    if suffix:
        box.setSuffix(suffix)
    if special:
        box.setSpecialValueText(special)
    box.setToolTip(tooltip)
    return box


def radio_row(*choices: tuple[str, str]) -> tuple:
    """A row of radio buttons, one per ``(text, tooltip)`` in ``choices``, the first checked; returns the
    row (a layout) and the buttons."""
    row = QHBoxLayout()
    buttons = []
    for text, tip in choices:
        btn = QRadioButton(text)
        btn.setToolTip(tip)
        row.addWidget(btn)
        buttons.append(btn)
    buttons[0].setChecked(True)
    row.addStretch(1)
    return (row, *buttons)


def spatial_units(layer):
    """The spatial units (last two axes) to give a layer made from ``layer``: exactly its own napari
    ``units`` (nm / µm from matrestore's reader, pixels otherwise). Every output, preview and registered
    layer takes them from its source, so the scale bar and napari's unit check agree across layers."""
    units = tuple(getattr(layer, "units", ())[-2:])
    return units or None


def _put_layer(viewer, kind: str, name, data, scale, translate, metadata, units=None, **add_kwargs):
    """Update the layer of ``kind`` ("image" / "labels") called ``name`` in place (data, scale, translate,
    metadata, units) or add it with ``add_kwargs``. ``units`` (napari's spatial units) are a convenience for
    the scale bar: a unit napari does not understand is left out."""
    from napari.layers import Image, Labels

    cls = {"image": Image, "labels": Labels}[kind]
    if name in viewer.layers and isinstance(viewer.layers[name], cls):
        layer = viewer.layers[name]
        layer.data = data
        layer.scale = scale
        layer.translate = translate
        layer.metadata = metadata
        if units is not None:
            try:
                layer.units = units
            except Exception:  # noqa: BLE001 - units are a convenience for the scale bar only
                pass
        return layer
    add = getattr(viewer, f"add_{kind}")
    kwargs = dict(name=name, scale=scale, translate=translate, metadata=metadata, **add_kwargs)
    if units is not None:
        try:
            return add(data, units=units, **kwargs)
        except Exception:  # noqa: BLE001 - a unit napari does not understand: add without it
            pass
    return add(data, **kwargs)


def put_image(viewer, name, data, scale, translate, metadata, units=None, **add_kwargs):
    """Update the image layer called ``name`` in place (data, scale, translate, metadata; a second run)
    or add it with ``add_kwargs`` (contrast limits, colormap, …)."""
    return _put_layer(viewer, "image", name, data, scale, translate, metadata, units, **add_kwargs)


def put_labels(viewer, name, data, scale, translate, metadata, units=None, contour: int | None = None, **add_kwargs):
    """Update the Labels layer called ``name`` in place or add it (as :func:`put_image` does for images);
    ``contour`` px draws outlines only."""
    layer = _put_layer(viewer, "labels", name, data, scale, translate, metadata, units, **add_kwargs)
    if contour is not None:
        layer.contour = int(contour)
    return layer


class LayerDock(QWidget):
    """Base of the dock widgets: a viewer, layer pickers refreshed by :meth:`_refresh_layers` whenever
    the layer list changes, a :class:`TaskRunner` stopped when the widget closes, and remembered
    settings (:attr:`settings`, see :mod:`._settings`)."""

    settings_group = ""  # the QSettings group of the remembered settings

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.settings = WidgetSettings(self.settings_group)

    # ------------------------------------------------------------------ layers
    def _image_layers(self) -> list:
        return image_layers(self.viewer)

    def _refresh_layers(self, event=None) -> None:
        raise NotImplementedError

    def _watch_layers(self) -> None:
        """Refresh the pickers now and whenever layers are added, removed, reordered or renamed."""
        ev = self.viewer.layers.events
        for name in LAYER_EVENTS:
            getattr(ev, name).connect(self._refresh_layers)
        self._refresh_layers()

    @staticmethod
    def _unoffered_label(tooltip: str = "Image layers that are not offered in the pickers, and why.") -> QLabel:
        label = QLabel("")
        label.setWordWrap(True)
        label.setToolTip(tooltip)
        return label

    def _show_unoffered(self, images) -> None:
        """Name the image layers the pickers do not offer, and why, in ``self.invalid_note``."""
        bad = [(lyr.name, layer_problem(lyr)) for lyr in images if layer_problem(lyr) is not None]
        self.invalid_note.setText("Not offered: " + "; ".join(f"'{n}' ({why})" for n, why in bad) if bad else "")
        self.invalid_note.setVisible(bool(bad))

    # ------------------------------------------------------------------ options
    def _advanced_toggle(self, tooltip: str) -> QToolButton:
        """An "Advanced" arrow button (``self.adv_toggle``) that shows or hides ``self.adv_box``."""
        self.adv_toggle = QToolButton()
        self.adv_toggle.setText("Advanced")
        self.adv_toggle.setCheckable(True)
        self.adv_toggle.setChecked(False)
        self.adv_toggle.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.adv_toggle.setArrowType(Qt.RightArrow)
        self.adv_toggle.setStyleSheet("QToolButton { border: none; }")
        self.adv_toggle.setToolTip(tooltip)
        self.adv_toggle.toggled.connect(self._toggle_advanced)
        return self.adv_toggle

    def _toggle_advanced(self, on: bool) -> None:
        self.adv_toggle.setArrowType(Qt.DownArrow if on else Qt.RightArrow)
        self.adv_box.setVisible(on)

    def _references_box(self, title: str, role: str, list_tip: str, max_height: int, folder_tip: str) -> QGroupBox:
        """A group of the reference pickers: ``self.ref_list`` (image layers to check; ``role``, ``list_tip``
        and ``max_height`` as for :class:`LayerCheckList`) and a folder of reference images
        (``self.ref_folder``, ``self.ref_browse``; remembered as "reference_folder")."""
        box = QGroupBox(title)
        lay = QVBoxLayout(box)
        self.ref_list = LayerCheckList(role, list_tip, max_height=max_height)
        lay.addWidget(self.ref_list)
        row, self.ref_folder, self.ref_browse = self._folder_row(
            "and/or a folder of reference images", folder_tip, "Choose the folder of reference images.",
            "Folder of reference images", "reference_folder")
        lay.addLayout(row)
        return box

    def _folder_row(self, placeholder: str, tooltip: str, browse_tip: str, title: str,
                    key: str) -> tuple[QHBoxLayout, QLineEdit, QPushButton]:
        """A folder path (clearable) and its Browse… button, in a row; a folder chosen with the button is
        remembered as the setting ``key`` (typed ones through the binding)."""
        edit = QLineEdit()
        edit.setPlaceholderText(placeholder)
        edit.setClearButtonEnabled(True)
        edit.setToolTip(tooltip)
        browse = QPushButton("Browse…")
        browse.setToolTip(browse_tip)
        row = QHBoxLayout()
        row.addWidget(edit, 1)
        row.addWidget(browse)
        browse.clicked.connect(lambda *_: self._browse_dir(edit, title, key))
        return row, edit, browse

    def _browse_dir(self, edit: QLineEdit, title: str, key: str) -> None:
        path = QFileDialog.getExistingDirectory(self, title, edit.text())
        if path:
            edit.setText(path)
            self.settings.save(key)

    # ------------------------------------------------------------------ remembered settings
    def _remember(self, controls: dict) -> None:
        """Remember ``{key: control}`` between sessions; each control's current value is its default."""
        for key, control in controls.items():
            self.settings.bind(key, control)

    def _defaults_button(self, tooltip: str) -> QPushButton:
        self.defaults_btn = QPushButton("Restore defaults")
        self.defaults_btn.setToolTip(tooltip)
        self.defaults_btn.clicked.connect(self.restore_defaults)
        return self.defaults_btn

    def _defaults_row(self, tooltip: str) -> QHBoxLayout:
        """A row with a small, right-aligned "Restore defaults" button."""
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self._defaults_button(tooltip))
        return row

    def restore_defaults(self) -> None:
        """Set the remembered settings back to their defaults (and forget the stored values)."""
        self.settings.restore_defaults()

    # ------------------------------------------------------------------ running
    def _new_job(self) -> dict | None:
        """The Run button's job from :meth:`_collect` (kept as ``self._job``); ``None`` while a run is on, or
        after showing the error of a wrong input (nothing is started then)."""
        if self.runner.is_running:
            return None
        from .._validate import InputError

        try:
            job = self._collect()
        except InputError as exc:
            self.runner.fail(exc)
            return None
        self._job = job
        return job

    def _add_run_controls(self, lay, run: tuple[str, str], cancel_tip: str, progress: tuple[str, str],
                          step_tip: str) -> None:
        """Run and Cancel buttons, progress bar, step label and status label (``run``: text, tooltip;
        ``progress``: bar format, tooltip), added to the layout ``lay``; then the runner behind them."""
        lay.addLayout(self._run_buttons(run, cancel_tip))
        self._add_progress(lay, progress, step_tip)
        lay.addWidget(self._status_label())

    def _run_buttons(self, run: tuple[str, str], cancel_tip: str, extra=()) -> QHBoxLayout:
        """A row of the Run (``run``: text, tooltip) and Cancel buttons, then the buttons ``extra``."""
        brow = QHBoxLayout()
        self.run_btn = QPushButton(run[0])
        self.run_btn.setToolTip(run[1])
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setToolTip(cancel_tip)
        brow.addWidget(self.run_btn, 1)
        for btn in (self.cancel_btn, *extra):
            brow.addWidget(btn)
        self.run_btn.clicked.connect(self.run)
        self.cancel_btn.clicked.connect(self.cancel)
        return brow

    def _add_progress(self, lay, progress: tuple[str, str], step_tip: str) -> None:
        """The progress bar (``progress``: format, tooltip) and the step label, added to ``lay``."""
        self.progress_bar = QProgressBar()
        self.progress_bar.setToolTip(progress[1])
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setFormat(progress[0])
        self.progress_label = QLabel("")
        self.progress_label.setToolTip(step_tip)
        lay.addWidget(self.progress_bar)
        lay.addWidget(self.progress_label)

    def _status_label(self) -> QLabel:
        self.status = selectable_label("Result or error of the last run.")
        return self.status

    def _start_runner(self, *labels) -> None:
        """The runner of this widget's jobs (``labels``: progress bar, step label, status label)."""
        self.runner = TaskRunner(*labels, parent=self)
        self.runner.state_changed.connect(self._follow_state)
        self.runner.stop_when_closed(self)
        self._follow_state(State.IDLE)

    def run(self):
        raise NotImplementedError

    def cancel(self) -> None:
        self.runner.cancel()

    def _follow_state(self, state) -> None:
        running = state is State.RUNNING
        self.run_btn.setEnabled(not running)
        self.cancel_btn.setEnabled(running)

    # ------------------------------------------------------------------ teardown
    def closeEvent(self, event):  # noqa: N802 (Qt API)
        ended = self.runner.stop()  # (also done by the runner's event filter)
        ev = self.viewer.layers.events
        for name in LAYER_EVENTS:
            try:
                getattr(ev, name).disconnect(self._refresh_layers)
            except (TypeError, ValueError, RuntimeError):
                pass
        self._closed(ended)
        super().closeEvent(event)

    def _closed(self, ended: bool) -> None:
        """What else to do when the widget closes (``ended``: whether its job has ended)."""
