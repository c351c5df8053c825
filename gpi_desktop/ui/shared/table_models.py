"""Table models for the prompts file and the preview of results.

Both read their data lazily, cell by cell, as the view asks for visible cells,
so a file of 100,000 rows opens at once and scrolls smoothly (a QTableWidget
would build 100,000 x columns items up front).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView

from gpi_desktop.core.vocabulary.progress import TextSoFar
from gpi_desktop.core.vocabulary.results import STOP_EOS, STOP_LENGTH, PromptResult
from gpi_desktop.ui.shared.textmatch import similarity

# Long cells are cut for the table (the full text is in the tooltip and the detail view):
# drawing thousands of characters per visible cell is what makes a table stutter.
DISPLAY_CHARS = 200
TOOLTIP_CHARS = 2000

TEXT_COLUMN_BRUSH = QBrush(QColor(225, 238, 255))
EMPTY_CELL_BRUSH = QBrush(QColor(255, 215, 215))
TOO_LONG_BRUSH = QBrush(QColor(255, 190, 150))
LIMIT_ROW_BRUSH = QBrush(QColor(255, 232, 200))
WAITING_BRUSH = QBrush(QColor(128, 128, 128))
WAITING = "waiting\u2026"
WRITING = "writing\u2026"

ROW_HEADER_TIP = "Row numbers start at 0, as in the exported files: hidden_0.pt is the first row of data."

_Index = QModelIndex | QPersistentModelIndex


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "\u2026"


def full_text_tip(text: str, note: str = "") -> str | None:
    """A cell's whole text for its tooltip, as rich text so that Qt wraps it (a plain tooltip is one long line)."""
    if not text and not note:
        return None
    body = html.escape(text[:TOOLTIP_CHARS] + ("\u2026" if len(text) > TOOLTIP_CHARS else ""), quote=False)
    body = body.replace("\n", "<br>")
    extra = f"<p><i>{html.escape(note, quote=False)}</i></p>" if note else ""
    return f"<p>{body}</p>{extra}"


def _cell_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    import pandas as pd  # loaded already: the cells come from a table it read

    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return ""  # an empty cell, as pandas reads it (NaN, None, NA, NaT)
    return str(value)


def read_only_table(model: QAbstractTableModel) -> QTableView:
    """A read-only, row-selecting view that stays smooth with 100,000 rows.

    Fixed row heights and interactive column widths: Qt never measures every
    row or cell to size them, it only draws what is visible.
    """
    view = QTableView()
    view.setModel(model)
    view.setWordWrap(False)
    view.setTextElideMode(Qt.TextElideMode.ElideRight)
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    rows = view.verticalHeader()
    rows.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
    rows.setDefaultSectionSize(view.fontMetrics().height() + 8)
    columns = view.horizontalHeader()
    columns.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
    columns.setStretchLastSection(True)
    return view


class DataFrameModel(QAbstractTableModel):
    """A read-only view of a pandas DataFrame; the text column, its empty cells and its too-long prompts are tinted."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._columns: list[Sequence[Any]] = []
        self._names: list[str] = []
        self._rows = 0
        self._text_column: int | None = None
        self._empty_rows: frozenset[int] = frozenset()
        self._too_long: dict[int, int] = {}  # row -> its prompt's tokens, for those over `_room`
        self._room = 0

    def set_frame(self, frame) -> None:
        self.beginResetModel()
        # One object array per column: positional access without pandas' per-cell overhead.
        self._columns = [frame.iloc[:, i].to_numpy(dtype=object) for i in range(frame.shape[1])]
        self._names = [str(c) for c in frame.columns]
        self._rows = int(frame.shape[0])
        self._text_column = None
        self._empty_rows = frozenset()
        self._too_long = {}
        self.endResetModel()

    def clear(self) -> None:
        self.beginResetModel()
        self._columns, self._names, self._rows = [], [], 0
        self._text_column, self._empty_rows, self._too_long = None, frozenset(), {}
        self.endResetModel()

    def set_text_column(self, name: str | None, empty_rows: Sequence[int] = ()) -> None:
        self._text_column = self._names.index(name) if name in self._names else None
        self._empty_rows = frozenset(empty_rows)
        self._tints_changed()

    def set_too_long(self, tokens_by_row: dict[int, int], room: int) -> None:
        """Mark the prompts longer than `room` tokens (what the context leaves for a prompt after the token limit)."""
        if tokens_by_row == self._too_long and (room == self._room or not tokens_by_row):
            return
        self._too_long, self._room = dict(tokens_by_row), room
        self._tints_changed()

    def too_long_rows(self) -> dict[int, int]:
        return dict(self._too_long)

    def _tints_changed(self) -> None:
        if self._rows and self._names:
            self.dataChanged.emit(
                self.index(0, 0),
                self.index(self._rows - 1, len(self._names) - 1),
                [Qt.ItemDataRole.BackgroundRole, Qt.ItemDataRole.ToolTipRole],
            )
            self.headerDataChanged.emit(Qt.Orientation.Vertical, 0, self._rows - 1)

    def rowCount(self, parent: _Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else self._rows

    def columnCount(self, parent: _Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._names)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row, col = index.row(), index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return _one_line(_cell_text(self._columns[col][row]), DISPLAY_CHARS)
        if role == Qt.ItemDataRole.ToolTipRole:
            text = _cell_text(self._columns[col][row])
            if col == self._text_column and row in self._empty_rows:
                return "This cell is empty: write a prompt here or remove the row before running."
            if col == self._text_column and row in self._too_long:
                return full_text_tip(text, self._too_long_words(row))
            return full_text_tip(text)  # a narrow column cuts even a short prompt where prompts differ
        if role == Qt.ItemDataRole.BackgroundRole and col == self._text_column:
            if row in self._empty_rows:
                return EMPTY_CELL_BRUSH
            return TOO_LONG_BRUSH if row in self._too_long else TEXT_COLUMN_BRUSH
        return None

    def _too_long_words(self, row: int) -> str:
        room = (
            f"at most {self._room:,} fit with the maximum new tokens"
            if self._room > 0
            else "the maximum new tokens alone fill the model's context"
        )
        return (
            f"Too long for the model: {self._too_long[row]:,} tokens as the model reads it (chat template "
            f"included); {room}. Shorten it or lower the maximum new tokens."
        )

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal:
            if role == Qt.ItemDataRole.DisplayRole and section < len(self._names):
                return self._names[section]
            if role == Qt.ItemDataRole.ToolTipRole and section == self._text_column:
                return "The column whose texts are sent to the model."
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            # The row number with the prompt's length, where it is too long: seen without pointing at each cell.
            return (
                f"{section}  \u26a0 {self._too_long[section]:,} tokens" if section in self._too_long else str(section)
            )
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._too_long_words(section) if section in self._too_long else ROW_HEADER_TIP
        return None


# Columns of the preview, in order.
COL_ROW, COL_PROMPT, COL_TEXT, COL_TOKENS, COL_STOP, COL_MATCH = range(6)
PREVIEW_HEADERS = ("Row", "Prompt", "Generated text", "Tokens", "Why it stopped", "Match with input")
PREVIEW_TIPS = (
    ROW_HEADER_TIP,
    "The text sent to the model.",
    "What the model wrote (special tokens removed, as gpi_pack does).",
    "How many tokens the model generated for this row (the end-of-text token included when it came).",
    "'End of text': the model finished by itself. 'Token limit': it was cut at the maximum new tokens;"
    " such rows are highlighted, raise the limit if the texts look cut off.",
    "For the repeat task: how closely the generated text matches the input (100% = identical).",
)
STOP_WORDS = {STOP_EOS: "End of text", STOP_LENGTH: "Token limit"}


class ResultsModel(QAbstractTableModel):
    """Every row of the job in input order: the finished ones with their results, the others marked waiting.

    A result fills its row as soon as it arrives; rows finished in an earlier session are given by the
    window from the job's journal, so the table never shows only this session's share.
    """

    def __init__(self, prompt_of: Callable[[int], str] = lambda row: "", parent=None) -> None:
        super().__init__(parent)
        self._prompt_of = prompt_of
        self._total = 0
        self._results: dict[int, PromptResult] = {}
        self._writing: dict[int, TextSoFar] = {}  # the rows being generated, their text so far
        self._match_cache: dict[int, float] = {}

    def reset(self, prompt_of: Callable[[int], str], total: int = 0, finished: Sequence[PromptResult] = ()) -> None:
        """Show the `total` rows of a job, `finished` of them done (read back from its journal)."""
        self.beginResetModel()
        self._prompt_of = prompt_of
        self._results = {r.row: r for r in finished}
        self._writing = {}
        self._total = max([total, *(r.row + 1 for r in finished)])
        self._match_cache = {}
        self.endResetModel()

    def set_results(self, results: Sequence[PromptResult], prompt_of: Callable[[int], str]) -> None:
        """Show exactly `results` (a finished run, resumed ones included) in one reset."""
        self.reset(prompt_of, len(results), results)

    def add_result(self, result: PromptResult) -> None:
        if result.row >= self._total:
            self.beginInsertRows(QModelIndex(), self._total, result.row)
            self._results[result.row] = result
            self._total = result.row + 1
            self.endInsertRows()
            return
        self._results[result.row] = result  # a waiting row is done (or a resumed row reported again)
        self._writing.pop(result.row, None)
        self._match_cache.pop(result.row, None)
        self.dataChanged.emit(self.index(result.row, 0), self.index(result.row, len(PREVIEW_HEADERS) - 1))

    def show_writing(self, texts: Sequence[TextSoFar]) -> None:
        """The running rows' texts so far (a few times a second): one change signal over the rows they span."""
        rows = [t.row for t in texts if t.row < self._total and t.row not in self._results]
        if not rows:
            return
        self._writing.update((t.row, t) for t in texts if t.row in rows)
        self.dataChanged.emit(self.index(min(rows), COL_TEXT), self.index(max(rows), COL_STOP))

    def clear_writing(self) -> int:
        """After a stop: the rows that were being written are waiting again (their texts start over); how many."""
        rows, self._writing = list(self._writing), {}
        if rows:
            self.dataChanged.emit(self.index(min(rows), COL_TEXT), self.index(max(rows), COL_STOP))
        return len(rows)

    def writing_at(self, position: int) -> TextSoFar | None:
        return self._writing.get(position)

    def writing(self) -> list[TextSoFar]:
        return list(self._writing.values())

    def finished_count(self) -> int:
        return len(self._results)

    def result_at(self, position: int) -> PromptResult | None:
        """The result of the row at `position` (positions are data rows), None while it is waiting."""
        return self._results.get(position)

    def prompt_at(self, position: int) -> str:
        return self._prompt_of(position)

    def match_at(self, position: int) -> float:
        result = self._results[position]
        if result.row not in self._match_cache:
            self._match_cache[result.row] = similarity(self._prompt_of(result.row), result.text)
        return self._match_cache[result.row]

    def rowCount(self, parent: _Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else self._total

    def columnCount(self, parent: _Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(PREVIEW_HEADERS)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        pos, col = index.row(), index.column()
        result = self._results.get(pos)
        if result is None:
            return self._waiting_data(pos, col, role)
        if role == Qt.ItemDataRole.DisplayRole:
            if col == COL_ROW:
                return str(result.row)
            if col == COL_PROMPT:
                return _one_line(self._prompt_of(result.row), DISPLAY_CHARS)
            if col == COL_TEXT:
                return _one_line(result.text, DISPLAY_CHARS)
            if col == COL_TOKENS:
                return str(result.n_tokens)
            if col == COL_STOP:
                return STOP_WORDS.get(result.stop_reason, result.stop_reason)
            if col == COL_MATCH:
                return f"{self.match_at(pos):.0%}"
        if role == Qt.ItemDataRole.BackgroundRole and result.hit_limit:
            return LIMIT_ROW_BRUSH
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == COL_STOP and result.hit_limit:
                return "Stopped at the maximum new tokens: the text may be cut off."
            if col == COL_PROMPT:
                return full_text_tip(self._prompt_of(result.row))
            if col == COL_TEXT:
                note = (
                    "The model wrote a single token, so mean/max pooling used the prompt's own state"
                    " (flagged in the manifest)."
                    if result.pooled_from_step0
                    else ""
                )
                return full_text_tip(result.text, note)
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (COL_ROW, COL_TOKENS, COL_MATCH):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def _waiting_data(self, row: int, col: int, role: int) -> Any:
        writing = self._writing.get(row)
        if writing is not None and col in (COL_TEXT, COL_TOKENS, COL_STOP):
            return self._writing_data(writing, col, role)
        if role == Qt.ItemDataRole.DisplayRole:
            if col == COL_ROW:
                return str(row)
            if col == COL_PROMPT:
                return _one_line(self._prompt_of(row), DISPLAY_CHARS)
            if col == COL_TEXT:
                return WAITING
            return ""
        if role == Qt.ItemDataRole.ForegroundRole and col == COL_TEXT:
            return WAITING_BRUSH
        if role == Qt.ItemDataRole.ToolTipRole and col == COL_TEXT:
            return "Not generated yet: press Run to continue the job; finished rows are not redone."
        if role == Qt.ItemDataRole.ToolTipRole and col == COL_PROMPT:
            return full_text_tip(self._prompt_of(row))
        if role == Qt.ItemDataRole.TextAlignmentRole and col == COL_ROW:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    @staticmethod
    def _writing_data(writing: TextSoFar, col: int, role: int) -> Any:
        """A row being generated: its text so far (final: greedy decoding), its tokens so far, "writing…"."""
        if role == Qt.ItemDataRole.DisplayRole:
            if col == COL_TEXT:
                return _one_line(writing.text, DISPLAY_CHARS) or WRITING
            return str(writing.n_tokens) if col == COL_TOKENS else WRITING
        if role == Qt.ItemDataRole.ForegroundRole:
            return WAITING_BRUSH
        if role == Qt.ItemDataRole.ToolTipRole and col == COL_TEXT:
            return full_text_tip(
                writing.text,
                f"Being written: {writing.n_tokens:,} tokens so far. Each token is "
                "final (greedy decoding); a Stop now starts this text over.",
            )
        if role == Qt.ItemDataRole.TextAlignmentRole and col == COL_TOKENS:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation != Qt.Orientation.Horizontal:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return PREVIEW_HEADERS[section]
        if role == Qt.ItemDataRole.ToolTipRole:
            return PREVIEW_TIPS[section]
        return None
