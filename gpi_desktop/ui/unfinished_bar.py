"""The bar that offers, at start, the jobs a Stop, a crash or a closed window left unfinished."""

from __future__ import annotations

import datetime
import html
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QPushButton, QWidget

MAX_SHOWN = 3  # the latest ones; older jobs stay in their folder and are offered once these are done


def job_line(job) -> str:
    """One unfinished job (`core.job.job.UnfinishedJob`) in plain words, as HTML."""
    from gpi_desktop.core.job.job import FILE_CHANGED, FILE_MOVED

    name = html.escape(Path(job.spec.prompts_path).name, quote=False)
    when = datetime.datetime.fromtimestamp(job.modified).strftime("%d %b %Y, %H:%M")
    line = f"<b>{name}</b>: {job.rows_done:,} of {job.rows:,} rows done, last on {when}"
    if job.prompts_file == FILE_MOVED:
        line += (f" \u2014 the prompts file is no longer at {html.escape(str(job.spec.prompts_path), quote=False)}:"
                 " reopening sets the settings; then open the file from where it is now")
    elif job.prompts_file == FILE_CHANGED:
        line += (" \u2014 the prompts file has changed since, so the finished rows are not its rows now:"
                 " reopening sets the settings; change the file back to continue")
    return line


class UnfinishedBar(QFrame):
    """Lists unfinished jobs with one Reopen button each; hidden when there are none."""

    reopen = Signal(object)  # core.job.job.UnfinishedJob

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setStyleSheet("UnfinishedBar { background: #eef5ff; }")
        self._grid = QGridLayout(self)
        self._grid.setContentsMargins(8, 6, 8, 6)
        self.buttons: list[QPushButton] = []
        self.hide()

    def set_jobs(self, jobs) -> None:
        while self._grid.count():
            item = self._grid.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()
        self.buttons = []
        if not jobs:
            self.hide()
            return
        title = QLabel("Unfinished jobs (stopped, closed or interrupted): reopen one to continue where it stopped.")
        title.setWordWrap(True)
        self._grid.addWidget(title, 0, 0, 1, 2)
        for i, job in enumerate(jobs[:MAX_SHOWN], start=1):
            label = QLabel(job_line(job))
            label.setTextFormat(Qt.TextFormat.RichText)
            label.setWordWrap(True)
            button = QPushButton("Reopen")
            button.setToolTip("Set the model, the prompts file and every setting as they were for this job.")
            button.clicked.connect(lambda _=False, j=job: self.reopen.emit(j))
            self._grid.addWidget(label, i, 0)
            self._grid.addWidget(button, i, 1)
            self.buttons.append(button)
        hide = QPushButton("Not now")
        hide.clicked.connect(self.hide)
        self._grid.addWidget(hide, 0, 1)
        self._grid.setColumnStretch(0, 1)
        self.show()
