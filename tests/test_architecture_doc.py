"""docs/architecture.md's module tables name every module of the tree, and only modules that exist."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "architecture.md"
PACKAGE = REPO / "gpi_desktop"


def _top_level_names(text: str) -> list[str]:
    """The `names` of a table cell outside parentheses: the modules it lists, not what it says about them."""
    depth, outside = 0, []
    for char in text:
        depth += char == "("
        outside.append(char if depth == 0 else " ")
        depth -= char == ")" and depth > 0
    return re.findall(r"`([A-Za-z_][\w/]*)`", "".join(outside))


def _tables() -> list[tuple[Path, str, list[str]]]:
    """(folder, the row's text, the modules its cell names) for each row of the module tables.

    A row whose first cell is a folder (`core/job/`, `ui/steps/`) lists that folder's modules in its
    last cell; otherwise the row is one module of the folder its section's heading names (`gpi_desktop/cli/`).
    """
    rows, section = [], None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"#+ .*`gpi_desktop/([\w/]+)/`", line)
        if heading:
            section = PACKAGE / heading[1]
        elif line.startswith("#"):
            section = None
        if not line.startswith("|") or set(line) <= set("|- "):
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        folder = re.fullmatch(r"`([\w/]+)/`", cells[0])
        if folder:
            rows.append((PACKAGE / folder[1], cells[-1], _top_level_names(cells[-1])))
        elif section is not None and re.fullmatch(r"`\w+`", cells[0]):
            rows.append((section, cells[0], _top_level_names(cells[0])))
    return rows


def test_every_module_a_table_names_exists():
    missing = [
        f"{folder.relative_to(REPO)}/{name}.py"
        for folder, _text, names in _tables()
        for name in names
        if not (folder / f"{name}.py").is_file()
    ]
    assert missing == []


def test_every_module_of_the_tree_is_named_in_a_table():
    rows = _tables()
    listed_folders = {folder for folder, _text, _names in rows}
    doc = DOC.read_text(encoding="utf-8")
    unlisted = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "__init__.py":
            continue
        if path.parent == PACKAGE:  # selftest, logs, __main__: named in the layers at the top
            if f"gpi_desktop/{path.name}" not in doc:
                unlisted.append(str(path.relative_to(REPO)))
            continue
        texts = [text for folder, text, _names in rows if folder == path.parent]
        if path.parent not in listed_folders or not any(f"`{path.stem}`" in text for text in texts):
            unlisted.append(str(path.relative_to(REPO)))
    assert unlisted == []


def test_the_tables_cover_the_command_line_the_window_and_every_core_package():
    folders = {folder.relative_to(PACKAGE).as_posix() for folder, _text, _names in _tables()}
    core = {p.parent.relative_to(PACKAGE).as_posix() for p in (PACKAGE / "core").glob("*/__init__.py")}
    assert {"cli", "ui"} | core <= folders
