"""The command line's view of a long job: one tqdm bar driven by :mod:`matrestore.progress` records, for
every workflow's CLI (``matrestore denoise ...``, ``matrestore labdct ...``)."""

from __future__ import annotations

import sys
from typing import Callable

__all__ = ["drive_with_bar"]


def drive_with_bar(gen, desc: str, unit: str = "step", on_record: Callable[[dict], None] | None = None):
    """Run the generator ``gen`` to its end with a tqdm bar on stderr and return its value.

    The bar follows records that carry a ``total`` (a new bar when the total or ``phase`` changes, named by
    the phase or ``desc``), shows ``losses`` as a postfix, prints SETUP and WARNING messages on stderr;
    ``on_record`` sees every record too (e.g. to print validation figures)."""
    from tqdm import tqdm

    bar, label = None, None
    try:
        while True:
            try:
                rec = next(gen)
            except StopIteration as stop:
                return stop.value
            kind = str(rec.get("kind"))
            if kind in ("setup", "warning") and rec.get("message"):
                print(f"matrestore: {rec['message']}", file=sys.stderr)
            if rec.get("total") and kind in ("step", "phase", "epoch", "done", "stopped"):
                name = rec.get("phase") or desc
                if bar is None or bar.total != rec["total"] or name != label:
                    if bar is not None:
                        bar.close()
                    bar, label = tqdm(total=rec["total"], desc=name, unit=unit, leave=False, file=sys.stderr,
                                      disable=None), name
                bar.n = int(rec.get("step") or 0)
                if rec.get("losses"):
                    bar.set_postfix({k: f"{v:.4g}" for k, v in rec["losses"].items()})
                bar.refresh()
            if on_record is not None:
                on_record(rec)
    finally:
        if bar is not None:
            bar.close()
