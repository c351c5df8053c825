"""Every kept job is offered at start, finished ones first and ready to export, one click from its inputs; a job
another process is running is said to be running there, with its progress and no internal folder (issue 25,
points 3 and 4). The jobs are left by a real process killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import PROMPTS

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL and journal locks are POSIX")

CHILD = r"""
import os, signal, sys
from pathlib import Path
from gpi_desktop.core.files.runstore import RunJournal
from gpi_desktop.core.job.job import JobRun, JobSpec, job_journal_folder, job_key, load_prompts, run_job
from gpi_desktop.core.job.journals import ResumePolicy
from gpi_desktop.core.vocabulary.settings import RunSettings

mode, model, runs, csv = sys.argv[1:5]
spec = JobSpec(Path(csv), "text", RunSettings(model=model, device="cpu", max_new_tokens=8, batch_size=1))
table = load_prompts(spec)
folder = job_journal_folder(Path(runs), spec, table)


class KilledAfterItsFirstPrompt:
    def set_status(self, message): pass
    def set_progress(self, progress): pass
    def set_partial_result(self, result): os.kill(os.getpid(), signal.SIGKILL)  # journaled before it is told
    def is_interruption_requested(self): return False


if mode == "finish":
    run_job(JobRun(spec, table, folder), None, ResumePolicy.CONTINUE)
    os.kill(os.getpid(), signal.SIGKILL)  # finished, never exported
elif mode == "cut":
    run_job(JobRun(spec, table, folder), KilledAfterItsFirstPrompt(), ResumePolicy.CONTINUE)
else:  # "hold": a run going on in this process, until stdin closes
    with RunJournal.open(folder, job_key(spec, table)):
        print("holding", flush=True)
        sys.stdin.read()
"""


def _child(mode: str, model: Path, runs: Path, csv: Path, **kwargs):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen([sys.executable, "-c", CHILD, mode, str(model), str(runs), str(csv)], env=env, **kwargs)


def _csv(folder: Path, name: str, prompts) -> Path:
    path = folder / name
    pd.DataFrame({"text": prompts}).to_csv(path, index=False)
    return path


def test_after_kill_9_the_finished_job_is_offered_first_ready_to_export_and_opens_in_one_click(
    qtbot, make_window, tiny_llama, tmp_path
):
    runs = tmp_path / "data" / "runs"
    done, cut = _csv(tmp_path, "done.csv", PROMPTS[:3]), _csv(tmp_path, "cut.csv", PROMPTS)
    for mode, csv in (("finish", done), ("cut", cut)):
        assert _child(mode, tiny_llama, runs, csv).wait(timeout=300) == -signal.SIGKILL

    window = make_window()
    bar = window.unfinished_bar
    qtbot.waitUntil(lambda: len(bar.lines) == 2, timeout=30_000)
    first, second = (label.text() for label in bar.lines)
    assert "done.csv" in first and "ready to export" in first and "all 3 rows done" in first
    assert "cut.csv" in second and "1 of 8 rows done" in second
    for line in (first, second):
        assert tiny_llama.name in line and "at most 8 new tokens" in line and "pooling last" in line
    assert [b.text() for b in bar.buttons] == ["Open to export", "Reopen"]

    with qtbot.waitSignal(window.run_finished, timeout=120_000):
        bar.buttons[0].click()
    assert len(window.outcome.results) == 3 and window.export_page.export_button.isEnabled()
    assert window.prompts_panel.table.path == str(done.absolute()) or Path(window.prompts_panel.table.path) == done
    assert window.settings_panel.max_tokens.value() == 8


def test_a_job_running_in_another_process_is_said_to_run_there_with_its_progress_and_no_internal_folder(
    qtbot, make_window, tiny_llama, tmp_path
):
    from window_helpers import prepare

    runs = tmp_path / "data" / "runs"
    csv = _csv(tmp_path, "elsewhere.csv", PROMPTS)
    assert _child("cut", tiny_llama, runs, csv).wait(timeout=300) == -signal.SIGKILL
    holder = _child("hold", tiny_llama, runs, csv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        window = make_window({"Continue the earlier run?": "Continue where it stopped"})
        bar = window.unfinished_bar
        qtbot.waitUntil(lambda: len(bar.lines) == 1, timeout=30_000)
        line = bar.lines[0].text()
        assert "running in another window or process now: 1 of 8 rows done" in line
        assert bar.buttons == [] and "runs" not in line

        prepare(qtbot, window, tiny_llama, csv, batch=1, max_new=8)  # the same job, opened by hand
        with qtbot.waitSignal(window.run_failed, timeout=60_000) as failed:
            window.run_page.run_button.click()
        assert failed.args[0] == (
            "Another run is using this job right now: wait for it to finish, or stop it in the "
            "window or terminal where it runs."
        )
        assert str(runs) not in window.run_page.status_label.text()
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
