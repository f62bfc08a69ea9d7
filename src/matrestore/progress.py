"""Long work is a generator that yields progress records and returns its result; this drives one."""

from __future__ import annotations

from typing import Callable, Generator


def drive(gen: Generator, progress: Callable[[dict], None] | None = None):
    """Run ``gen`` to the end, passing each yielded record to ``progress``; return its return value."""
    while True:
        try:
            rec = next(gen)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(rec)
