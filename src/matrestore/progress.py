"""Long work is a generator that yields progress records and returns its result; this module holds the
record types, the one cancel check and the one duration formatter every engine and widget uses.

A progress record is a plain ``dict`` (so it crosses threads and processes and prints as JSON) whose
``kind`` is a :class:`Kind` — a ``str`` enum, so ``rec["kind"] == "step"`` keeps working. The fields of
each kind are written down once, as the ``TypedDict`` classes below; :func:`record` builds one::

    def work(images, *, cancel=None):
        yield record(Kind.SETUP, message="preparing", total=len(images))
        for i, im in enumerate(images):
            if is_cancelled(cancel):
                yield record(Kind.STOPPED, message="stopped", step=i, total=len(images))
                return None
            ...
            yield record(Kind.STEP, step=i + 1, total=len(images), message=f"image {i + 1}")
        return result

    result = drive(work(images), progress=print)
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Callable, Generator, TypedDict

__all__ = [
    "Kind",
    "Record",
    "StepRecord",
    "EpochRecord",
    "PreviewRecord",
    "record",
    "drive",
    "is_cancelled",
    "format_duration",
    "eta_text",
    "Cancelled",
    "run_blocking",
]


class Kind(str, Enum):
    """What a progress record reports."""

    SETUP = "setup"  # the job has prepared its data: derived facts (sizes, phase boundaries, device)
    PHASE = "phase"  # a new phase begins (e.g. "reference features", "tiles")
    STEP = "step"  # one unit of work done: ``step`` of ``total``
    EPOCH = "epoch"  # training: an epoch ended, with validation figures in ``val``
    PREVIEW = "preview"  # arrays to show (``images``: name -> 2-D array)
    WARNING = "warning"  # something the user should know, work goes on
    DONE = "done"  # finished; the generator returns the result next
    STOPPED = "stopped"  # cancelled; a normal outcome (training has saved a checkpoint)

    def __str__(self) -> str:  # f"{Kind.STEP}" == "step"
        return self.value


class Record(TypedDict, total=False):
    """Fields every record may carry."""

    kind: Kind
    message: str
    step: int  # units done (in this phase)
    total: int  # units in all (None/0: unknown)
    elapsed_s: float  # seconds since the job (or the phase) began
    phase: str


class StepRecord(Record, total=False):
    epoch: int
    losses: dict  # loss name -> value
    lr: float  # learning rate


class EpochRecord(Record, total=False):
    epoch: int
    epochs: int
    val: dict  # validation figures: method/metric -> value
    best: bool
    checkpoint: str


class PreviewRecord(Record, total=False):
    images: dict  # name -> 2-D numpy array


def record(kind: Kind | str, **fields: Any) -> dict:
    """A progress record of ``kind`` (a :class:`Kind` or its value) with ``fields``."""
    return {"kind": Kind(kind), **fields}


def drive(gen: Generator, progress: Callable[[dict], None] | None = None):
    """Run ``gen`` to the end, passing each yielded record to ``progress``; return its return value."""
    while True:
        try:
            rec = next(gen)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(rec)


def is_cancelled(cancel) -> bool:
    """The one cancel check: ``cancel`` is ``None``, an event (``is_set()``), a callable or a bool."""
    if cancel is None:
        return False
    if callable(getattr(cancel, "is_set", None)):
        return bool(cancel.is_set())
    if callable(cancel):
        return bool(cancel())
    return bool(cancel)


def format_duration(seconds: float) -> str:
    """A duration for people: ``"0.4 s"``, ``"12 s"``, ``"3 min"``, ``"1.5 h"`` (ms below 0.1 s)."""
    s = abs(float(seconds))
    if s < 0.1:
        return f"{s * 1e3:.3g} ms"
    if s < 10:
        return f"{s:.1f} s"
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def eta_text(step: int, total: int, elapsed_s: float | None, unit: str = "") -> str:
    """``"tile 3/12 · 4.2 s · about 13 s left"`` (``unit`` names the step; empty for none)."""
    if not total or elapsed_s is None:
        return ""
    head = f"{unit} {step}/{total}".strip()
    text = f"{head} · {format_duration(elapsed_s)}"
    if 0 < step < total:
        text += f" · about {format_duration(elapsed_s / step * (total - step))} left"
    return text


class Cancelled(Exception):
    """Raised inside a blocking computation (e.g. by :class:`matrestore.nets.hooks.ForwardMonitor`) to
    stop it at the next checkpoint; the generator that started it turns it into a STOPPED record."""


def run_blocking(fn: Callable[[], Any], heartbeat: Callable[[], dict | None], poll_s: float = 0.5):
    """Run ``fn()`` in a helper thread and yield ``heartbeat()`` every ``poll_s`` seconds while it runs
    (a generator: ``result = yield from run_blocking(...)``), so that a long call inside a job still
    reports progress. Returns what ``fn`` returns and re-raises what it raises (:class:`Cancelled` too).

    Thread-local state does not cross into the helper thread: ``fn`` enters ``torch.no_grad()`` /
    autocast itself.
    """
    import threading

    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = exc

    th = threading.Thread(target=target, name="matrestore-blocking", daemon=True)
    th.start()
    while True:
        th.join(poll_s)
        if not th.is_alive():
            break
        rec = heartbeat()
        if rec is not None:
            yield rec
    if "error" in box:
        raise box["error"]
    return box.get("value")
