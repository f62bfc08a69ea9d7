"""Progress and cancel inside one forward pass: :class:`ForwardMonitor` counts the calls of a network's
parameterised layers (convolutions, linear layers) and raises :class:`~matrestore.progress.Cancelled`
at the next layer once a cancel flag is set. A job that runs a long forward pass (a large tile on the
CPU) in :func:`matrestore.progress.run_blocking` can then report "a fraction of this tile done" and stop
within one layer's time instead of at the end of the tile."""

from __future__ import annotations

import torch
from torch import nn

from ..progress import Cancelled, is_cancelled

__all__ = ["ForwardMonitor"]


def _leaf_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.ConvTranspose2d))]


class ForwardMonitor:
    """Context manager over ``model``'s parameterised layers::

        with ForwardMonitor(model, cancel) as mon:
            out = model(x)             # raises Cancelled at the next layer once cancel is set
        mon.calls                      # layer calls so far; mon.per_pass after one finished pass

    ``fraction(calls_per_pass)`` estimates how much of the current pass is done: after the first
    :meth:`end_pass` the measured number of calls per pass is used, before it the number of layers.
    """

    def __init__(self, model: nn.Module, cancel=None):
        self.model, self.cancel = model, cancel
        self.layers = _leaf_layers(model)
        self.calls = 0
        self._pass_start = 0
        self.per_pass: int | None = None
        self._handles: list = []

    def _pre(self, module, args):
        if is_cancelled(self.cancel):
            raise Cancelled("cancelled")
        self.calls += 1

    def __enter__(self) -> "ForwardMonitor":
        self._handles = [m.register_forward_pre_hook(self._pre) for m in self.layers]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def begin_pass(self) -> None:
        self._pass_start = self.calls

    def end_pass(self) -> None:
        n = self.calls - self._pass_start
        self.per_pass = n if self.per_pass is None else max(self.per_pass, n)

    def fraction(self) -> float:
        """Estimated fraction (0..1) of the current pass done."""
        total = self.per_pass or max(len(self.layers), 1)
        return min((self.calls - self._pass_start) / total, 0.99)


