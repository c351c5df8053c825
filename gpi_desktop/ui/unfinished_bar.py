"""The bar that offers, at start, every job kept in the runs folder: finished ones waiting for their export first,
then those a Stop, a crash or a closed window left unfinished, and those another process is running now."""

from __future__ import annotations

import datetime
import html
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QGridLayout, QHBoxLayout, QLabel, QPushButton, QScrollArea, QVBoxLayout, QWidget

from gpi_desktop.ui.shared.formatting import settings_words

VISIBLE_ROWS = 4  # jobs in view at once; the others scroll


def job_line(job) -> str:
    """One kept job (`core.job.job.KeptJob`) in plain words, as HTML: its file, state, rows, date, model, settings."""
    from gpi_desktop.core.job.job import FILE_CHANGED, FILE_MOVED

    name = html.escape(Path(job.spec.prompts_path).name, quote=False)
    when = datetime.datetime.fromtimestamp(job.modified).strftime("%d %b %Y, %H:%M")
    if job.in_use:
        state = (
            f"running in another window or process now: {job.rows_done:,} of {job.rows:,} rows done, the last at {when}"
        )
    elif job.finished:
        state = f"<b>ready to export</b>: all {job.rows:,} rows done, on {when}"
    else:
        state = f"{job.rows_done:,} of {job.rows:,} rows done, last on {when}"
    settings = job.spec.settings
    model = Path(settings.model).name if Path(settings.model).is_absolute() else settings.model
    line = (
        f"<b>{name}</b> \u2014 {state}<br><small>{html.escape(model, quote=False)}; "
        f"{html.escape(settings_words(settings), quote=False)}</small>"
    )
    if job.prompts_file == FILE_MOVED:
        line += (
            f"<br>The prompts file is no longer at {html.escape(str(job.spec.prompts_path), quote=False)}:"
            " reopening sets the settings; then open the file from where it is now."
        )
    elif job.prompts_file == FILE_CHANGED:
        line += (
            "<br>The prompts file has changed since, so the finished rows are not its rows now:"
            " reopening sets the settings; change the file back to continue."
        )
    return line


def _button(job) -> QPushButton | None:
    """One click to reopen the job with its inputs; none for a job another process is running."""
    if job.in_use:
        return None
    if job.finished:
        button = QPushButton("Open to export")
        button.setToolTip(
            "Set the model, the prompts file and every setting as they were, and show this job's "
            "texts, ready to export (nothing is generated again)."
        )
    else:
        button = QPushButton("Reopen")
        button.setToolTip(
            "Set the model, the prompts file and every setting as they were for this job; Run then "
            "continues where it stopped."
        )
    return button


def _title(jobs) -> str:
    ready = sum(1 for job in jobs if job.finished and not job.in_use)
    others = len(jobs) - ready
    if not ready:
        return "Jobs kept from earlier: reopen one to continue where it stopped."
    told = f"{ready:,} finished job{' is' if ready == 1 else 's are'} ready to export"
    more = f"; {others:,} more {'is' if others == 1 else 'are'} kept from earlier" if others else ""
    return f"{told}{more}. Reopen one to export it or to continue where it stopped."


class UnfinishedBar(QFrame):
    """At start: every kept job, finished ones first, each with one button to reopen it; hidden when there are none."""

    reopen = Signal(object)  # core.job.job.KeptJob

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setStyleSheet("UnfinishedBar { background: #eef5ff; }")
        outer = QVBoxLayout(self)
        outer.setContentsMargins(8, 6, 8, 6)
        top = QHBoxLayout()
        self.title = QLabel()
        self.title.setWordWrap(True)
        hide = QPushButton("Not now")
        hide.clicked.connect(self.hide)
        top.addWidget(self.title, 1)
        top.addWidget(hide)
        outer.addLayout(top)
        self._list = QWidget()
        self._grid = QGridLayout(self._list)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setColumnStretch(0, 1)
        self._scroll = QScrollArea()
        self._scroll.setWidgetResizable(True)
        self._scroll.setFrameShape(QFrame.Shape.NoFrame)
        self._scroll.setWidget(self._list)
        self._scroll.viewport().setAutoFillBackground(False)  # the bar's colour behind the jobs too
        self._list.setAutoFillBackground(False)
        outer.addWidget(self._scroll)
        self.buttons: list[QPushButton] = []
        self.lines: list[QLabel] = []
        self.hide()

    def set_jobs(self, jobs) -> None:
        while self._grid.count():
            item = self._grid.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()
        self.buttons, self.lines = [], []
        if not jobs:
            self.hide()
            return
        self.title.setText(_title(jobs))
        for i, job in enumerate(jobs):
            label = QLabel(job_line(job))
            label.setTextFormat(Qt.TextFormat.RichText)
            label.setWordWrap(True)
            self._grid.addWidget(label, i, 0)
            self.lines.append(label)
            button = _button(job)
            if button is not None:
                button.clicked.connect(lambda _=False, j=job: self.reopen.emit(j))
                self._grid.addWidget(button, i, 1)
                self.buttons.append(button)
        self._grid.setRowStretch(len(jobs), 1)  # rows keep their own height; any room is left below them
        self.show()
        self._fit_height(min(len(jobs), VISIBLE_ROWS))

    def _fit_height(self, rows: int) -> None:
        """The scroll area as tall as its first `rows` jobs at the bar's width; the others scroll."""
        width = max(300, self.width() - 180)  # the buttons' column and the margins
        spacing = max(0, self._grid.verticalSpacing())
        height = sum(max(self.lines[i].heightForWidth(width), 24) + spacing for i in range(rows))
        self._scroll.setFixedHeight(height + 2)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self.lines:
            self._fit_height(min(len(self.lines), VISIBLE_ROWS))
