"""Step 3: opening prompts files in the window (each format, a bad file, drag and drop, 100,000 rows)."""

from __future__ import annotations

import time

import pandas as pd
import pytest
from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDropEvent
from window_helpers import wait_idle

from gpi_desktop.ui.shared.resources import sample_prompts_path
from gpi_desktop.ui.shared.table_models import EMPTY_CELL_BRUSH, TEXT_COLUMN_BRUSH, DataFrameModel, read_only_table
from gpi_desktop.ui.shared.tasks import BackgroundCalls
from gpi_desktop.ui.steps.prompts_step import CHOOSE_COLUMN, PromptsPanel

FRAME = pd.DataFrame(
    {
        "id": ["1", "2", "3"],
        "party": ["D", "R", "D"],
        "speech": ["Jobs for all, and fair wages.", "Lower taxes now.", "Clean energy, café and naïve ü."],
    }
)


@pytest.fixture
def panel(qtbot):
    calls = BackgroundCalls()
    p = PromptsPanel(calls)
    qtbot.addWidget(p)
    return p, calls


def load(qtbot, panel, path):
    p, calls = panel
    p.load_file(path)
    qtbot.waitUntil(lambda: calls.pending == 0, timeout=30_000)
    return p


def _write(path, kind):
    if kind == "csv":
        FRAME.to_csv(path, index=False)
    elif kind == "tsv":
        FRAME.to_csv(path, index=False, sep="\t")
    elif kind == "xlsx":
        FRAME.to_excel(path, index=False)
    elif kind == "cp1252 csv":
        path.write_bytes(FRAME.to_csv(index=False).encode("cp1252"))
    return path


@pytest.mark.parametrize("kind,suffix", [("csv", ".csv"), ("tsv", ".tsv"), ("xlsx", ".xlsx"), ("cp1252 csv", ".csv")])
def test_each_format_opens_with_the_text_column_chosen(qtbot, panel, tmp_path, kind, suffix):
    p = load(qtbot, panel, _write(tmp_path / f"speeches{suffix}", kind))
    assert p.table is not None
    assert p.table.column == "speech"
    assert p.column_box.currentText() == "speech"
    assert p.table.texts == FRAME["speech"].tolist()
    assert p.model.rowCount() == 3 and p.model.columnCount() == 3
    assert p.model.data(p.model.index(2, 2)) == "Clean energy, café and naïve ü."
    assert p.summary_label.text() == "3 rows \u00b7 0 empty text cells"
    assert p.message_label.isHidden()


def test_a_bad_file_shows_the_plain_reason_and_keeps_the_previous_table(qtbot, panel, tmp_path):
    p = load(qtbot, panel, _write(tmp_path / "good.csv", "csv"))
    failures = []
    p.load_failed.connect(failures.append)
    bad = tmp_path / "broken.xlsx"
    bad.write_bytes(b"this is not a workbook")
    load(qtbot, panel, bad)
    assert failures and "not a valid Excel workbook" in failures[0]
    assert "not a valid Excel workbook" in p.message_label.text()
    assert not p.message_label.isHidden()
    assert p.table is not None and p.table.path.name == "good.csv"
    assert "still in use" in p.file_label.text()


def test_a_missing_file_is_reported(qtbot, panel, tmp_path):
    p = load(qtbot, panel, tmp_path / "nowhere.csv")
    assert p.table is None
    assert "does not exist" in p.message_label.text()


def test_when_no_column_is_obviously_the_text_the_user_chooses(qtbot, panel, tmp_path):
    path = tmp_path / "two.csv"
    pd.DataFrame({"first": ["aaa bbb", "ccc ddd"], "second": ["eee fff", "ggg hhh"]}).to_csv(path, index=False)
    p = load(qtbot, panel, path)
    assert p.table is None
    assert p.column_box.currentText() == CHOOSE_COLUMN
    assert "choose the text column" in p.message_label.text()
    changes = []
    p.table_changed.connect(changes.append)
    p.select_column("second")
    assert p.table is not None and p.table.column == "second" and changes[-1] is p.table
    assert p.model.data(p.model.index(0, 1), Qt.ItemDataRole.BackgroundRole) == TEXT_COLUMN_BRUSH


def test_empty_text_cells_are_counted_listed_and_tinted(qtbot, panel, tmp_path):
    path = tmp_path / "holes.csv"
    pd.DataFrame({"id": ["a", "b", "c", "d"], "text": ["one", "", "three", "   "]}).to_csv(path, index=False)
    p = load(qtbot, panel, path)
    assert p.empty == [1, 3]
    assert p.summary_label.text() == "4 rows \u00b7 2 empty text cells"
    assert "rows 1, 3" in p.message_label.text()
    assert p.model.data(p.model.index(1, 1), Qt.ItemDataRole.BackgroundRole) == EMPTY_CELL_BRUSH
    assert p.model.data(p.model.index(0, 1), Qt.ItemDataRole.BackgroundRole) == TEXT_COLUMN_BRUSH
    assert p.model.data(p.model.index(1, 0), Qt.ItemDataRole.BackgroundRole) is None


def test_duplicate_column_names_are_said_and_the_user_chooses_the_copy(qtbot, panel, tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("id,prompt,prompt\n1,first copy,second copy\n2,a,b\n", encoding="utf-8")
    p = load(qtbot, panel, path)
    assert p.table is None and p.column_box.currentText() == CHOOSE_COLUMN
    assert "2 columns named 'prompt'" in p.message_label.text()
    assert "'prompt' and 'prompt.1'" in p.message_label.text()
    p.select_column("prompt.1")
    assert p.table is not None and p.table.texts == ["second copy", "b"]
    assert "2 columns named 'prompt'" in p.message_label.text()  # still said next to the choice


def test_uncalculated_excel_formulas_are_named_as_formulas(qtbot, panel, tmp_path):
    import openpyxl

    book = openpyxl.Workbook()
    for row in (["text"], ["hello"], ['=UPPER("x")']):
        book.active.append(row)
    book.save(tmp_path / "f.xlsx")
    p = load(qtbot, panel, tmp_path / "f.xlsx")
    assert p.empty == [1]
    assert "formulas that Excel has not calculated" in p.message_label.text()
    assert "save it" in p.message_label.text()


def test_the_sample_prompts_load_from_the_button(qtbot, panel):
    p, calls = panel
    p.sample_button.click()
    qtbot.waitUntil(lambda: calls.pending == 0, timeout=30_000)
    assert p.table is not None and p.table.path == sample_prompts_path()
    assert p.table.column == "prompt" and len(p.table) == 10


def test_dropping_a_file_on_the_window_opens_it(qtbot, make_window, tmp_path):
    window = make_window()
    path = _write(tmp_path / "dropped.tsv", "tsv")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(
        QPoint(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    window.dropEvent(event)
    wait_idle(qtbot, window)
    assert window.pages.currentIndex() == 2
    assert window.prompts_panel.table is not None and window.prompts_panel.table.path == path


def test_a_hundred_thousand_rows_open_and_scroll_without_stalling(qtbot, tmp_path):
    rows = 100_000
    frame = pd.DataFrame(
        {
            "id": [str(i) for i in range(rows)],
            "text": [f"Prompt number {i}: write a speech about topic {i % 97}." for i in range(rows)],
        }
    )
    model = DataFrameModel()
    view = read_only_table(model)  # the view the prompts step uses
    qtbot.addWidget(view)
    start = time.perf_counter()
    model.set_frame(frame)
    model.set_text_column("text", [])
    view.resize(900, 600)
    view.show()
    qtbot.waitExposed(view)
    opened = time.perf_counter() - start
    assert model.rowCount() == rows

    start = time.perf_counter()
    for fraction in (0.25, 0.5, 0.75, 1.0):
        view.scrollTo(model.index(int((rows - 1) * fraction), 1))
        view.viewport().repaint()
    scrolled = time.perf_counter() - start
    assert model.data(model.index(rows - 1, 1)) == frame["text"].iloc[-1]
    # Lazy reading: opening and four jumps with repaints cost about as much as one screen of cells.
    assert opened < 2.0, f"opening 100,000 rows took {opened:.2f} s"
    assert scrolled < 1.0, f"scrolling 100,000 rows took {scrolled:.2f} s"


def _workbook(path):
    with pd.ExcelWriter(path) as book:
        pd.DataFrame({"text": ["a pilot prompt"]}).to_excel(book, sheet_name="pilot", index=False)
        FRAME.to_excel(book, sheet_name="main study", index=False)
        pd.DataFrame({"note": ["not prompts"]}).to_excel(book, sheet_name="notes", index=False)
    return path


def test_a_workbook_of_several_sheets_names_the_sheet_read_and_the_others_and_the_user_picks_another(
    qtbot, panel, tmp_path
):
    p = load(qtbot, panel, _workbook(tmp_path / "study.xlsx"))
    assert p.sheet_box.isVisibleTo(p) and p.sheet_box.currentText() == "pilot"
    assert [p.sheet_box.itemText(i) for i in range(p.sheet_box.count())] == ["pilot", "main study", "notes"]
    assert p.table.texts == ["a pilot prompt"]
    assert p.message_label.text() == (
        "study.xlsx has 3 sheets; the prompts are read from 'pilot' (the first), not "
        "from 'main study', 'notes': choose another sheet above if the prompts are there."
    )
    p.select_sheet("main study")
    qtbot.waitUntil(
        lambda: panel[1].pending == 0 and p.table is not None and p.table.sheet == "main study", timeout=30_000
    )
    assert p.table.column == "speech" and p.table.texts == FRAME["speech"].tolist()
    assert p.sheet_box.currentText() == "main study"
    assert "read from 'main study', not from 'pilot', 'notes'" in p.message_label.text()
    load(qtbot, panel, _write(tmp_path / "one.xlsx", "xlsx"))
    assert not p.sheet_box.isVisibleTo(p) and p.message_label.isHidden()  # one sheet: nothing to choose


def test_the_sheet_chosen_in_step_3_is_the_sheet_the_window_runs(qtbot, make_window, tmp_path):
    window = make_window()
    window.prompts_panel.load_file(_workbook(tmp_path / "study.xlsx"))
    wait_idle(qtbot, window)
    window.prompts_panel.select_sheet("main study")
    wait_idle(qtbot, window)
    spec = window.current_spec()
    assert spec.sheet == "main study" and spec.column == "speech"


def test_the_prompt_column_is_the_widest_wherever_it_stands(qtbot, panel, tmp_path):
    path = tmp_path / "bios.csv"
    pd.DataFrame(
        {
            "text": ["Create a biography of a mayor"] * 3,
            "id": ["1", "2", "3"],
            "party": ["D", "R", "D"],
            "year": ["1956"] * 3,
        }
    ).to_csv(path, index=False)
    p, _calls = panel
    p.resize(1100, 600)
    p.show()
    p = load(qtbot, panel, path)
    widths = [p.view.columnWidth(i) for i in range(4)]
    assert widths[0] > max(widths[1:]), widths
