"""The small QPainter plots of the dock widgets (no plotting library needed): the Scan-enhance-rescan
widget's time plot (:class:`~matrestore._widgets.rescan.TimePlot`) and the Train widget's live loss plot
(:class:`~matrestore._widgets.train.LossPlot`) share the frame drawn here: a dark background, margins
around the plot area, a map from data to widget coordinates and the two axes.
"""

from __future__ import annotations

from qtpy.QtCore import QPointF
from qtpy.QtGui import QColor, QPainter, QPen
from qtpy.QtWidgets import QWidget

__all__ = ["BACKGROUND", "AXIS", "PlotWidget"]

BACKGROUND = QColor(38, 41, 48)
AXIS = QColor(200, 200, 200)


class PlotWidget(QWidget):
    """Base of a small plot: :meth:`_begin` starts painting (background filled), :meth:`_mapper` maps
    data to widget coordinates and :meth:`_draw_axes` draws the x and y axes."""

    MARGINS = (44, 10, 8, 30)  # left, right, top, bottom (px) around the plot area

    def _begin(self) -> QPainter:
        """A painter on this widget (antialiased, the background filled); the caller ends it."""
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        p.fillRect(self.rect(), BACKGROUND)
        return p

    def _area(self) -> tuple:
        """``(left, top, pw, ph)``: the plot area's top-left corner and size (at least 10 px a side)."""
        left, right, top, bottom = self.MARGINS
        return left, top, max(self.width() - left - right, 10), max(self.height() - top - bottom, 10)

    def _mapper(self, x0: float, x1: float, y0: float, y1: float):
        """``pt(x, y)``: the widget point of data ``(x, y)``, with ``[x0, x1] × [y0, y1]`` filling the plot area."""
        left, top, pw, ph = self._area()

        def pt(x, y):
            return QPointF(left + (x - x0) / (x1 - x0) * pw, top + (1 - (y - y0) / (y1 - y0)) * ph)

        return pt

    @staticmethod
    def _draw_axes(p: QPainter, pt, x0: float, x1: float, y0: float, y1: float) -> QPen:
        """The x axis along ``y0`` and the y axis along ``x0``; returns the axis pen (left set)."""
        axis = QPen(AXIS)
        p.setPen(axis)
        p.drawLine(pt(x0, y0), pt(x1, y0))
        p.drawLine(pt(x0, y0), pt(x0, y1))
        return axis
