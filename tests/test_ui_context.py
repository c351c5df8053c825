"""Step 3 marks the prompts too long for the model's context before Run (issue 11, item 9).

Measured off the GUI thread with the tokenizer alone, again whenever the model,
the prompts, the column, the task or the template options change; a new token
limit only moves the line. A measure made for other inputs is never shown. A hub
model not downloaded yet is measured with its tokenizer files only.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd
import pytest
from window_helpers import wait_idle

from gpi_desktop.core.model.tinymodel import TinySpec, build_tiny_model
from gpi_desktop.ui.shared.table_models import TOO_LONG_BRUSH

CONTEXT = 128  # the tiny model's chat template alone takes about 70 of them
MAX_NEW = 12
LONG = " ".join(["word"] * 80)
MEDIUM = " ".join(["word"] * 13)  # about 103 tokens: fits with 12 new tokens, not with 30


@pytest.fixture(scope="module")
def short_context(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("short-context"), TinySpec(seed=1, max_positions=CONTEXT))


@pytest.fixture
def prompts(tmp_path) -> Path:
    path = tmp_path / "prompts.csv"
    pd.DataFrame({"text": ["short one", LONG, MEDIUM, f"{LONG} {LONG}"], "other": ["a", "b", "c", "d"]}).to_csv(
        path, index=False
    )
    return path


def measured(qtbot, window, timeout=60_000):
    """Until the measure of the current inputs is shown."""
    wait_idle(qtbot, window)
    panel = window.prompts_panel
    qtbot.waitUntil(lambda: not panel.meter.is_measuring() and panel._current_measure() is not None, timeout=timeout)
    return panel


def prepare(qtbot, window, model, csv, max_new=MAX_NEW):
    window.model_panel.set_model(str(model))
    window.settings_panel.max_tokens.setValue(max_new)
    window.prompts_panel.load_file(csv)
    return measured(qtbot, window)


def marked_rows(panel) -> list[int]:
    model = panel.model
    col = panel.table.columns.index(panel.table.column)
    from PySide6.QtCore import Qt

    return [
        row
        for row in range(model.rowCount())
        if model.data(model.index(row, col), Qt.ItemDataRole.BackgroundRole) == TOO_LONG_BRUSH
    ]


def count_measures(monkeypatch) -> list[str]:
    """The thread each measure ran on."""
    from gpi_desktop.core.generation import instructions

    threads, real = [], instructions.measure_prompt_lengths

    def measure(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(instructions, "measure_prompt_lengths", measure)
    return threads


def test_prompts_too_long_for_the_context_are_marked_with_their_lengths_and_the_limit_before_run(
    qtbot, make_window, short_context, prompts, monkeypatch
):
    from PySide6.QtCore import Qt

    threads = count_measures(monkeypatch)
    window = make_window()
    panel = prepare(qtbot, window, short_context, prompts)
    assert threads and all(name != threading.main_thread().name for name in threads)
    assert marked_rows(panel) == [1, 3]
    text = panel.context_label.text()
    assert "rows 1 (" in text and ", 3 (" in text and "0 (" not in text and "2 (" not in text
    assert f"at most {CONTEXT} tokens" in text and f"at most {CONTEXT - MAX_NEW}" in text
    assert not panel.context_label.isHidden()
    header = panel.model.headerData(1, Qt.Orientation.Vertical)
    assert header.startswith("1 ") and "tokens" in header
    tip = panel.model.data(panel.model.index(1, 0), Qt.ItemDataRole.ToolTipRole)
    assert "Too long for the model" in tip and f"at most {CONTEXT - MAX_NEW:,} fit" in tip
    assert "too long" in window.run_blocker()
    assert not window.run_page.run_button.isEnabled()
    assert "\u2714" not in window.steps.item(2).text()


def test_the_line_above_the_table_names_the_first_rows_and_counts_the_others(
    qtbot, make_window, short_context, tmp_path
):
    many = tmp_path / "many.csv"
    pd.DataFrame({"text": [LONG] * 8 + ["short"]}).to_csv(many, index=False)
    window = make_window()
    panel = prepare(qtbot, window, short_context, many)
    assert marked_rows(panel) == list(range(8))
    text = panel.context_label.text()
    assert "rows 0 (304 tokens), 1 (304 tokens), 2 (304 tokens), 3 (304 tokens), 4 (304 tokens) and 3 more" in text
    assert text.endswith("They are marked below.")


def test_a_new_token_limit_moves_the_line_without_measuring_again(
    qtbot, make_window, short_context, prompts, monkeypatch
):
    threads = count_measures(monkeypatch)
    window = make_window()
    panel = prepare(qtbot, window, short_context, prompts)
    measures = len(threads)
    window.settings_panel.max_tokens.setValue(30)
    assert marked_rows(panel) == [1, 2, 3]
    assert f"at most {CONTEXT - 30}" in panel.context_label.text()
    window.settings_panel.max_tokens.setValue(1)
    wait_idle(qtbot, window)
    assert marked_rows(panel) == [1, 3]
    assert len(threads) == measures


def test_prompts_that_fit_are_said_to_fit_and_run_is_not_blocked(qtbot, make_window, tiny_llama, prompts):
    window = make_window()
    panel = prepare(qtbot, window, tiny_llama, prompts)  # 4,096 positions
    assert marked_rows(panel) == []
    assert panel.context_label.text().startswith("All 4 prompts fit the model's context")
    assert window.run_blocker() is None


@pytest.mark.parametrize("change", ["model", "column", "task", "file"])
def test_the_prompts_are_measured_again_when_what_their_lengths_depend_on_changes(
    qtbot, make_window, short_context, tiny_llama, prompts, tmp_path, change
):
    window = make_window()
    panel = prepare(qtbot, window, short_context, prompts)
    assert marked_rows(panel) == [1, 3]
    if change == "model":
        window.model_panel.set_model(str(tiny_llama))
        expected = []
    elif change == "column":
        panel.select_column("other")
        expected = []
    elif change == "task":  # an instruction of 60 words makes every prompt too long
        sp = window.settings_panel
        sp.task_box.setCurrentIndex(sp.task_box.findData("custom"))
        sp.instruction_edit.setPlainText(" ".join(["Please"] * 60))
        expected = [0, 1, 2, 3]
    else:
        other = tmp_path / "other.csv"
        pd.DataFrame({"text": [LONG, "short"]}).to_csv(other, index=False)
        panel.load_file(other)
        qtbot.waitUntil(lambda: panel.table.path == other, timeout=30_000)
        expected = [0]
    # What was measured for the earlier inputs is not shown for these, even before the new measure returns.
    assert panel._current_measure() is None or marked_rows(panel) == expected
    measured(qtbot, window)
    assert marked_rows(panel) == expected
    assert (window.run_blocker() is None) == (not expected)


def test_a_measure_made_for_earlier_inputs_is_never_shown(
    qtbot, make_window, short_context, tiny_llama, prompts, monkeypatch
):
    from gpi_desktop.core.generation import instructions

    gate, real = threading.Event(), instructions.measure_prompt_lengths
    first = []

    def slow_for_the_short_context(settings, texts, reader, **kwargs):
        if settings.model == str(short_context):
            first.append(True)
            gate.wait(30)
        return real(settings, texts, reader, **kwargs)

    monkeypatch.setattr(instructions, "measure_prompt_lengths", slow_for_the_short_context)
    window = make_window()
    panel = window.prompts_panel
    shown = []
    panel.meter.measured.connect(lambda m: shown.append(m.key.model))
    window.model_panel.set_model(str(short_context))
    window.prompts_panel.load_file(prompts)
    qtbot.waitUntil(lambda: bool(first), timeout=30_000)  # the short context's measure is out
    window.model_panel.set_model(str(tiny_llama))
    gate.set()
    measured(qtbot, window)
    assert shown == [str(tiny_llama)]
    assert marked_rows(panel) == []
    assert panel.context_label.text().startswith("All 4 prompts fit")


def test_a_hub_model_not_downloaded_is_measured_with_its_tokenizer_files_only(
    qtbot, make_window, short_context, prompts, monkeypatch, tmp_path
):
    from hubserver import FakeHub, point_client_at, repo_from_folder

    from gpi_desktop.core.hub import cache

    with FakeHub() as server:
        point_client_at(monkeypatch, server.url, tmp_path / "hf-home")
        repo = server.add(repo_from_folder("tiny-org/short-context", short_context))
        window = make_window()
        panel = prepare(qtbot, window, "tiny-org/short-context", prompts)
        assert marked_rows(panel) == [1, 3]
        fetched = [path for method, path, _range in server.requests if method == "GET" and "/resolve/" in path]
        assert any(path.endswith("/tokenizer.json") for path in fetched)
        # Step 2's memory estimate reads the weights' header (a Range request); the weights themselves stay there.
        weights = len(repo.files["model.safetensors"])
        assert server.bytes_sent.get("model.safetensors", 0) < weights / 2
        blobs = cache.hub_cache_dir() / "models--tiny-org--short-context" / "blobs"
        assert not list(blobs.glob(repo.etag("model.safetensors") + "*"))
        assert cache.cached_snapshot("tiny-org/short-context") is None


def test_a_hub_model_that_cannot_be_measured_yet_says_so_and_leaves_it_to_run(qtbot, make_window, prompts, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    window = make_window()
    panel = prepare(qtbot, window, "someone/not-downloaded-model", prompts)
    text = panel.context_label.text()
    assert text.startswith("The prompts are not measured against the model's context yet")
    assert "Offline mode" in text and "Run measures them before it loads the model" in text
    assert marked_rows(panel) == []
    assert "too long" not in (window.run_blocker() or "")
