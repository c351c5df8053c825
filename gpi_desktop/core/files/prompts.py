"""Read a prompts file (CSV, TSV or XLSX) into a `PromptTable`.

Rows are numbered as `pandas.read_csv` / `read_excel` number them (zero-based,
blank CSV lines skipped), because that number is the `k` of `hidden_<k>.pt`
and gpi_pack users index the hidden states with `df.index` of that frame.
Every cell is read as text so that "NA", "None" or "007" reach the model as
written.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

from gpi_desktop.core.vocabulary.errors import PromptFileError, Remedy

if TYPE_CHECKING:  # pandas is imported where a table is read (about 0.5 s): the window starts without it
    import pandas as pd

EXCEL_SUFFIXES = {".xlsx", ".xlsm"}
TAB_SUFFIXES = {".tsv", ".tab"}
TABLE_SUFFIXES = {".csv", ".txt", *TAB_SUFFIXES, *EXCEL_SUFFIXES}  # what a prompts file may be called
# Names (or all parts of a name such as "prompt_text") that mark the text column.
TEXT_COLUMN_WORDS = {
    "prompt", "prompts", "text", "texts", "input", "inputs", "message", "messages", "content",
    "question", "questions", "sentence", "sentences", "instruction", "query", "document",
    "documents", "body", "statement", "utterance",
}  # fmt: skip
MAX_LISTED_ROWS = 20
_GUESS_SAMPLE = 2000

_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0"  # old .xls, or a password-protected workbook


@dataclass(frozen=True)
class TableMeta:
    """What `read_table` learnt about the file besides its cells."""

    sha256: str  # of the file's bytes
    encoding: str  # "utf-8", "utf-8-sig", "utf-16", "cp1252", "latin-1" or "xlsx"
    duplicates: tuple[DuplicateColumn, ...] = ()
    # column -> rows whose cell is an Excel formula saved without its result (see _read_excel)
    uncalculated_formulas: dict[str, list[int]] = field(default_factory=dict)
    sheet: str | None = None  # the workbook's sheet read (None: not a workbook)
    sheets: tuple[str, ...] = ()  # all the workbook's sheets, in order


@dataclass(frozen=True)
class DuplicateColumn:
    """A name the header row gives to several columns, and the names the table tells them apart by.

    The table names the copies as `pandas.read_csv` / `read_excel` do ('prompt', 'prompt.1', ...), so that
    they match what a gpi_pack user's own `pd.read_csv` of the file shows.
    """

    name: str  # as written in the header
    shown_as: tuple[str, ...]  # the copies' names in the table, left to right

    def describe(self, file_name: str) -> str:
        copies = " and ".join(f"'{c}'" for c in self.shown_as)
        return (
            f"{file_name} has {len(self.shown_as)} columns named '{self.name}'; they are told apart as {copies} "
            "(left to right)"
        )


@dataclass(frozen=True, eq=False)
class PromptTable:
    """A prompts file as read: every column as text, the prompt column chosen."""

    path: Path
    frame: pd.DataFrame  # all columns, str cells, index 0..N-1
    column: str
    sha256: str
    encoding: str
    duplicates: tuple[DuplicateColumn, ...] = ()
    uncalculated_formulas: dict[str, list[int]] = field(default_factory=dict)
    sheet: str | None = None  # the workbook's sheet read (None: not a workbook)
    sheets: tuple[str, ...] = ()  # all the workbook's sheets, in order

    @property
    def other_sheets(self) -> list[str]:
        """The workbook's sheets not read, in order."""
        return [name for name in self.sheets if name != self.sheet]

    def describe_sheets(self) -> str:
        """Which sheet of a workbook of several was read, and the others ("" for one sheet or a text file)."""
        others = self.other_sheets
        if not others:
            return ""
        listed = ", ".join(f"'{name}'" for name in others)
        return (
            f"{self.path.name} has {len(self.sheets)} sheets; the prompts are read from '{self.sheet}'"
            f"{' (the first)' if self.sheet == self.sheets[0] else ''}, not from {listed}"
        )

    @classmethod
    def from_read(cls, path: Path, frame: pd.DataFrame, column: str, meta: TableMeta) -> PromptTable:
        """The table of a file `read_table` read, with `column` as the prompts."""
        return cls(
            path=path,
            frame=frame,
            column=column,
            sha256=meta.sha256,
            encoding=meta.encoding,
            duplicates=meta.duplicates,
            uncalculated_formulas=meta.uncalculated_formulas,
            sheet=meta.sheet,
            sheets=meta.sheets,
        )

    @property
    def texts(self) -> list[str]:
        return cast("list[str]", self.frame[self.column].tolist())

    @property
    def columns(self) -> list[str]:
        return [str(c) for c in self.frame.columns]

    def __len__(self) -> int:
        return len(self.frame)


def load_prompt_table(
    path: Path | str, column: str | None = None, *, check_empty: bool = True, sheet: str | None = None
) -> PromptTable:
    """Read and validate a prompts file; raises PromptFileError in plain words.

    `check_empty=False` lets the window show a table with empty prompts (to
    highlight them with `empty_rows`) before the user starts a run. `sheet`: the
    workbook's sheet to read (None: the first).
    """
    path = Path(path)
    frame, meta = read_table(path, sheet)
    chosen = choose_column(frame, column, path.name, meta.duplicates)
    table = PromptTable.from_read(path, frame, chosen, meta)
    if check_empty:
        formulas = uncalculated_formula_rows(table)
        rows = empty_rows(table)
        if formulas:
            raise PromptFileError(
                f"The prompt column '{chosen}' of {path.name} holds formulas that Excel has not calculated in data "
                f"{_plural(len(formulas), 'row')} {format_rows(formulas)} (counting from 0 at the first row under "
                "the header), so they have no text to read: open the file in Excel and save it, then open it again."
            )
        if rows:
            raise PromptFileError(
                f"The prompt column '{chosen}' of {path.name} is empty in data {_plural(len(rows), 'row')} "
                f"{format_rows(rows)} (counting from 0 at the first row under the header): "
                "write a prompt there or delete those rows."
            )
    return table


def read_table(path: Path | str, sheet: str | None = None) -> tuple[pd.DataFrame, TableMeta]:
    """All cells of the file (of a workbook's `sheet`, by default its first) as text, and the file's sha256 and encoding."""
    path = Path(path)
    data = _read_bytes(path)
    meta_sha = hashlib.sha256(data).hexdigest()
    if not data.strip():
        raise PromptFileError(f"The prompts file {path.name} is empty: put one prompt per row under a header row.")
    if data.startswith(_OLE_MAGIC):
        raise PromptFileError(
            f"{path.name} is an old-style (.xls) or password-protected Excel file: "
            "save it in Excel as .xlsx (without a password) or as CSV."
        )
    if data.startswith(_ZIP_MAGIC):
        other = _other_zip_kind(data)
        if other is not None:
            raise PromptFileError(
                f"{path.name} is {other}, not a table of prompts: GPI Desktop reads CSV, TSV and Excel (.xlsx) "
                "files, so put the prompts in a spreadsheet, one per row under a header, and save it as .xlsx or CSV."
            )
        sheets = workbook_sheets(path, data)
        chosen_sheet = _chosen_sheet(path, sheets, sheet)
        (frame, uncalculated), encoding = _read_excel(path, data, chosen_sheet), "xlsx"
        header = _excel_header(data, chosen_sheet)
    elif path.suffix.lower() in EXCEL_SUFFIXES:
        raise PromptFileError(
            f"{path.name} is not a valid Excel workbook: open it in Excel and save it again as .xlsx or CSV."
        )
    elif path.suffix.lower() not in TABLE_SUFFIXES:
        # A table under another name (a CSV renamed .pdf) would open, and be shown as what it is not.
        raise PromptFileError(
            f"{path.name} {'ends in ' + path.suffix if path.suffix else 'has no extension'}, which is no table's: "
            "GPI Desktop reads CSV, TSV and Excel (.xlsx) files; if it holds a table, rename it to end in .csv, "
            ".tsv or .xlsx."
        )
    else:
        if sheet is not None:
            raise PromptFileError(f"{path.name} is a text table, which has no sheets: leave the sheet out.")
        chosen_sheet, sheets = None, ()
        text, encoding = decode_text(data)
        if _looks_binary(text):
            raise PromptFileError(
                f"{path.name} does not look like a text table: choose a CSV, TSV or Excel (.xlsx) file."
            )
        frame, uncalculated = _read_delimited(path, text), {}
        header = _delimited_header(path, text)
    duplicates = duplicate_columns(header, [str(c) for c in frame.columns])
    frame.columns = [str(c) for c in frame.columns]
    frame = frame.reset_index(drop=True)
    if len(frame.columns) == 0:
        raise PromptFileError(f"The prompts file {path.name} is empty: put one prompt per row under a header row.")
    if len(frame) == 0 and len(frame.columns) == 1 and _reads_as_prose(str(frame.columns[0])):  # notes.txt
        raise PromptFileError(
            f"{path.name} holds a single line of text, not a table of prompts: write a header such as 'text' in "
            "the first line and one prompt per line under it, or use a spreadsheet saved as CSV or .xlsx."
        )
    if len(frame) == 0:
        raise PromptFileError(
            f"{path.name} has a header row but no data rows: put one prompt per row under the header."
        )
    return frame, TableMeta(
        sha256=meta_sha,
        encoding=encoding,
        duplicates=duplicates,
        uncalculated_formulas=uncalculated,
        sheet=chosen_sheet,
        sheets=sheets,
    )


def workbook_sheets(path: Path, data: bytes) -> tuple[str, ...]:
    """The sheets of an Excel workbook, in order (read from the workbook's index, without reading any cells)."""
    import openpyxl

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    except Exception:
        raise PromptFileError(
            f"{path.name} is not a valid Excel workbook: open it in Excel and save it again as .xlsx or CSV."
        ) from None
    try:
        return tuple(book.sheetnames)
    finally:
        book.close()


def _chosen_sheet(path: Path, sheets: tuple[str, ...], sheet: str | None) -> str:
    if not sheets:
        raise PromptFileError(f"{path.name} has no sheets: open it in Excel and save it again as .xlsx or CSV.")
    if sheet is None:
        return sheets[0]
    if sheet not in sheets:
        listed = ", ".join(f"'{name}'" for name in sheets)
        raise PromptFileError(f"{path.name} has no sheet named '{sheet}'; its sheets are {listed}: choose one of them.")
    return sheet


# What a zip file that is not an Excel workbook holds, by the folder or mimetype Office and LibreOffice give it.
_ZIP_KINDS = (("word/", "a Word document"), ("ppt/", "a PowerPoint presentation"))
_ODF_KINDS = (
    ("application/vnd.oasis.opendocument.spreadsheet", "a LibreOffice (OpenDocument) spreadsheet"),
    ("application/vnd.oasis.opendocument.text", "a LibreOffice (OpenDocument) text document"),
    ("application/vnd.oasis.opendocument", "a LibreOffice (OpenDocument) file"),
)


def _other_zip_kind(data: bytes) -> str | None:
    """What a zip file is when it is readable but no Excel workbook (a .docx renamed, say); None otherwise."""
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as book:
            names = book.namelist()
            mimetype = book.read("mimetype").decode("ascii", "replace") if "mimetype" in names else ""
    except (zipfile.BadZipFile, OSError, KeyError, RuntimeError):
        return None  # damaged: said as a damaged workbook
    if any(name.startswith("xl/") for name in names):
        return None
    for folder, kind in _ZIP_KINDS:
        if any(name.startswith(folder) for name in names):
            return kind
    for prefix, kind in _ODF_KINDS:
        if mimetype.startswith(prefix):
            return kind
    return "a zip archive"


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode bytes as Excel and editors write CSV files; returns (text, encoding)."""
    if data.startswith(b"\xef\xbb\xbf"):
        encoding = "utf-8-sig"
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):  # Excel's "Unicode text" is UTF-16
        encoding = "utf-16"
    else:
        encoding = "utf-8"
    try:
        return data.decode(encoding), encoding
    except UnicodeDecodeError:
        if encoding == "utf-16":
            raise PromptFileError("The prompts file is damaged: its text is not valid UTF-16.") from None
    if encoding == "utf-8-sig":  # a UTF-8 mark on a file that was later edited in another encoding
        data = data[3:]
    # Not UTF-8: Excel on Windows writes "CSV" in Windows-1252. Five bytes are
    # undefined there, and Latin-1 (which defines all) is the honest fallback.
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


def choose_column(
    frame: pd.DataFrame, column: str | None, file_name: str = "the file", duplicates: tuple[DuplicateColumn, ...] = ()
) -> str:
    """The user's column, else the only/obvious text column; raises PromptFileError otherwise.

    A column whose name the header repeats is never guessed: the user picks the copy.
    """
    columns = [str(c) for c in frame.columns]
    listed = ", ".join(f"'{c}'" for c in columns)
    if column is not None:
        if column in columns:
            return column
        loose = [c for c in columns if c.strip().casefold() == column.strip().casefold()]
        if len(loose) == 1:
            return loose[0]
        raise PromptFileError(f"There is no column '{column}' in {file_name}; its columns are {listed}.")
    guess = guess_text_column(frame)
    if guess is None:
        raise PromptFileError(
            f"{file_name} has several columns ({listed}) and none is clearly the prompt text", remedy=Remedy.PICK_COLUMN
        )
    shared = duplicate_of(guess, duplicates)
    if shared is not None:
        raise PromptFileError(shared.describe(file_name), remedy=Remedy.PICK_DUPLICATE_COLUMN)
    return guess


def duplicate_columns(header: list[str], columns: list[str]) -> tuple[DuplicateColumn, ...]:
    """The names `header` (the header row as written) repeats, with the table's names for their copies."""
    # Blank header cells are not a shared name: pandas calls them 'Unnamed: 3' and so on.
    positions: dict[str, list[int]] = {}
    for i, name in enumerate(header):
        positions.setdefault(name, []).append(i)
    return tuple(
        DuplicateColumn(name, tuple(columns[i] for i in where if i < len(columns)))
        for name, where in positions.items()
        if len(where) > 1 and name.strip()
    )


def duplicate_of(column: str | None, duplicates: tuple[DuplicateColumn, ...]) -> DuplicateColumn | None:
    """The repeated header name that `column` (a table name such as 'prompt.1') is a copy of, if any."""
    return next((d for d in duplicates if column in d.shown_as), None)


def _delimited_header(path: Path, text: str) -> list[str]:
    import pandas as pd

    header = pd.read_csv(
        io.StringIO(text),
        sep=_delimiter(path, text),
        header=None,
        nrows=1,
        dtype=str,
        keep_default_na=False,
        index_col=False,
    )
    return [str(c) for c in header.iloc[0].tolist()] if len(header) else []


def _excel_header(data: bytes, sheet: str) -> list[str]:
    import pandas as pd

    header = pd.read_excel(
        io.BytesIO(data), sheet_name=sheet, header=None, nrows=1, dtype=str, keep_default_na=False, engine="openpyxl"
    )
    return [str(c) for c in header.iloc[0].tolist()] if len(header) else []


def uncalculated_formula_rows(table: PromptTable) -> list[int]:
    """Rows whose prompt cell is an Excel formula saved without its result (read as empty)."""
    return list(table.uncalculated_formulas.get(table.column, ()))


def guess_text_column(frame: pd.DataFrame) -> str | None:
    """The only column, else the obvious text column, else None (ambiguous)."""
    columns = [str(c) for c in frame.columns]
    if len(columns) == 1:
        return columns[0]
    sample = frame.head(_GUESS_SAMPLE)
    all_stats = {name: _text_stats(sample.iloc[:, i]) for i, name in enumerate(columns)}
    stats = {name: length for name, length in all_stats.items() if length is not None}
    textual = [c for c in columns if c in stats]
    named = [c for c in columns if _is_text_name(c)]
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        named_textual = [c for c in named if c in textual]
        return named_textual[0] if len(named_textual) == 1 else None
    if len(textual) == 1:
        return textual[0]
    if len(textual) > 1:
        by_length = sorted(textual, key=lambda c: stats[c], reverse=True)
        # Only a clear winner counts: "speech" next to "party", not two similar columns.
        if stats[by_length[0]] >= 2 * stats[by_length[1]]:
            return by_length[0]
    return None


def empty_rows(table: PromptTable) -> list[int]:
    """Zero-based data rows whose prompt is empty or only blanks."""
    blank = table.frame[table.column].astype(str).str.strip().eq("")
    return cast("list[int]", blank.to_numpy().nonzero()[0].tolist())


def format_rows(rows: list[int], limit: int = MAX_LISTED_ROWS) -> str:
    shown = ", ".join(str(r) for r in rows[:limit])
    return shown if len(rows) <= limit else f"{shown} and {len(rows) - limit} more"


def _plural(n: int, word: str) -> str:
    return word if n == 1 else word + "s"


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise PromptFileError(f"The prompts file {path} does not exist: check the name and the folder.")
    if path.is_dir():
        raise PromptFileError(f"{path} is a folder, not a prompts file: choose a CSV, TSV or Excel file.")
    try:
        return path.read_bytes()
    except OSError as error:
        raise PromptFileError(
            f"The prompts file {path.name} cannot be opened ({error.strerror or error}): "
            "check that you may read it and that no other program locks it."
        ) from None


def _reads_as_prose(header: str) -> bool:
    """A lone first line that is a sentence rather than a column name ("Meeting notes, Tuesday: ...")."""
    return len(header) > 40 or len(header.split()) > 3


def _looks_binary(text: str) -> bool:
    head = text[:65536]
    if "\x00" in head:
        return True
    controls = sum(1 for ch in head if ord(ch) < 32 and ch not in "\t\n\r\f\v")
    return controls > 0.01 * len(head)


def _delimiter(path: Path, text: str) -> str:
    if path.suffix.lower() in TAB_SUFFIXES:
        return "\t"
    end = text.find("\n")
    header = text if end < 0 else text[:end]
    if "," not in header and "\t" in header:
        return "\t"
    if "," not in header and ";" in header:  # Excel's CSV where the decimal mark is a comma
        return ";"
    return ","


_FIELDS_ERROR = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")
_QUOTE_ERROR = re.compile(r"EOF inside string starting at row (\d+)")


def _read_delimited(path: Path, text: str) -> pd.DataFrame:
    import pandas as pd

    sep = _delimiter(path, text)
    shown_sep = {"\t": "tab", ",": "comma", ";": "semicolon"}[sep]
    too_many_cells = (
        f"Some rows of {path.name} have more cells than the header row: put texts that contain a {shown_sep} "
        "in double quotes, or save the file as .xlsx."
    )
    try:
        with warnings.catch_warnings():
            # index_col=False would otherwise drop the extra cells with only a warning.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(
                io.StringIO(text),
                sep=sep,
                dtype=str,
                keep_default_na=False,
                index_col=False,
            )
    except pd.errors.ParserWarning:
        raise PromptFileError(too_many_cells) from None
    except pd.errors.EmptyDataError:
        raise PromptFileError(
            f"The prompts file {path.name} is empty: put one prompt per row under a header row."
        ) from None
    except pd.errors.ParserError as error:
        message = str(error)
        if match := _FIELDS_ERROR.search(message):
            raise PromptFileError(
                f"Line {match.group(2)} of {path.name} has {match.group(3)} cells but the header row has "
                f"{match.group(1)}: put texts that contain a {shown_sep} in double quotes, or save the file as .xlsx."
            ) from None
        if match := _QUOTE_ERROR.search(message):
            raise PromptFileError(
                f"A double quote opened near line {match.group(1)} of {path.name} is never closed: "
                "fix the quotes, or save the file as .xlsx."
            ) from None
        raise PromptFileError(f"{path.name} cannot be read as a table: save it again as CSV or .xlsx.") from None


def _read_excel(path: Path, data: bytes, sheet: str) -> tuple[pd.DataFrame, dict[str, list[int]]]:
    """The sheet's cached values, and per column the rows that are formulas saved without a result.

    Excel stores a formula's last result next to it; programs that are not Excel (and scripts) may save the
    formula alone. Such a cell reads as empty, and a sheet that ends in them loses those rows altogether,
    so the formulas are read too (only when the workbook has any) to keep every row and name the cause.
    """
    import pandas as pd

    values = _excel_frame(path, data, sheet, data_only=True)
    if not _has_formulas(data):
        return values, {}
    formulas = _excel_frame(path, data, sheet, data_only=False)
    if [str(c) for c in formulas.columns] != [str(c) for c in values.columns] or len(formulas) < len(values):
        return values, {}  # the two readings do not line up; the values alone are still right
    if len(formulas) > len(values):
        padding = pd.DataFrame("", index=range(len(values), len(formulas)), columns=values.columns)
        values = pd.concat([values, padding])
    values = values.reset_index(drop=True)
    uncalculated = {}
    for i, name in enumerate(values.columns):
        missing = formulas.iloc[:, i].str.startswith("=") & values.iloc[:, i].eq("")
        rows = missing.to_numpy().nonzero()[0].tolist()
        if rows:
            uncalculated[str(name)] = rows
    return values, uncalculated


_FORMULA_ELEMENT = re.compile(rb"<(?:\w+:)?f[\s>/]")


def _has_formulas(data: bytes) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as book:
            return any(
                _FORMULA_ELEMENT.search(book.read(name))
                for name in book.namelist()
                if name.startswith("xl/worksheets/") and name.endswith(".xml")
            )
    except (zipfile.BadZipFile, OSError, KeyError):
        return False


def _excel_frame(path: Path, data: bytes, sheet: str, *, data_only: bool) -> pd.DataFrame:
    import pandas as pd

    try:
        return pd.read_excel(
            io.BytesIO(data),
            sheet_name=sheet,
            dtype=str,
            keep_default_na=False,
            engine="openpyxl",
            engine_kwargs={"data_only": data_only},
        )
    except Exception:
        raise PromptFileError(
            f"{path.name} is not a valid Excel workbook: open it in Excel and save it again as .xlsx or CSV."
        ) from None


def _is_text_name(name: str) -> bool:
    parts = [p for p in re.split(r"[^0-9a-z]+", name.strip().lower()) if p]
    return bool(parts) and all(p in TEXT_COLUMN_WORDS for p in parts)


def _text_stats(values: pd.Series) -> float | None:
    """Average length of a mostly non-numeric column's cells, or None for a numeric/empty column."""
    import pandas as pd

    cells = values.astype(str).str.strip()
    filled = cells[cells.ne("")]
    if filled.empty:
        return None
    numeric = pd.to_numeric(filled, errors="coerce").notna().mean()
    if numeric >= 0.5:
        return None
    return float(filled.str.len().mean())
