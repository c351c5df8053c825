"""No finished work is lost to a kill, a full disk, an edited journal or a second run (issue 11, items 1-5, 7, 8).

Kill points are made deterministic by a child process that patches the export's
file writer to kill itself at a chosen file event (POSIX: SIGKILL / SIGTERM);
disk-full cases inject ENOSPC (every platform) or use a small tmpfs (Linux, root).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from journals import KEY, H, journal_with

from gpi_desktop.core.files import runstore
from gpi_desktop.core.files.runstore import HEADER_NAME, RECORDS_NAME, RunJournal
from gpi_desktop.core.job.journals import ResumePolicy
from gpi_desktop.core.vocabulary.errors import ResumeError
from gpi_desktop.core.vocabulary.progress import NullState

# -- the journal (items 2, 4, 5) ---------------------------------------------------------------------


def test_a_new_journal_is_written_with_its_plan_in_one_header_write(tmp_path, monkeypatch):
    writes = []
    real = runstore._write_header
    monkeypatch.setattr(runstore, "_write_header", lambda folder, header: (writes.append(header), real(folder, header)))
    with RunJournal.create(tmp_path / "run", KEY, hidden_size=H, plan={"batch_size": 8, "model_revision": "abc"}):
        pass
    assert [w["plan"] for w in writes] == [{"batch_size": 8, "model_revision": "abc"}]
    with RunJournal.open(tmp_path / "run", KEY) as journal:
        assert journal.plan == {"batch_size": 8, "model_revision": "abc"}


def test_an_edited_hidden_size_is_refused_before_any_record_is_cut(tmp_path):
    journal_with(tmp_path, range(20))
    header_path = tmp_path / HEADER_NAME
    original = header_path.read_text()
    records_before = (tmp_path / RECORDS_NAME).read_bytes()
    header_path.write_text(json.dumps({**json.loads(original), "hidden_size": H * 2}))
    with pytest.raises(ResumeError, match="does not match"):
        RunJournal.open(tmp_path, KEY)
    assert (tmp_path / RECORDS_NAME).read_bytes() == records_before
    header_path.write_text(original)  # put right, every record is still there
    with RunJournal.open(tmp_path, KEY) as journal:
        assert journal.finished_rows() == set(range(20))


@pytest.mark.skipif(os.name != "posix", reason="directories can be fsynced on POSIX only")
def test_a_new_journal_folder_is_made_durable_in_its_parents(tmp_path, monkeypatch):
    synced: set[int] = set()
    real_fsync = os.fsync

    def recording_fsync(fd):
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            synced.add(info.st_ino)
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    out = tmp_path / "new" / "out"
    RunJournal.create(out / ".gpi-run", KEY, hidden_size=H).close()
    for folder in (out / ".gpi-run", out, out.parent, tmp_path):
        assert folder.stat().st_ino in synced, folder


# -- resuming a journal whose plan is gone (item 2) ---------------------------------------------------


def _tiny_spec(model: Path, prompts: Path, **settings):
    from gpi_desktop.core.job.job import JobSpec
    from gpi_desktop.core.vocabulary.settings import RunSettings

    return JobSpec(prompts, "text", RunSettings(model=str(model), device="cpu", max_new_tokens=8, **settings))


def test_run_job_creates_the_journal_with_its_batch_plan(tiny_llama, prompts_csv, tmp_path, monkeypatch):
    from gpi_desktop.core.job.job import JobRun, load_prompts, run_job

    writes = []
    real = runstore._write_header
    monkeypatch.setattr(runstore, "_write_header", lambda folder, header: (writes.append(header), real(folder, header)))
    spec = _tiny_spec(tiny_llama, prompts_csv, batch_size=3)
    run_job(JobRun(spec, load_prompts(spec), tmp_path / "work"), NullState())
    assert writes and writes[0]["plan"]["batch_size"] == 3


def test_a_journal_whose_plan_was_deleted_is_refused_not_run_one_at_a_time(tiny_llama, prompts_csv, tmp_path):
    from gpi_desktop.core.job.job import JobRun, job_key, load_prompts, run_job

    spec = _tiny_spec(tiny_llama, prompts_csv, batch_size=3)
    work = tmp_path / "work"
    with RunJournal.create(work, job_key(spec, load_prompts(spec)), hidden_size=64):
        pass  # what a kill between today's two header writes leaves
    with pytest.raises(ResumeError, match="batch plan"):
        run_job(JobRun(spec, load_prompts(spec), work), NullState(), ResumePolicy.CONTINUE)


def _old_journal(spec, work: Path, plan: dict) -> bytes:
    """A journal as an earlier version left it (no template date in its plan); returns its header's bytes."""
    from gpi_desktop.core.job.job import job_key, load_prompts

    with RunJournal.create(work, job_key(spec, load_prompts(spec)), hidden_size=64, plan=plan):
        pass
    return (work / HEADER_NAME).read_bytes()


def test_a_journal_that_lost_its_plan_is_refused_before_anything_is_written_into_it_or_loaded(
    tiny_llama, prompts_csv, tmp_path, monkeypatch
):
    from gpi_desktop.core.job.job import JobRun, load_prompts, run_job

    spec = _tiny_spec(tiny_llama, prompts_csv, batch_size=3)
    work = tmp_path / "work"
    header = _old_journal(spec, work, {})
    monkeypatch.setattr(
        "gpi_desktop.core.model.models.load_model",
        lambda *a, **k: pytest.fail("the model was loaded for a journal that is refused"),
    )
    with pytest.raises(ResumeError, match="batch plan"):
        run_job(JobRun(spec, load_prompts(spec), work), NullState(), ResumePolicy.CONTINUE)
    assert (work / HEADER_NAME).read_bytes() == header


def test_an_old_journal_of_another_model_version_is_refused_unchanged(tiny_llama, prompts_csv, tmp_path):
    from gpi_desktop.core.job.job import JobRun, load_prompts, run_job

    spec = _tiny_spec(tiny_llama, prompts_csv, batch_size=3)
    work = tmp_path / "work"
    header = _old_journal(spec, work, {"batch_size": 3, "model_revision": "0" * 40})
    with pytest.raises(ResumeError, match="files changed"):
        run_job(JobRun(spec, load_prompts(spec), work), NullState(), ResumePolicy.CONTINUE)
    assert (work / HEADER_NAME).read_bytes() == header


def test_an_old_journal_that_resumes_gets_its_template_date_stored_once(tiny_llama, prompts_csv, tmp_path):
    import datetime

    from gpi_desktop.core.job.job import JobRun, job_key, load_prompts, run_job

    spec = _tiny_spec(tiny_llama, prompts_csv, batch_size=3)
    work = tmp_path / "work"
    _old_journal(spec, work, {"batch_size": 3})
    started = datetime.date.fromtimestamp((work / HEADER_NAME).stat().st_mtime).isoformat()
    run_job(JobRun(spec, load_prompts(spec), work), NullState(), ResumePolicy.CONTINUE)
    with RunJournal.open(work, job_key(spec, load_prompts(spec))) as journal:
        assert journal.plan["template_date"] == started and journal.plan["batch_size"] == 3


# -- the command line under signals, kills and full disks (items 1, 7, 8) -----------------------------

import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402

import pandas as pd  # noqa: E402
from cli_helpers import base_args, folder_digest, run_cli, wait_for_journal_rows  # noqa: E402
from conftest import PROMPTS  # noqa: E402

N_ROWS = 40
REPO = Path(__file__).resolve().parents[1]
STOPPED = "Stopped. Finished prompts are kept; run the same command with --resume to continue."

# A `gpi-desktop run` that, at the chosen file event of its export, sends itself a signal:
# "after" the Nth file matching the pattern was renamed into place, or "inside" its temporary file.
KILLER = textwrap.dedent(
    """
    import contextlib, os, re, signal, sys
    from gpi_desktop.core.output import export
    from gpi_desktop.cli import main

    pattern, nth, moment, signame = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    real_open, seen = export._Writer.open, []

    @contextlib.contextmanager
    def open_then_signal(self, name, **kwargs):
        hit = re.search(pattern, name) is not None and len(seen) == nth - 1
        if re.search(pattern, name):
            seen.append(name)
        with real_open(self, name, **kwargs) as handle:
            if hit and moment == "inside":
                os.kill(os.getpid(), getattr(signal, signame))
            yield handle
        if hit and moment == "after":
            os.kill(os.getpid(), getattr(signal, signame))

    export._Writer.open = open_then_signal
    sys.exit(main(["run", *sys.argv[5:]]))
    """
)


@pytest.fixture(scope="module")
def forty(tmp_path_factory, tiny_llama):
    """40 prompts, their uninterrupted export, and a finished journal of the same job."""
    from gpi_desktop.cli.entry import build_parser
    from gpi_desktop.cli.run import spec_from_args
    from gpi_desktop.core.job.job import JobRun, load_prompts, run_job

    folder = tmp_path_factory.mktemp("forty")
    prompts = folder / "forty.csv"
    pd.DataFrame({"text": [f"{PROMPTS[i % len(PROMPTS)]} ({i})" for i in range(N_ROWS)]}).to_csv(prompts, index=False)
    args = lambda out: base_args(tiny_llama, prompts, out, "--batch-size", "4")  # noqa: E731
    assert run_cli(*args(folder / "reference")) == 0
    journal = folder / "journal"
    spec = spec_from_args(build_parser().parse_args(["run", *args(folder / "x")]))
    run_job(JobRun(spec, load_prompts(spec), journal), NullState())
    return args, folder_digest(folder / "reference"), journal


def _run_export_signalled(args, out: Path, journal: Path, pattern: str, nth: int, moment: str, signame: str):
    import shutil

    shutil.copytree(journal, out / ".gpi-run")
    env = dict(os.environ, GPI_DESKTOP_LOG_DIR=str(out.parent / "logs"), PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-c", KILLER, pattern, str(nth), moment, signame, *args(out), "--resume"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="kill -9 is POSIX")
@pytest.mark.parametrize(
    "pattern, nth, moment",
    [
        (r"\.pt$", 1, "after"),  # the first hidden file
        (r"\.pt$", 20, "after"),
        (r"\.pkl$", 1, "after"),
        (r"\.npy$", 1, "after"),
        (r"^manifest\.json$", 1, "after"),  # the export is complete, the journal not yet removed
        (r"\.pt$", 7, "inside"),  # a 0-byte temporary file left in hidden/
        (r"\.csv$", 1, "inside"),
    ],
)
def test_a_resume_finishes_an_export_killed_while_it_was_written(forty, tmp_path, pattern, nth, moment):
    args, reference, journal = forty
    out = tmp_path / "out"
    killed = _run_export_signalled(args, out, journal, pattern, nth, moment, "SIGKILL")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert run_cli(*args(out), "--resume") == 0
    assert folder_digest(out) == reference  # no temporary file, no journal, the same bytes


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
def test_sigterm_during_the_export_stops_it_like_ctrl_c_and_a_resume_finishes_it(forty, tmp_path):
    args, reference, journal = forty
    out = tmp_path / "out"
    stopped = _run_export_signalled(args, out, journal, r"\.pt$", 20, "after", "SIGTERM")
    assert stopped.returncode == 130, stopped.stderr
    assert stopped.stderr.strip().splitlines()[-1] == STOPPED
    assert (out / ".gpi-run" / HEADER_NAME).is_file() and not (out / "manifest.json").exists()
    assert run_cli(*args(out), "--resume") == 0
    assert folder_digest(out) == reference


def _spawn_run(args: list[str]) -> subprocess.Popen:
    env = dict(
        os.environ, GPI_DESKTOP_LOG_DIR=str(Path(args[args.index("--out") + 1]).parent / "logs"), PYTHONPATH=str(REPO)
    )
    return subprocess.Popen(
        [sys.executable, "-m", "gpi_desktop", "run", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_sigterm_during_generation_is_a_stop_with_exit_130_and_the_ctrl_c_message(
    tiny_llama, prompts_csv, tmp_path, signame
):
    out = tmp_path / "out"
    proc = _spawn_run(base_args(tiny_llama, prompts_csv, out, "--batch-size", "1", "--max-new-tokens", "40"))
    wait_for_journal_rows(out, proc, 1)
    proc.send_signal(getattr(signal, signame))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == STOPPED
    assert (out / ".gpi-run" / RECORDS_NAME).read_bytes().count(b"\n") >= 1
    assert (
        run_cli(*base_args(tiny_llama, prompts_csv, out, "--batch-size", "1", "--max-new-tokens", "40", "--resume"))
        == 0
    )


def test_a_full_disk_during_the_export_exits_2_with_the_plain_sentence(
    tiny_llama, prompts_csv, tmp_path, monkeypatch, capsys
):
    import errno

    from gpi_desktop.core.output import export

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export._HashingFile, "write", full)
    out = tmp_path / "out"
    assert run_cli(*base_args(tiny_llama, prompts_csv, out)) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"gpi-desktop: {export.DISK_FULL_MESSAGE}"
    monkeypatch.undo()
    assert run_cli(*base_args(tiny_llama, prompts_csv, out, "--resume")) == 0  # space freed: nothing was lost


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="/dev/full (Linux) stands for a full disk under the log")
def test_a_log_on_a_full_disk_never_shows_the_user_a_traceback(tmp_path, prompts_csv):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "gpi-desktop.log").symlink_to("/dev/full")
    env = dict(os.environ, GPI_DESKTOP_LOG_DIR=str(logs), PYTHONPATH=str(REPO))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gpi_desktop",
            "run",
            "--model",
            str(tmp_path / "no-such-model"),
            "--prompts",
            str(prompts_csv),
            "--out",
            str(tmp_path / "out"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr and "Logging error" not in done.stderr


def _can_mount_tmpfs() -> bool:
    return sys.platform.startswith("linux") and hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="a small tmpfs needs Linux and root")
def test_a_really_full_disk_exits_2_with_one_sentence(tiny_llama, prompts_csv, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs is not allowed here")
    try:
        (disk / "logs").mkdir()
        with open(disk / "filler", "wb") as filler:  # fill the disk to the last byte
            try:
                while True:
                    filler.write(b"\0" * 65536)
                    filler.flush()
            except OSError:
                pass
        env = dict(os.environ, GPI_DESKTOP_LOG_DIR=str(disk / "logs"), PYTHONPATH=str(REPO))
        done = subprocess.run(
            [sys.executable, "-m", "gpi_desktop", "run", *base_args(tiny_llama, prompts_csv, disk / "out")],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "gpi-desktop: The disk is full: free some space, then run again with --resume; finished prompts are kept."
    ], done.stderr


def test_overwrite_keeps_a_journal_of_the_same_job_and_regenerates_nothing(forty, tmp_path, monkeypatch):
    import shutil

    from gpi_desktop.core.generation import engine

    args, reference, journal = forty
    out = tmp_path / "out"
    shutil.copytree(journal, out / ".gpi-run")
    (out / "hidden").mkdir()
    (out / "hidden" / ".gpi-tmp-abc").write_bytes(b"")  # what a kill during the export leaves
    skipped = []
    real = engine.run_engine
    monkeypatch.setattr(
        engine,
        "run_engine",
        lambda *a, finished_rows, **k: (skipped.append(len(finished_rows)), real(*a, finished_rows=finished_rows, **k))[
            1
        ],
    )
    assert run_cli(*args(out), "--overwrite") == 0
    assert skipped == [N_ROWS]
    assert folder_digest(out) == reference


# A `gpi-desktop run` that waits, while its model "loads", until the test opens the gate.
PAUSED = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from gpi_desktop.core.model import models
    from gpi_desktop.cli import main

    gate, real = Path(sys.argv[1]), models.load_model

    def load_when_the_gate_opens(*args, **kwargs):
        (gate.parent / "waiting").touch()
        while not gate.exists():
            time.sleep(0.02)
        return real(*args, **kwargs)

    models.load_model = load_when_the_gate_opens
    sys.exit(main(["run", *sys.argv[2:]]))
    """
)


def _start_paused(args: list[str], gate: Path) -> subprocess.Popen:
    env = dict(os.environ, GPI_DESKTOP_LOG_DIR=str(gate.parent / "logs"), PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-c", PAUSED, str(gate), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    import time

    deadline = time.monotonic() + 120
    while not (gate.parent / "waiting").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the first run did not reach its model load: {proc.communicate()}")
        time.sleep(0.02)
    return proc


@pytest.mark.skipif(os.name != "posix", reason="the folder hold is a POSIX flock; Windows relies on the re-check")
def test_a_second_run_into_the_same_folder_is_refused_while_the_first_holds_it(
    tiny_llama, prompts_csv, tmp_path, capsys
):
    out, gate = tmp_path / "out", tmp_path / "gate"
    first = _start_paused(base_args(tiny_llama, prompts_csv, out, "--pooling", "mean"), gate)
    try:
        assert run_cli(*base_args(tiny_llama, prompts_csv, out, "--pooling", "max")) == 2
        assert "Another run is writing into" in capsys.readouterr().err
    finally:
        gate.touch()
        _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert json.loads((out / "manifest.json").read_text())["settings"]["pooling"] == "mean"


def test_an_export_that_appeared_during_the_run_is_refused_not_replaced(tiny_llama, prompts_csv, tmp_path):
    import shutil

    other = tmp_path / "other"
    assert run_cli(*base_args(tiny_llama, prompts_csv, other, "--pooling", "max")) == 0
    out, gate = tmp_path / "out", tmp_path / "gate"
    first = _start_paused(base_args(tiny_llama, prompts_csv, out, "--pooling", "mean"), gate)
    try:  # what a writer that does not hold the folder (the window, or any run on Windows) leaves meanwhile
        for path in other.iterdir():
            (shutil.copytree if path.is_dir() else shutil.copy2)(path, out / path.name)
    finally:
        gate.touch()
        _, err = first.communicate(timeout=300)
    assert first.returncode == 2, err
    assert "is not empty" in err
    assert folder_digest(out / "hidden") == folder_digest(other / "hidden")
    assert (out / "manifest.json").read_bytes() == (other / "manifest.json").read_bytes()
    assert (out / ".gpi-run" / HEADER_NAME).is_file()  # the first run's work is kept
