"""Reading prompts files: formats, encodings, column choice, validation."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from gpi_desktop.cli.error_words import cli_sentence
from gpi_desktop.core.files.prompts import (
    PromptTable,
    empty_rows,
    guess_text_column,
    load_prompt_table,
    read_table,
)
from gpi_desktop.core.vocabulary.errors import PromptFileError

ACCENTED = ["café au lait", "naïve answer", "“quoted” and ‘single’", "costs 5 €", "plain"]


def write_xlsx(path, header, rows, *, extra_sheet=True):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    if extra_sheet:  # the first sheet is the one read, even when another is active
        book.create_sheet("other").append(["nope"])
        book.active = 1
    book.save(path)
    return path


def test_csv_loads_texts_in_file_order_with_sha256_of_bytes(prompts_csv):
    from conftest import PROMPTS

    table = load_prompt_table(prompts_csv)
    assert table.column == "text"
    assert table.texts == PROMPTS
    assert table.columns == ["id", "text"]
    assert list(table.frame.index) == list(range(len(PROMPTS)))
    assert table.sha256 == hashlib.sha256(prompts_csv.read_bytes()).hexdigest()
    assert table.encoding == "utf-8"
    assert len(table) == len(PROMPTS)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp1252", "utf-16"])
def test_csv_encodings_as_excel_writes_them_load_correctly(tmp_path, encoding):
    path = tmp_path / "p.csv"
    header = "id,prompt\r\n"
    body = "".join(f'{i},"{t}"\r\n' for i, t in enumerate(ACCENTED))
    path.write_bytes((header + body).encode(encoding))
    table = load_prompt_table(path)
    assert table.texts == ACCENTED
    assert table.columns == ["id", "prompt"]  # no BOM glued to the first name


def test_cp1252_bytes_in_the_0x80_to_0x9f_range_decode_as_windows_characters(tmp_path):
    path = tmp_path / "p.csv"
    path.write_bytes(b"text\n\x93quoted\x94 \x80 caf\xe9\n")
    table = load_prompt_table(path)
    assert table.texts == ["“quoted” € café"]
    assert table.encoding == "cp1252"


def test_bytes_undefined_in_cp1252_fall_back_to_latin1(tmp_path):
    path = tmp_path / "p.csv"
    path.write_bytes(b"text\nna\xefve \x81\n")
    table = load_prompt_table(path)
    assert table.texts == ["naïve \x81"]
    assert table.encoding == "latin-1"


def test_every_cell_is_text_and_na_words_stay_words(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("id,text,score\n007,NA,1.50\n2,None,\n3,null,NaN\n", encoding="utf-8")
    table = load_prompt_table(path, "text")
    assert table.texts == ["NA", "None", "null"]
    assert table.frame["id"].tolist() == ["007", "2", "3"]
    assert table.frame["score"].tolist() == ["1.50", "", "NaN"]


def test_row_numbers_match_pandas_read_csv_so_hidden_files_line_up(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text('text\nfirst\n\n"multi\nline"\nlast\n', encoding="utf-8")
    table = load_prompt_table(path)
    reference = pd.read_csv(path)
    assert table.texts == reference["text"].tolist()
    assert list(table.frame.index) == reference.index.tolist()


@pytest.mark.parametrize("suffix", [".tsv", ".tab", ".csv", ".txt"])
def test_tab_separated_files_by_suffix_or_sniffed(tmp_path, suffix):
    path = tmp_path / f"p{suffix}"
    path.write_text("id\ttext\n1\thello, world\n2\tsecond; one\n", encoding="utf-8")
    table = load_prompt_table(path)
    assert table.texts == ["hello, world", "second; one"]


def test_semicolon_csv_from_a_comma_decimal_excel_is_sniffed(tmp_path):
    path = tmp_path / "p.csv"
    path.write_bytes("id;text\n1;caf\xe9, s'il vous pla\xeet\n".encode("cp1252"))
    assert load_prompt_table(path).texts == ["café, s'il vous plaît"]


def test_xlsx_reads_first_sheet_as_text(tmp_path):
    path = write_xlsx(tmp_path / "p.xlsx", ["id", "prompt", "score"], [[1, ACCENTED[0], 1.5], [2, "NA", 2.0]])
    table = load_prompt_table(path)
    assert table.column == "prompt"
    assert table.texts == [ACCENTED[0], "NA"]
    assert table.frame["id"].tolist() == ["1", "2"]
    assert table.encoding == "xlsx"


def test_xlsx_empty_cell_is_reported_with_its_zero_based_row(tmp_path):
    path = write_xlsx(tmp_path / "p.xlsx", ["text"], [["a"], [None], ["c"]])
    with pytest.raises(PromptFileError, match=r"empty in data row 1 \(counting from 0"):
        load_prompt_table(path)


def test_unknown_column_lists_the_columns(prompts_csv):
    with pytest.raises(PromptFileError) as error:
        load_prompt_table(prompts_csv, "prompt")
    assert "'prompt'" in str(error.value) and "'id', 'text'" in str(error.value)


def test_named_column_matches_ignoring_case_and_spaces(prompts_csv):
    assert load_prompt_table(prompts_csv, " TEXT").column == "text"


def test_the_only_column_is_taken_whatever_its_name(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("whatever\n12\nhello\n", encoding="utf-8")
    assert load_prompt_table(path).column == "whatever"


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ({"id": ["1", "2"], "Prompt Text": ["a b", "c d"]}, "Prompt Text"),
        ({"text_id": ["x1", "x2"], "message": ["hi", "yo"]}, "message"),
        ({"n": ["1", "2"], "speech": ["a long speech here", "another long one"], "party": ["D", "R"]}, "speech"),
        ({"n": ["1", "2"], "answer": ["yes", "no"]}, "answer"),
        ({"a": ["some words", "more words"], "b": ["other words", "words again"]}, None),
        ({"prompt": ["a", "b"], "text": ["c", "d"]}, None),
        ({"prompt": ["a", "b"], "text": ["1", "2"]}, "prompt"),
        ({"x": ["1", "2"], "y": ["3.5", "4"]}, None),
    ],
)
def test_guess_text_column(frame, expected):
    assert guess_text_column(pd.DataFrame(frame)) == expected


def test_ambiguous_columns_ask_the_user_to_pick_one(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("a,b\nsome words,other words\n", encoding="utf-8")
    with pytest.raises(PromptFileError) as error:
        load_prompt_table(path)
    assert "'a', 'b'" in str(error.value)
    assert "--column" in cli_sentence(error.value)  # the command line says how; the window words it its own way
    assert load_prompt_table(path, "b").texts == ["other words"]


def test_empty_and_blank_prompts_are_listed_counting_from_zero(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("id,text\n0,a\n1,\n2,b\n3,   \n", encoding="utf-8")
    with pytest.raises(PromptFileError, match=r"data rows 1, 3 \(counting from 0"):
        load_prompt_table(path)
    table = load_prompt_table(path, check_empty=False)
    assert empty_rows(table) == [1, 3]


def test_many_empty_rows_are_listed_up_to_twenty_then_counted(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("id,text\n" + "".join(f"{i},\n" for i in range(25)), encoding="utf-8")
    with pytest.raises(PromptFileError) as error:
        load_prompt_table(path)
    assert "0, 1, 2" in str(error.value) and "19 and 5 more" in str(error.value)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("empty.csv", b"", "is empty"),
        ("blank.csv", b"\n\n  \n", "is empty"),
        ("header.csv", b"id,text\n", "no data rows"),
        ("junk.csv", bytes(range(256)) * 8, "does not look like a text table"),
        ("fake.xlsx", b"id,text\n1,a\n", "not a valid Excel workbook"),
        ("broken.xlsx", b"PK\x03\x04" + b"\x00" * 200, "not a valid Excel workbook"),
        ("old.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, "save it in Excel as .xlsx"),
        ("ragged.csv", b"id,text\n1,a\n2,b,c\n", "Line 3 of ragged.csv has 3 cells but the header row has 2"),
        ("commas.csv", b"text\nhello, world\n", "more cells than the header"),
        ("quote.csv", b'id,text\n1,"never closed\n2,b\n', "never closed"),
    ],
)
def test_unusable_files_raise_one_plain_sentence(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(PromptFileError, match=expected) as error:
        load_prompt_table(path)
    message = str(error.value)
    assert message.count(". ") == 0 and "\n" not in message and "Traceback" not in message


def _zip(entries: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as book:
        for name, content in entries.items():
            book.writestr(name, content)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("entries", "kind"),
    [
        ({"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<w:document/>"}, "is a Word document"),
        ({"[Content_Types].xml": b"<Types/>", "ppt/presentation.xml": b"<p/>"}, "is a PowerPoint presentation"),
        (
            {"mimetype": b"application/vnd.oasis.opendocument.spreadsheet", "content.xml": b"<x/>"},
            "is a LibreOffice (OpenDocument) spreadsheet",
        ),
        ({"notes.txt": b"hello"}, "is a zip archive"),
    ],
)
def test_a_renamed_office_file_is_named_for_what_it_is_and_what_is_read(tmp_path, entries, kind):
    for name in ("study.csv", "study.xlsx"):
        path = tmp_path / name
        path.write_bytes(_zip(entries))
        with pytest.raises(PromptFileError) as error:
            load_prompt_table(path)
        message = str(error.value)
        assert f"{name} {kind}, not a table of prompts" in message and "CSV, TSV and Excel (.xlsx)" in message
        assert "not a valid Excel workbook" not in message and "\n" not in message


def test_missing_file_and_folder_are_refused(tmp_path):
    with pytest.raises(PromptFileError, match="does not exist"):
        load_prompt_table(tmp_path / "nope.csv")
    with pytest.raises(PromptFileError, match="is a folder"):
        load_prompt_table(tmp_path)


def test_unreadable_file_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "p.csv"
    path.write_text("text\na\n", encoding="utf-8")

    def denied(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", denied)  # root could read a chmod 0 file
    with pytest.raises(PromptFileError, match=r"cannot be opened \(Permission denied\)"):
        load_prompt_table(path)


def test_hundred_thousand_rows_load_quickly(tmp_path):
    path = tmp_path / "big.csv"
    n = 100_000
    pd.DataFrame({"id": range(n), "text": [f"prompt number {i} about something" for i in range(n)]}).to_csv(
        path, index=False
    )
    start = time.perf_counter()
    table = load_prompt_table(path)
    texts = table.texts
    elapsed = time.perf_counter() - start
    assert len(texts) == n and texts[-1] == f"prompt number {n - 1} about something"
    assert elapsed < 5.0, f"loading {n} rows took {elapsed:.1f}s"


def test_read_table_gives_frame_and_meta_without_choosing_a_column(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("a,b\nx,y\n", encoding="utf-8")
    frame, meta = read_table(path)
    assert frame.to_dict("list") == {"a": ["x"], "b": ["y"]}
    assert meta.encoding == "utf-8" and len(meta.sha256) == 64
    assert isinstance(PromptTable(path, frame, "a", meta.sha256, meta.encoding).texts, list)


# --- duplicate column names and uncalculated formulas --------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_duplicate_column_names_are_never_guessed_and_are_named_in_the_message(suffix, tmp_path):
    header, rows = ["id", "prompt", "prompt"], [["1", "first copy", "second copy"], ["2", "a", "b"]]
    if suffix == ".csv":
        path = tmp_path / "dup.csv"
        path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n", encoding="utf-8")
    else:
        path = write_xlsx(tmp_path / "dup.xlsx", header, rows)
    with pytest.raises(PromptFileError) as info:
        load_prompt_table(path)
    message = str(info.value)
    assert "2 columns named 'prompt'" in message and "'prompt' and 'prompt.1'" in message
    assert "--column" in cli_sentence(info.value)
    # The user's choice of either copy is taken.
    assert load_prompt_table(path, "prompt.1").texts == ["second copy", "b"]
    chosen = load_prompt_table(path, "prompt")
    assert chosen.texts == ["first copy", "a"]
    assert [d.shown_as for d in chosen.duplicates] == [("prompt", "prompt.1")]


def test_blank_header_cells_are_not_reported_as_duplicates(tmp_path):
    path = tmp_path / "blank.csv"
    path.write_text("text,,\nhello,1,2\n", encoding="utf-8")
    table = load_prompt_table(path, "text")
    assert table.duplicates == ()


def test_an_uncalculated_excel_formula_is_reported_as_a_formula_not_an_empty_row(tmp_path):
    # openpyxl, like other programs that are not Excel, saves formulas without a cached result.
    path = write_xlsx(
        tmp_path / "f.xlsx", ["id", "text"], [[0, "hello"], [1, '=CONCAT("a", "b")'], [2, "bye"], [3, '=UPPER("c")']]
    )
    with pytest.raises(PromptFileError) as info:
        load_prompt_table(path)
    message = str(info.value)
    assert "formulas that Excel has not calculated" in message and "rows 1, 3 " in message
    assert "open the file in Excel and save it" in message
    # The last row is kept (its value alone reads as nothing), so row numbers still match the file.
    assert load_prompt_table(path, check_empty=False).texts == ["hello", "", "bye", ""]


def test_a_sheet_that_ends_in_uncalculated_formulas_keeps_those_rows(tmp_path):
    # Read for its values alone, the last row would be dropped and the run would silently have one prompt less.
    path = write_xlsx(tmp_path / "end.xlsx", ["text"], [["hello"], ['=UPPER("c")']])
    assert load_prompt_table(path, check_empty=False).texts == ["hello", ""]
    with pytest.raises(PromptFileError, match="not calculated in data row 1 "):
        load_prompt_table(path)


def _workbook_of_three_sheets(path):
    book = openpyxl.Workbook()
    book.active.title = "pilot"
    book.active.append(["text"])
    book.active.append(["pilot prompt"])
    for name, texts in (("main study", ["the study's prompt"]), ("notes", ["not prompts"])):
        sheet = book.create_sheet(name)
        sheet.append(["text"])
        for text in texts:
            sheet.append([text])
    book.save(path)
    return path


def test_a_workbook_of_several_sheets_names_the_sheet_read_and_the_others_and_reads_the_one_picked(tmp_path):
    path = _workbook_of_three_sheets(tmp_path / "study.xlsx")
    first = load_prompt_table(path)
    assert first.texts == ["pilot prompt"] and first.sheet == "pilot"
    assert first.sheets == ("pilot", "main study", "notes")
    assert first.describe_sheets() == (
        "study.xlsx has 3 sheets; the prompts are read from 'pilot' (the first), not from 'main study', 'notes'"
    )
    picked = load_prompt_table(path, sheet="main study")
    assert picked.texts == ["the study's prompt"] and picked.sheet == "main study"
    assert picked.describe_sheets().startswith("study.xlsx has 3 sheets; the prompts are read from 'main study', not")
    assert picked.sha256 == first.sha256  # the same bytes: the sheet is what tells the two apart
    assert (
        load_prompt_table(write_xlsx(tmp_path / "one.xlsx", ["text"], [["a"]], extra_sheet=False)).describe_sheets()
        == ""
    )


def test_a_sheet_the_workbook_lacks_or_a_sheet_of_a_text_file_is_refused_naming_the_sheets(tmp_path, prompts_csv):
    with pytest.raises(PromptFileError) as refused:
        load_prompt_table(_workbook_of_three_sheets(tmp_path / "study.xlsx"), sheet="main")
    assert str(refused.value) == (
        "study.xlsx has no sheet named 'main'; its sheets are 'pilot', 'main study', 'notes': choose one of them."
    )
    with pytest.raises(PromptFileError, match="has no sheets"):
        load_prompt_table(prompts_csv, sheet="main study")


def test_the_sheet_of_a_workbook_of_several_is_part_of_the_job_and_kept_for_reopening(tmp_path):
    from gpi_desktop.core.files.runstore import describe_key_differences
    from gpi_desktop.core.job.job import JobSpec, job_key, job_record, load_prompts

    path = _workbook_of_three_sheets(tmp_path / "study.xlsx")
    first, main = JobSpec(path), JobSpec(path, sheet="main study")
    assert (
        describe_key_differences(job_key(first, load_prompts(first)), job_key(main, load_prompts(main)))
        == "another sheet"
    )
    assert job_record(main)["sheet"] == "main study"


def test_a_note_of_one_line_is_said_to_be_no_table_not_a_header_without_rows(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("Remember to ask the committee about the budget before Friday\n", encoding="utf-8")
    with pytest.raises(PromptFileError) as error:
        load_prompt_table(path)
    assert str(error.value).startswith("notes.txt holds a single line of text, not a table of prompts")
    header_only = tmp_path / "header.csv"
    header_only.write_text("text\n", encoding="utf-8")
    with pytest.raises(PromptFileError, match="has a header row but no data rows"):
        load_prompt_table(header_only)


@pytest.mark.parametrize("name", ["study.pdf", "study"])
def test_a_table_under_a_name_that_is_no_tables_is_refused_in_words(tmp_path, name):
    path = tmp_path / name
    path.write_text("text\nhello\n", encoding="utf-8")  # a CSV renamed
    with pytest.raises(PromptFileError) as error:
        load_prompt_table(path)
    message = str(error.value)
    assert message.startswith(f"{name} ends in .pdf" if name.endswith(".pdf") else f"{name} has no extension")
    assert "rename it to end in .csv" in message
