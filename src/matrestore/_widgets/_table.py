"""The metrics table part: PSNR / SSIM / ESSIM, one row a method or candidate, the best of each column
highlighted; Ctrl+C (or the widget's Copy button) copies it as tab-separated text, :meth:`csv` gives the
CLI's CSV. Used by the Compare and Enhance widgets (and any workflow that scores against a truth)."""

from __future__ import annotations

import csv
import io as _io

from qtpy.QtCore import QEvent, Qt, Signal
from qtpy.QtGui import QBrush, QColor, QFont, QKeySequence
from qtpy.QtWidgets import QAbstractItemView, QApplication, QHeaderView, QTableWidget, QTableWidgetItem

from .. import evaluation
from .. import metrics as _metrics
from .._validate import InputError

__all__ = ["MetricsTable", "BEST_BRUSH", "copy_table"]

BEST_BRUSH = QColor(46, 125, 70)


class MetricsTable(QTableWidget):
    """A read-only table of scores ``{name: {metric: value}}`` (Ctrl+C emits :attr:`copy_requested`)."""

    copy_requested = Signal()

    def __init__(self, first_column: str, tooltip: str, metrics=_metrics.METRICS, parent=None):
        super().__init__(0, 1 + len(metrics), parent)
        self.metrics = list(metrics)
        self.scores: dict | None = None
        self.setHorizontalHeaderLabels([first_column] + [evaluation.LABELS.get(m, m) for m in self.metrics])
        self.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.verticalHeader().setVisible(False)
        hh = self.horizontalHeader()
        hh.setSectionResizeMode(0, QHeaderView.Stretch)
        for c in range(1, 1 + len(self.metrics)):
            hh.setSectionResizeMode(c, QHeaderView.ResizeToContents)
        self.setToolTip(tooltip + "\nCtrl+C copies the whole table.")
        self.fit()

    # ------------------------------------------------------------------ content
    def fill(self, scores: dict) -> None:
        """Show ``scores``; the best value of each column is bold on green."""
        self.scores = {k: dict(v) for k, v in scores.items()}
        self.setRowCount(len(scores))
        best = {m: max(v[m] for v in scores.values()) for m in self.metrics}
        bold = QFont()
        bold.setBold(True)
        for r, (name, vals) in enumerate(scores.items()):
            item = QTableWidgetItem(name)
            item.setToolTip(name)
            self.setItem(r, 0, item)
            for c, m in enumerate(self.metrics, start=1):
                v = float(vals[m])
                item = QTableWidgetItem(evaluation._fmt(m, v))
                item.setTextAlignment(int(Qt.AlignRight | Qt.AlignVCenter))
                item.setData(Qt.UserRole, v)
                item.setToolTip(f"{evaluation.LABELS.get(m, m)} = {v!r}" + ("  (best)" if v == best[m] else ""))
                if v == best[m]:
                    item.setFont(bold)
                    item.setBackground(QBrush(BEST_BRUSH))
                    item.setForeground(QBrush(QColor("white")))
                self.setItem(r, c, item)
        self.fit()

    def clear_scores(self) -> None:
        self.scores = None
        self.setRowCount(0)
        self.fit()

    def fit(self) -> None:
        """As tall as its rows (at least three), so no scrollbar hides a row."""
        rows = max(self.rowCount(), 3)
        h = self.horizontalHeader().sizeHint().height() + 2 * self.frameWidth() + 4
        h += sum(self.rowHeight(r) for r in range(self.rowCount()))
        h += (rows - self.rowCount()) * self.verticalHeader().defaultSectionSize()
        self.setMinimumHeight(min(h, 400))
        self.setMaximumHeight(max(h, 120))

    # ------------------------------------------------------------------ export
    def csv(self) -> str:
        """``method,psnr,ssim,essim`` rows at full precision, as the CLI writes them."""
        if not self.scores:
            raise InputError("nothing to copy yet: run first.")
        return evaluation.table_to_csv(self.scores, self.metrics)

    def text(self) -> str:
        """Tab-separated (pastes into spreadsheets as columns)."""
        return "".join("\t".join(r) + "\n" for r in csv.reader(_io.StringIO(self.csv())))

    def copy(self) -> int:
        """Put :meth:`text` on the clipboard; the number of rows copied (InputError when empty)."""
        QApplication.clipboard().setText(self.text())
        return len(self.scores)

    # ------------------------------------------------------------------ Ctrl+C
    def event(self, ev):  # take Ctrl+C before any window-wide shortcut
        if ev.type() == QEvent.ShortcutOverride and ev.matches(QKeySequence.Copy):
            ev.accept()
            return True
        return super().event(ev)

    def keyPressEvent(self, ev):  # noqa: N802 (Qt API)
        if ev.matches(QKeySequence.Copy):
            self.copy_requested.emit()
            ev.accept()
            return
        super().keyPressEvent(ev)


def copy_table(table: MetricsTable, runner, status, empty: str = "nothing to copy yet: run first.") -> None:
    """The Copy button / Ctrl+C of a widget: the table to the clipboard and a line in ``status``, or the
    ``empty`` message through ``runner`` when there is nothing to copy."""
    try:
        n = table.copy()
    except InputError:
        runner.fail(InputError(empty))
        return
    status.setStyleSheet("")
    status.setText(f"Copied {n} row(s) to the clipboard.")
