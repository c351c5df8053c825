"""An error says what happened and carries what to do; each front end words the remedy its own way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from gpi_desktop.cli.error_words import REMEDY_WORDS as CLI_WORDS
from gpi_desktop.cli.error_words import cli_sentence
from gpi_desktop.core.vocabulary.errors import DiskFullError, MemoryFitError, Remedy, ResumeError
from gpi_desktop.ui.shared.error_words import REMEDY_WORDS as WINDOW_WORDS
from gpi_desktop.ui.shared.error_words import window_sentence

CORE = Path(__file__).resolve().parent.parent / "gpi_desktop" / "core"


def test_an_error_with_a_remedy_says_what_happened_then_what_to_do_in_each_front_ends_words():
    error = ResumeError("The model's files changed since this run started", remedy=Remedy.START_OVER)
    assert str(error) == "The model's files changed since this run started: start it over."
    assert cli_sentence(error) == "The model's files changed since this run started: start over with --overwrite."
    assert window_sentence(error) == (
        "The model's files changed since this run started: press Run and choose "
        "\u201cStart again from the beginning\u201d."
    )


def test_a_remedy_after_a_whole_sentence_is_a_sentence_of_its_own():
    error = MemoryFitError("It will not fit in 8 GB. Lower the batch size.", remedy=Remedy.RUN_ANYWAY)
    assert error.verdict == "It will not fit in 8 GB. Lower the batch size."
    assert cli_sentence(error) == (
        "It will not fit in 8 GB. Lower the batch size. To run anyway, give --ignore-memory-check."
    )
    assert "--ignore-memory-check" not in window_sentence(error) and "Run anyway" in window_sentence(error)


def test_an_error_without_a_remedy_is_its_message_everywhere():
    error = DiskFullError("The disk is full while writing the export: free some space, then export again.")
    assert str(error) == cli_sentence(error) == window_sentence(error) == error.what


@pytest.mark.parametrize("remedy", list(Remedy))
def test_every_remedy_has_words_in_both_front_ends_and_only_the_command_line_names_flags(remedy):
    assert CLI_WORDS[remedy] and WINDOW_WORDS[remedy]
    assert "--" not in WINDOW_WORDS[remedy] and "--" not in remedy.value


def _messages(path: Path) -> list[tuple[int, str]]:
    """The string literals of a module (f-strings' text included) that are not docstrings."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


@pytest.mark.parametrize(
    "words", ["in the window", "press Resume", "New run", "Resume in", "tick ", "on the command line", "(--overwrite)"]
)
def test_no_core_message_speaks_of_the_window_or_its_buttons(words):
    speaking = [
        f"{path.relative_to(CORE)}:{line}"
        for path in sorted(CORE.rglob("*.py"))
        for line, text in _messages(path)
        if words in text
    ]
    assert speaking == []


def test_no_core_message_names_a_flag_of_the_command_line():
    from gpi_desktop.cli.entry import build_parser

    run = build_parser()._subparsers._group_actions[0].choices["run"]
    flags = {flag for action in run._actions for flag in action.option_strings if flag.startswith("--")}
    # The cluster package writes its tasks' command lines (run.sbatch) and parses `--shard I/N`: a task is a command.
    naming = [
        f"{path.relative_to(CORE)}:{line}: {flag}"
        for path in sorted(CORE.rglob("*.py"))
        if path.parent.name != "cluster"
        for line, text in _messages(path)
        for flag in flags
        if flag in text
    ]
    assert naming == []


def test_a_file_with_no_clear_text_column_says_how_to_pick_one_in_each_front_ends_words():
    import pandas as pd

    from gpi_desktop.core.files.prompts import choose_column
    from gpi_desktop.core.vocabulary.errors import PromptFileError

    frame = pd.DataFrame({"a": [1, 2], "b": [3, 4]})
    with pytest.raises(PromptFileError) as caught:
        choose_column(frame, None, "speeches.csv")
    assert cli_sentence(caught.value).endswith("none is clearly the prompt text: pick the text column with --column.")
    assert window_sentence(caught.value).endswith("pick the text column in step 3.")


def test_a_folder_that_is_not_empty_says_how_to_replace_it_in_each_front_ends_words(tmp_path):
    from gpi_desktop.core.output.export import check_output_folder
    from gpi_desktop.core.vocabulary.errors import OutputFolderError

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputFolderError) as caught:
        check_output_folder(tmp_path, overwrite=False)
    assert cli_sentence(caught.value) == (
        f"'{tmp_path}' is not empty (it holds 'notes.txt'): choose an empty folder, "
        "or replace the earlier export with --overwrite."
    )
    assert "--" not in window_sentence(caught.value) and "replace the earlier export" in window_sentence(caught.value)
