"""One helper for every dock widget that runs long work: start it off the GUI thread, show its
progress, cancel it, report its errors, and tell the widget which state it is in.

The work is a *job*: a function or generator function that takes a ``cancel`` keyword (an object
with ``is_set()``, checked between steps), yields progress records (dicts with ``step``, ``total``
and ``message``; ``total`` None or 0 means "unknown") and returns its result::

    runner = TaskRunner(progress_bar, progress_label, status_label)
    runner.state_changed.connect(widget.follow_state)         # IDLE/RUNNING/STOPPED/DONE/FAILED
    runner.start(job, image, on_returned=widget.show_result)  # job(image, cancel=event)
    runner.cancel()                                           # Cancel button
    runner.stop()                                             # closeEvent: cancel and wait

The job runs in a ``napari.qt.threading`` worker; every callback (``on_returned``, ``on_yielded``)
runs on the GUI thread, the only place where layers may be touched. Errors never escape as
tracebacks into the GUI: :class:`~matrestore._validate.InputError` becomes its message (in red in the
status label and as a napari warning), any other exception a short message plus the traceback in
the log. Cancelling is a normal outcome (STOPPED), not an error.
"""

from __future__ import annotations

import inspect
import logging
import threading
import traceback
from enum import Enum
from typing import Any, Callable

from qtpy.QtCore import QEvent, QObject, Qt, Signal

from .._validate import InputError
from ..progress import Kind

__all__ = ["State", "TaskRunner", "ERROR_STYLE", "relay"]

log = logging.getLogger("matrestore")
ERROR_STYLE = "color: #ff6060;"


class State(str, Enum):
    IDLE = "idle"
    RUNNING = "running"
    STOPPED = "stopped"
    DONE = "done"
    FAILED = "failed"


class _CancelEvent(threading.Event):
    """A cancel flag that is also set when the worker is asked to quit (e.g. by napari's task
    manager when the window closes), so the job sees every kind of cancel through ``is_set()``."""

    worker = None

    def is_set(self) -> bool:
        w = self.worker
        return super().is_set() or bool(w is not None and w.abort_requested)


class _Outcome:
    """What the job ended with, carried from the worker thread to the GUI thread."""

    def __init__(self, kind: str, value: Any = None, tb: str = ""):
        self.kind, self.value, self.tb = kind, value, tb


def relay(gen, change: Callable[[dict], dict]):
    """Yield ``change(record)`` for every record ``gen`` yields; return what ``gen`` returns (for a job
    that passes an engine's progress on with its own messages: ``result = yield from relay(gen, f)``)."""
    while True:
        try:
            rec = next(gen)
        except StopIteration as stop:
            return stop.value
        yield change(rec)


def _drive(job: Callable, args: tuple, kwargs: dict):
    """Run ``job`` in the worker thread: pass its progress records on, catch every error."""
    try:
        out = job(*args, **kwargs)
        result = (yield from out) if inspect.isgenerator(out) else out
        return _Outcome("ok", result)
    except InputError as exc:
        return _Outcome("input", exc)
    except Exception as exc:  # noqa: BLE001 - reported on the GUI thread with its traceback
        return _Outcome("error", exc, traceback.format_exc())


class TaskRunner(QObject):
    """Runs one job at a time for a widget (see the module docstring).

    Parameters
    ----------
    progress_bar : QProgressBar, optional
        Shows ``step`` of ``total`` (busy indicator when the total is unknown); hidden when idle.
    progress_label : QLabel, optional
        Shows the progress record's ``message`` while running.
    status_label : QLabel, optional
        Final messages: errors in red, "stopped" after a cancel.
    notify : bool
        Also show errors as napari notifications.
    """

    state_changed = Signal(object)  # State

    def __init__(self, progress_bar=None, progress_label=None, status_label=None, notify: bool = True, parent=None):
        super().__init__(parent)
        self.progress_bar = progress_bar
        self._bar_format = None  # the widget's own bar format, restored for records without a phase
        self.progress_label = progress_label
        self.status_label = status_label
        self.notify = notify
        self.worker = None
        self.cancel_event: _CancelEvent | None = None
        self.last_error: str | None = None
        self._state = State.IDLE
        self._finished = threading.Event()
        self._finished.set()
        self._callbacks: dict = {}
        self._run_id = 0
        self._watched = None
        self._show_progress(False)

    # ------------------------------------------------------------------ state
    @property
    def state(self) -> State:
        return self._state

    @property
    def is_running(self) -> bool:
        return self._state is State.RUNNING

    def _set_state(self, state: State) -> None:
        self._state = state
        if state is not State.RUNNING:
            self._show_progress(False)
        self.state_changed.emit(state)

    # ------------------------------------------------------------------ control
    def start(self, job: Callable, *args, on_returned: Callable | None = None, on_yielded: Callable | None = None,
              on_stopped: Callable | None = None, message: str = "working…", **kwargs):
        """Start ``job(*args, cancel=event, **kwargs)`` in a worker thread; returns the worker.

        ``on_returned(result)`` runs on the GUI thread when the job finishes (state DONE);
        ``on_stopped(result)`` when it returns after a cancel (result None if it was aborted).
        """
        from napari.qt.threading import create_worker

        if self.is_running:
            raise RuntimeError("a job is already running; cancel it first.")
        cancel = _CancelEvent()
        self.cancel_event = cancel
        self.last_error = None
        self._callbacks = {"returned": on_returned, "yielded": on_yielded, "stopped": on_stopped}
        self._finished = done = threading.Event()
        worker = create_worker(_drive, job, args, {**kwargs, "cancel": cancel}, _start_thread=False,
                               _ignore_errors=True)
        cancel.worker = worker
        self._run_id += 1
        run = self._run_id  # signals of an older worker, or after stop(), are ignored
        live = lambda: run == self._run_id  # noqa: E731
        worker.yielded.connect(lambda rec: live() and self._on_yielded(rec))
        worker.returned.connect(lambda out: live() and self._on_returned(out))
        worker.errored.connect(lambda exc: live() and self._on_errored(exc))
        worker.finished.connect(lambda: live() and self._on_finished())
        # set from the worker thread itself, so stop() can wait without running the event loop
        worker.finished.connect(done.set, Qt.DirectConnection)
        self.worker = worker
        self._watch_window()  # the widget is docked by now
        self._set_message("")
        self._progress({"message": message})
        self._show_progress(True)
        self._set_state(State.RUNNING)
        worker.start()
        return worker

    def cancel(self) -> None:
        """Ask the job to stop: sets the cancel event, which every job checks between its steps (one tile
        batch, one training step), so that it ends through its own cancel branch (a training run saves
        its checkpoint there). The worker is not killed at its next yield."""
        if self.cancel_event is not None:
            self.cancel_event.set()
        if self.worker is not None and self.is_running and self.progress_label is not None:
            self.progress_label.setText("cancelling…")

    def wait(self, timeout: float = 10.0) -> bool:
        """Block until the worker thread has finished (True) or ``timeout`` seconds passed."""
        return self._finished.wait(timeout)

    def stop(self, timeout: float = 10.0) -> bool:
        """For closing: cancel, detach from the worker (no callback runs any more, the widget may be
        going away) and wait for its thread to end; a job that has not ended after ``timeout`` seconds
        is quit at its next yield. Returns False if it did not end in time."""
        worker = self.worker
        self.cancel()
        self._callbacks = {}
        self._run_id += 1
        self.worker = None
        if self._state is State.RUNNING:
            self._state = State.STOPPED
        if self.wait(timeout):
            return True
        if worker is not None:
            worker.quit()
        return self.wait(1.0)

    def fail(self, error: BaseException | str, tb: str = "") -> None:
        """Report an error (also one found before starting) the same way as a failed job.

        A problem found before starting (bad input the user can fix) is shown in red in the status
        label only: a napari toast would outlive the fix. Errors of a running job also raise a toast."""
        running = self._state is State.RUNNING
        if isinstance(error, InputError) or isinstance(error, str):
            text = str(error)
            self._set_message(text, error=True)
            if self.notify and running:
                self._notify("warning", text)
        else:
            text = f"unexpected error: {type(error).__name__}: {error} (details in the log)"
            log.error("matrestore task failed\n%s", tb or "".join(traceback.format_exception(error)))
            self._set_message(text, error=True)
            if self.notify:
                self._notify("error", text)
        self.last_error = text
        self._set_state(State.FAILED)

    def stop_when_closed(self, widget) -> None:
        """:meth:`stop` the job when ``widget`` closes, or the window it is docked in is closed
        programmatically (``viewer.close()``). When a user closes the window, napari asks to confirm
        while tasks run and then quits the worker, which the job sees through its cancel event."""
        self._watched = widget
        widget.installEventFilter(self)

    def eventFilter(self, obj, event):  # noqa: N802 (Qt API)
        if event.type() == QEvent.Close and (obj is self._watched or not event.spontaneous()):
            if self.is_running:
                self.stop()
        return False

    def _watch_window(self) -> None:
        top = self._watched.window() if self._watched is not None else None
        if top is not None and top is not self._watched:
            top.installEventFilter(self)  # installing twice keeps one filter; no reference kept here

    # ------------------------------------------------------------------ worker signals (GUI thread)
    def _cancelled(self) -> bool:
        return self.cancel_event is not None and self.cancel_event.is_set()

    def _on_yielded(self, record) -> None:
        if isinstance(record, dict):
            self._progress(record)
        cb = self._callbacks.get("yielded")
        if cb is not None:
            cb(record)

    def _on_returned(self, outcome: _Outcome) -> None:
        if outcome.kind == "ok":
            if self._cancelled():
                self._stopped(outcome.value)
                return
            cb = self._callbacks.get("returned")
            self._set_state(State.DONE)
            if cb is not None:
                try:
                    cb(outcome.value)
                except InputError as exc:
                    self.fail(exc)
                except Exception as exc:  # noqa: BLE001
                    self.fail(exc, traceback.format_exc())
        else:
            self.fail(outcome.value, outcome.tb)

    def _on_errored(self, exc) -> None:  # only for errors outside the job (the job's are caught)
        self.fail(exc, "".join(traceback.format_exception(exc)))

    def _on_finished(self) -> None:
        if self._state is State.RUNNING:  # aborted at a yield: no result came back
            self._stopped(None)
        self.worker = None

    def _stopped(self, result) -> None:
        self._set_message("stopped.")
        self._set_state(State.STOPPED)
        cb = self._callbacks.get("stopped")
        if cb is not None:
            cb(result)

    # ------------------------------------------------------------------ display
    def _progress(self, record: dict) -> None:
        """Show a progress record (:mod:`matrestore.progress`): ``fraction`` (0..1) as a percentage,
        else ``step`` of ``total``; ``phase`` names what the bar counts; WARNING records become a napari
        warning and leave the bar alone."""
        if record.get("kind") == Kind.WARNING:
            from napari.utils.notifications import show_warning

            show_warning(f"matrestore: {record.get('message', '')}")
            return
        bar = self.progress_bar
        if bar is not None:
            if self._bar_format is None:
                self._bar_format = bar.format()
            total = record.get("total") or 0
            phase = record.get("phase")
            if record.get("fraction") is not None:
                bar.setRange(0, 1000)
                bar.setValue(int(round(1000 * min(max(float(record["fraction"]), 0.0), 1.0))))
                bar.setFormat(f"{phase}: %p %" if phase else "%p %")
            elif total:
                bar.setRange(0, int(total))
                bar.setValue(int(record.get("step", 0)))
                bar.setFormat(f"{phase}: %v / %m" if phase else self._bar_format)
            elif "step" not in record:
                bar.setRange(0, 0)  # busy indicator
        if self.progress_label is not None and record.get("message"):
            self.progress_label.setText(str(record["message"]))

    def _show_progress(self, visible: bool) -> None:
        for w in (self.progress_bar, self.progress_label):
            if w is not None:
                w.setVisible(visible)

    def _set_message(self, text: str, error: bool = False) -> None:
        if self.status_label is not None:
            self.status_label.setText(text)
            self.status_label.setStyleSheet(ERROR_STYLE if error else "")

    @staticmethod
    def _notify(kind: str, text: str) -> None:
        try:
            from napari.utils.notifications import show_error, show_warning
        except ImportError:  # pragma: no cover
            return
        (show_warning if kind == "warning" else show_error)(text)
