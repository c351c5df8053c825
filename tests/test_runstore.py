"""The run journal survives crashes: a torn tail is cut off, finished prompts stay intact."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from journals import KEY, H, journal_with, result

from gpi_desktop.core.files import runstore
from gpi_desktop.core.files.runstore import RECORDS_NAME, VECTORS_NAME, RunJournal
from gpi_desktop.core.job.key_changes import key_changes
from gpi_desktop.core.vocabulary.errors import DiskFullError, ResumeError
from gpi_desktop.core.vocabulary.results import PromptResult

REPO = Path(__file__).resolve().parents[1]


def assert_same(a: PromptResult, b: PromptResult) -> None:
    assert (a.row, a.text, a.n_tokens, a.stop_reason, a.pooled_from_step0, a.prompt_tokens) == (
        b.row, b.text, b.n_tokens, b.stop_reason, b.pooled_from_step0, b.prompt_tokens,
    )  # fmt: skip
    assert a.vector.dtype == np.float32 and a.vector.shape == b.vector.shape
    np.testing.assert_array_equal(a.vector, b.vector)


def test_results_read_back_exactly_after_reopening(tmp_path):
    rows = [3, 0, 7, 1]  # batches finish out of order
    journal_with(tmp_path, rows)
    with RunJournal.open(tmp_path, KEY) as journal:
        assert journal.finished_rows() == set(rows)
        got = journal.results()
        assert list(got) == sorted(rows)
        for row in rows:
            assert_same(got[row], result(row))
        assert journal.hidden_size == H


def test_resumed_journal_continues_appending(tmp_path):
    journal_with(tmp_path, range(3))
    with RunJournal.open(tmp_path, KEY) as journal:
        journal.append(result(3))
    with RunJournal.open(tmp_path, KEY) as journal:
        assert journal.finished_rows() == {0, 1, 2, 3}
        assert_same(journal.results()[3], result(3))


def test_plan_is_stored_once_and_read_back_on_resume(tmp_path):
    with RunJournal.create(tmp_path, KEY) as journal:
        journal.set_plan(batch_size=8, model_revision="abc")
        journal.set_plan(note="x")
        assert journal.plan == {"batch_size": 8, "model_revision": "abc", "note": "x"}
    with RunJournal.open(tmp_path, KEY) as journal:
        assert journal.plan == {"batch_size": 8, "model_revision": "abc", "note": "x"}
        assert journal.key == KEY


def test_create_refuses_a_folder_that_already_holds_a_journal(tmp_path):
    journal_with(tmp_path, [0])
    with pytest.raises(ResumeError, match="already holds an unfinished run"):
        RunJournal.create(tmp_path, KEY)


def test_open_without_a_journal_says_there_is_nothing_to_resume(tmp_path):
    assert not RunJournal.exists(tmp_path)
    with pytest.raises(ResumeError, match="no unfinished run"):
        RunJournal.open(tmp_path, KEY)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"input_sha256": "cd" * 32}, "another input file"),
        ({"n_rows": 51}, "another input file"),
        ({"column": "prompt"}, "another prompt column"),
        ({"model": "other/model"}, "another model"),
        ({"settings": {**KEY["settings"], "revision": "b" * 40}}, f"model revision none vs {'b' * 40}"),
        ({"settings": {**KEY["settings"], "pooling": "last"}}, "other settings: pooling"),
        (
            {"model": "m", "settings": {**KEY["settings"], "pooling": "last", "max_new_tokens": 5}},
            "another model; other settings: max_new_tokens, pooling",
        ),
    ],
)
def test_a_different_job_is_refused_naming_what_differs(tmp_path, change, words):
    journal_with(tmp_path, [0])
    with pytest.raises(ResumeError) as error:
        RunJournal.open(tmp_path, {**KEY, **change})
    assert f"different job ({words})" in str(error.value)


def test_key_matches_after_json_round_trip(tmp_path):
    key = {"model": "m", "shape": (1, 2), "path": Path("/x")}
    with RunJournal.create(tmp_path, key):
        pass
    RunJournal.open(tmp_path, key).close()


def test_a_second_process_cannot_use_a_journal_in_use(tmp_path):
    if runstore.fcntl is None:
        pytest.skip("no flock on this platform")
    with RunJournal.create(tmp_path, KEY), pytest.raises(ResumeError, match="Another run is using"):
        RunJournal.open(tmp_path, KEY)


def sizes(folder: Path) -> tuple[int, int]:
    return (folder / VECTORS_NAME).stat().st_size, (folder / RECORDS_NAME).stat().st_size


@pytest.mark.parametrize("cut", ["half_line", "no_newline", "vector_short", "vector_only"])
def test_torn_last_record_is_dropped_and_files_truncated(tmp_path, cut):
    journal_with(tmp_path, range(4))
    vectors_size, records_size = sizes(tmp_path)
    last_line = (tmp_path / RECORDS_NAME).read_bytes().splitlines(keepends=True)[-1]
    records_good = records_size - len(last_line)
    vectors_good = vectors_size - 4 * H
    if cut == "half_line":
        os.truncate(tmp_path / RECORDS_NAME, records_good + len(last_line) // 2)
    elif cut == "no_newline":
        os.truncate(tmp_path / RECORDS_NAME, records_size - 1)
    elif cut == "vector_short":
        os.truncate(tmp_path / VECTORS_NAME, vectors_size - 3)
    else:  # killed between the vector and its record
        os.truncate(tmp_path / RECORDS_NAME, records_good)
    with RunJournal.open(tmp_path, KEY) as journal:
        assert journal.finished_rows() == {0, 1, 2}
        for row in range(3):
            assert_same(journal.results()[row], result(row))
    assert sizes(tmp_path) == (vectors_good, records_good)
    with RunJournal.open(tmp_path, KEY) as journal:  # and the re-run of row 3 lands in the right place
        journal.append(result(3))
        assert_same(journal.results()[3], result(3))


@pytest.mark.parametrize("tail", [b"garbage\n", b'{"row": 9}\n', b"\x00" * 40, b"{" * 3])
def test_garbage_tail_is_cut_off(tmp_path, tail):
    journal_with(tmp_path, range(3))
    good = sizes(tmp_path)
    with open(tmp_path / RECORDS_NAME, "ab") as handle:
        handle.write(tail)
    with open(tmp_path / VECTORS_NAME, "ab") as handle:
        handle.write(b"\x01" * 10)
    with RunJournal.open(tmp_path, KEY) as journal:
        assert journal.finished_rows() == {0, 1, 2}
    assert sizes(tmp_path) == good


def test_a_flipped_vector_byte_invalidates_that_record_and_after(tmp_path):
    journal_with(tmp_path, range(4))
    data = bytearray((tmp_path / VECTORS_NAME).read_bytes())
    data[4 * H * 2 + 5] ^= 0xFF  # inside row 2's vector
    (tmp_path / VECTORS_NAME).write_bytes(bytes(data))
    with RunJournal.open(tmp_path, KEY) as journal:
        assert journal.finished_rows() == {0, 1}


def test_wrong_width_and_duplicate_rows_are_programming_errors(tmp_path):
    with RunJournal.create(tmp_path, KEY, hidden_size=H) as journal:
        journal.append(result(0))
        with pytest.raises(ValueError, match="already"):
            journal.append(result(0))
        with pytest.raises(ValueError, match="hidden size"):
            journal.append(result(1, width=H + 1))


def test_hidden_size_is_fixed_by_the_first_append(tmp_path):
    with RunJournal.create(tmp_path, KEY) as journal:
        journal.append(result(0, width=8))
        with pytest.raises(ValueError):
            journal.append(result(1))
    with RunJournal.open(tmp_path, KEY) as journal:
        assert journal.hidden_size == 8


class FullDisk:
    """os.write that writes `allow` bytes to the journal's files, then fails with ENOSPC."""

    def __init__(self, allow: int) -> None:
        self.allow = allow
        self.real = os.write

    def __call__(self, fd, data):
        if self.allow <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = self.real(fd, bytes(data[: self.allow]))
        self.allow -= n
        return n


@pytest.mark.parametrize("allow", [0, 5, 4 * H, 4 * H + 20])  # fail in the vector, between, or in the record
def test_disk_full_while_appending_keeps_the_journal_consistent(tmp_path, monkeypatch, allow):
    journal = RunJournal.create(tmp_path, KEY, hidden_size=H)
    journal.append(result(0))
    before = sizes(tmp_path)
    monkeypatch.setattr(runstore.os, "write", FullDisk(allow))
    with pytest.raises(DiskFullError, match="The disk is full: free some space"):
        journal.append(result(1))
    monkeypatch.undo()
    assert sizes(tmp_path) == before
    assert journal.finished_rows() == {0}
    journal.append(result(1))  # space was freed: the same journal goes on
    journal.close()
    with RunJournal.open(tmp_path, KEY) as reopened:
        assert reopened.finished_rows() == {0, 1}
        assert_same(reopened.results()[1], result(1))


def test_disk_full_on_create_is_a_disk_full_error(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runstore, "_write_header", full)
    with pytest.raises(DiskFullError):
        RunJournal.create(tmp_path / "run", KEY)


def test_remove_deletes_only_the_journal_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    journal = RunJournal.create(tmp_path / ".gpi-run", KEY)
    journal.append(result(0))
    journal.remove()
    assert not (tmp_path / ".gpi-run").exists()
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_discard_deletes_a_journal_of_any_job_without_opening_it(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with RunJournal.create(tmp_path / "job", {**KEY, "model": "another"}) as journal:
        journal.append(result(0))
    RunJournal.discard(tmp_path / "job")
    assert not RunJournal.exists(tmp_path / "job") and not (tmp_path / "job").exists()
    assert (tmp_path / "keep.txt").read_text() == "mine"
    RunJournal.discard(tmp_path / "job")  # nothing left to delete: no error


WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[2])
    sys.path.insert(0, sys.argv[3])
    from journals import KEY, H, result
    from gpi_desktop.core.files.runstore import RunJournal

    journal = RunJournal.create(sys.argv[1], KEY, hidden_size=H)
    for row in range(1_000_000):
        journal.append(result(row))
        if row == 20:
            print("ready", flush=True)
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs kill -9")
@pytest.mark.parametrize("delay", [0.0, 0.013, 0.05])
def test_kill_9_mid_run_leaves_an_intact_prefix_that_resumes(tmp_path, delay):
    folder = tmp_path / ".gpi-run"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(folder), str(REPO), str(Path(__file__).parent)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(delay)
        writer.send_signal(signal.SIGKILL)
    finally:
        writer.wait(timeout=30)
    assert writer.returncode == -signal.SIGKILL

    with RunJournal.open(folder, KEY) as journal:
        done = journal.finished_rows()
        n = len(done)
        assert n >= 21 and done == set(range(n))  # a prefix: appends are in order
        results = journal.results()
        for row in range(n):
            assert_same(results[row], result(row))
        for row in range(n, n + 5):  # resume: redo nothing, continue where it stopped
            journal.append(result(row))
    with RunJournal.open(folder, KEY) as journal:
        assert journal.finished_rows() == set(range(n + 5))


def test_every_cut_point_of_the_files_reopens_to_an_intact_prefix(tmp_path):
    source = tmp_path / "source"
    journal_with(source, range(3))
    vectors = (source / VECTORS_NAME).read_bytes()
    records = (source / RECORDS_NAME).read_bytes()
    line_ends = [i + 1 for i, byte in enumerate(records) if byte == ord("\n")]
    for records_cut in range(line_ends[0], len(records) + 1, 7):
        for vectors_cut in (len(vectors), len(vectors) - 1, 4 * H * 2, 4 * H * 2 + 3):
            folder = tmp_path / f"cut-{records_cut}-{vectors_cut}"
            folder.mkdir()
            (folder / runstore.HEADER_NAME).write_bytes((source / runstore.HEADER_NAME).read_bytes())
            (folder / RECORDS_NAME).write_bytes(records[:records_cut])
            (folder / VECTORS_NAME).write_bytes(vectors[:vectors_cut])
            whole_lines = sum(end <= records_cut for end in line_ends)
            expected = min(whole_lines, vectors_cut // (4 * H))
            with RunJournal.open(folder, KEY) as journal:
                assert journal.finished_rows() == set(range(expected)), (records_cut, vectors_cut)
                for row, got in journal.results().items():
                    assert_same(got, result(row))


# --- what changed between the job that made results and the inputs now (the window shows these words) ---

JOB = {
    "input_sha256": "ab" * 32,
    "column": "text",
    "rows": 200,
    "model": "meta-llama/Llama-3.1-8B-Instruct",
    "strategy": "batched",
    "settings": {
        "model": "meta-llama/Llama-3.1-8B-Instruct",
        "revision": None,
        "dtype": "auto",
        "device": "auto",
        "quantization": None,
        "task": "create",
        "pooling": "max",
        "max_new_tokens": 1000,
        "template": "gpi_pack",
        "template_options": {},
        "generation_options": {},
    },
}


def _changed(**settings):
    top = {k: settings.pop(k) for k in list(settings) if k in JOB}
    return {**JOB, **top, "settings": {**JOB["settings"], **settings}}


@pytest.mark.parametrize(
    ("now", "words"),
    [
        (_changed(input_sha256="cd" * 32, rows=3), ["the prompts file", "the number of rows (200 \u2192 3)"]),
        (_changed(column="prompt"), ["the prompt column"]),
        (
            {**JOB, "model": "o/m", "settings": {**JOB["settings"], "model": "o/m"}},
            ["the model (meta-llama/Llama-3.1-8B-Instruct \u2192 o/m)"],
        ),
        (_changed(revision="abc"), ["the model revision (none \u2192 abc)"]),
        (_changed(dtype="float32"), ["precision (auto \u2192 float32)"]),
        (_changed(quantization="4bit"), ["quantization (none \u2192 4bit)"]),
        (_changed(task="repeat"), ["the task (create \u2192 repeat)"]),
        (_changed(task="Summarise."), ["the task (create \u2192 your own instruction)"]),
        (_changed(pooling="last"), ["pooling (max \u2192 last)"]),
        (_changed(max_new_tokens=20), ["the maximum new tokens (1,000 \u2192 20)"]),
        (_changed(template="model-card"), ["chat formatting (gpi_pack \u2192 model-card)"]),
        (_changed(template_options={"enable_thinking": False}), ["the chat template options"]),
        (_changed(generation_options={"repetition_penalty": 1.2}), ["the generation options"]),
        (
            _changed(pooling="last", max_new_tokens=20, column="p"),
            ["the prompt column", "pooling (max \u2192 last)", "the maximum new tokens (1,000 \u2192 20)"],
        ),
    ],
)
def test_key_changes_name_each_changed_input_in_plain_words(now, words):
    assert [c.words() for c in key_changes(JOB, now)] == words


def test_key_changes_are_empty_for_the_same_job_even_after_a_json_round_trip():
    assert key_changes(JOB, json.loads(json.dumps(JOB))) == ()


def test_two_different_own_instructions_are_named_without_meaningless_values():
    made = _changed(task="Summarise.")
    assert [c.words() for c in key_changes(made, _changed(task="Translate."))] == ["the task"]


def test_a_header_edited_after_it_was_written_is_refused_by_its_seal_records_untouched(tmp_path):
    with RunJournal.create(tmp_path, KEY, hidden_size=H, plan={"batch_size": 3}) as journal:
        for row in range(6):
            journal.append(result(row))
    header_path = tmp_path / runstore.HEADER_NAME
    original = header_path.read_bytes()
    records_before = (tmp_path / RECORDS_NAME).read_bytes()
    header = json.loads(original)
    header["plan"]["batch_size"] = 5  # the campaign's edit: rows made at 3 would be resumed and exported as made at 5
    header_path.write_text(json.dumps(header))
    with pytest.raises(ResumeError) as refused:
        RunJournal.open(tmp_path, KEY)
    assert str(refused.value) == (
        f"The unfinished run in '{tmp_path}' does not match its seal (its journal.json was "
        "changed or damaged after it was written, its plan included), so it cannot be "
        "resumed: start it over."
    )
    assert not RunJournal.holds_job(tmp_path, KEY)
    assert (tmp_path / RECORDS_NAME).read_bytes() == records_before
    header_path.write_bytes(original)  # put back, it resumes every record
    with RunJournal.open(tmp_path, KEY) as journal:
        assert journal.finished_rows() == set(range(6)) and journal.plan == {"batch_size": 3}


def test_set_plan_reseals_the_header_and_an_unsealed_one_of_an_earlier_version_still_opens(tmp_path):
    with RunJournal.create(tmp_path, KEY, hidden_size=H, plan={"batch_size": 3}) as journal:
        journal.set_plan(seconds_spent=1.5)
    with RunJournal.open(tmp_path, KEY) as journal:
        assert journal.plan == {"batch_size": 3, "seconds_spent": 1.5}
    header_path = tmp_path / runstore.HEADER_NAME
    header = json.loads(header_path.read_text())
    del header[runstore.SEAL]  # as versions before the seal wrote it
    header_path.write_text(json.dumps(header))
    with RunJournal.open(tmp_path, KEY) as journal:
        assert journal.plan["batch_size"] == 3
