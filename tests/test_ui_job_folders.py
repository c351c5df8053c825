"""Jobs are kept in one folder named once for the program; jobs an older version kept are still found."""

from __future__ import annotations

from conftest import PROMPTS
from window_helpers import prepare, run_to_end, stop_after_first_result

from gpi_desktop.core.files.legacy_runs import adopt_job_folders, job_folder
from gpi_desktop.ui.shared.resources import APPLICATION, app_data_dir, legacy_data_dirs


def test_jobs_are_kept_in_one_folder_named_once(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    assert app_data_dir() == tmp_path / "share" / APPLICATION  # ~/.local/share/GPI Desktop, not twice
    assert legacy_data_dirs() == [tmp_path / "share" / "GPI Desktop" / "GPI Desktop"]


def test_an_unfinished_job_of_the_older_folder_is_moved_and_offered_to_continue(
    qtbot, make_window, tiny_llama, prompts_csv, tmp_path
):
    old = make_window(data_dir="old")  # what an older version used as its data folder
    prepare(qtbot, old, tiny_llama, prompts_csv, batch=1, max_new=20)
    stop_after_first_result(qtbot, old)
    kept = old.run_page.results.finished_count()
    old.close()
    (job,) = list((tmp_path / "old" / "runs").iterdir())

    window = make_window(
        {"Continue the earlier run?": "Continue where it stopped"}, data_dir="new", legacy_dirs=[tmp_path / "old"]
    )
    assert (tmp_path / "new" / "runs" / job.name).is_dir() and not (tmp_path / "old").exists()
    prepare(qtbot, window, tiny_llama, prompts_csv, batch=1, max_new=20)
    fresh = []
    window.runner.partial_result.connect(fresh.append)
    outcome = run_to_end(qtbot, window)
    assert [a.title for a in window.prompter.asked] == ["Continue the earlier run?"]
    assert f"{kept} of {len(PROMPTS)} prompts are done" in window.prompter.asked[0].text
    assert len(fresh) == len(PROMPTS) - kept and len(outcome.results) == len(PROMPTS)


def test_a_job_folder_that_cannot_be_moved_is_still_found_where_it_is(tmp_path, monkeypatch):
    import os

    old_runs, runs = tmp_path / "old" / "runs", tmp_path / "new" / "runs"
    (old_runs / "abc").mkdir(parents=True)
    (old_runs / "abc" / "journal").write_text("x")
    (old_runs / "def").mkdir()

    def refuse(src, dst):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "replace", refuse)
    left = adopt_job_folders(old_runs, runs)
    assert left == [old_runs / "abc", old_runs / "def"]
    assert job_folder(runs, "abc", [old_runs]) == old_runs / "abc"
    assert job_folder(runs, "new-job", [old_runs]) == runs / "new-job"  # new jobs go to the new folder
    monkeypatch.undo()
    (runs / "def").mkdir(parents=True)  # the same job started again after the update: the new folder wins
    assert adopt_job_folders(old_runs, runs) == [old_runs / "def"]
    assert (runs / "abc" / "journal").read_text() == "x"
    assert job_folder(runs, "def", [old_runs]) == runs / "def"
