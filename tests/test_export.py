"""The export folder loads the way gpi_pack loads it, and is written safely."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fakes import RecordingState

from gpi_desktop.cli.error_words import cli_sentence
from gpi_desktop.core.files import fileio
from gpi_desktop.core.files.prompts import PromptTable, load_prompt_table
from gpi_desktop.core.output import export as export_module
from gpi_desktop.core.output.export import MANIFEST_NAME, check_output_folder, write_export
from gpi_desktop.core.vocabulary.errors import Cancelled, DiskFullError, OutputFolderError
from gpi_desktop.core.vocabulary.results import STOP_EOS, STOP_LENGTH, PromptResult
from gpi_desktop.core.vocabulary.settings import ExportSettings

H = 24
FIELDS = {"model": {"id": "tiny/llama", "revision": "abc123"}, "settings": {"pooling": "mean", "max_new_tokens": 40}}


def load_hiddens(directory: str, hidden_list: list, prefix: str = "hidden_", device: str = "cpu") -> np.ndarray:
    """gpi_pack.TarNet.load_hiddens, as published (gpi_pack itself is not installed here)."""
    tensors = []
    for name in hidden_list:
        file_path = (
            os.path.join(directory, f"{prefix}{name}.pt")
            if prefix is not None
            else os.path.join(directory, f"{name}.pt")
        )
        if not os.path.isfile(file_path):
            raise FileNotFoundError(f"{file_path} does not exist.")
        tensors.append(torch.load(file_path, map_location=device, weights_only=True).float().cpu())
    return torch.stack(tensors, dim=0).squeeze(1).numpy()


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "input" / "prompts.csv"
    path.parent.mkdir()
    pd.DataFrame(
        {
            "id": ["a1", "a2", "a3", "a4"],
            "text": ["Write about taxes", "café “naïve”", "=1+1", "line\nbreak"],
            "tokens": ["x", "y", "z", "w"],  # clashes with an export column
            "party": ["D", "R", "D", "I"],
        }
    ).to_csv(path, index=False)
    return load_prompt_table(path, "text")


def make_results(n: int = 4, width: int = H) -> list[PromptResult]:
    rng = np.random.default_rng(7)
    base = rng.standard_normal((n, width)).astype(np.float32)
    return [
        PromptResult(
            row=k,
            text=["Taxes are…", "", "généré ✓", "x"][k % 4] + f" #{k}",
            vector=base[k],  # a view into a bigger array, as results often are
            n_tokens=k + 1,
            stop_reason=STOP_LENGTH if k == 2 else STOP_EOS,
            pooled_from_step0=k == 0,
            prompt_tokens=12,
        )
        for k in range(n)
    ]


def export(folder, results, table, settings=ExportSettings(), **kwargs):
    return write_export(Path(folder), results, table, settings, FIELDS, **kwargs)


def test_hidden_files_load_with_gpi_packs_loader_in_input_order(tmp_path, table):
    results = make_results()
    out = tmp_path / "out"
    export(out, list(reversed(results)), table)  # any order in, input order out
    df = pd.read_csv(table.path)
    loaded = load_hiddens(str(out / "hidden"), df.index.tolist(), prefix="hidden_")
    assert loaded.shape == (4, H) and loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, np.stack([r.vector for r in results]))


def test_each_pt_file_holds_a_1_by_h_float32_tensor_and_only_h_floats(tmp_path, table):
    out = tmp_path / "out"
    export(out, make_results(), table)
    tensor = torch.load(out / "hidden" / "hidden_1.pt", weights_only=True)
    assert tensor.shape == (1, H) and tensor.dtype == torch.float32 and tensor.device.type == "cpu"
    with zipfile.ZipFile(out / "hidden" / "hidden_1.pt") as archive:
        storages = [n for n in archive.namelist() if "/data/" in n and not n.endswith("serialization_id")]
        assert [archive.getinfo(n).file_size for n in storages] == [4 * H]


def test_pickle_has_generated_x_and_prompt_p_in_input_order(tmp_path, table):
    results = make_results()
    out = tmp_path / "out"
    export(out, results, table)
    frame = pd.read_pickle(out / "generated_texts.pkl")
    assert list(frame.columns) == ["X", "P"]
    # Object dtypes, not pandas 3's "str": that is what older pandas can unpickle.
    assert frame.columns.dtype == object and frame["X"].dtype == object and frame["P"].dtype == object
    assert frame.index.tolist() == [0, 1, 2, 3]
    assert frame["X"].tolist() == [r.text for r in results]
    assert frame["P"].tolist() == table.texts


def test_csv_has_a_bom_and_the_documented_columns_then_the_inputs(tmp_path, table):
    results = make_results()
    out = tmp_path / "out"
    export(out, results, table)
    raw = (out / "generated_texts.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    frame = pd.read_csv(out / "generated_texts.csv", encoding="utf-8-sig", dtype=str, keep_default_na=False)
    assert list(frame.columns) == [
        "row",
        "prompt",
        "generated text",
        "tokens",
        "stop reason",
        "prompt tokens",
        "prompt token ids sha256",
        "id",
        "tokens (input)",
        "party",
    ]
    assert frame["prompt"].tolist() == table.texts
    assert frame["generated text"].tolist() == [r.text for r in results]
    assert frame["tokens"].tolist() == ["1", "2", "3", "4"]
    assert frame["stop reason"].tolist()[2] == STOP_LENGTH
    assert frame["party"].tolist() == ["D", "R", "D", "I"]


def test_npy_matrix_equals_the_vectors(tmp_path, table):
    results = make_results()
    out = tmp_path / "out"
    export(out, results, table)
    matrix = np.load(out / "hidden_states.npy")
    assert matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix, np.stack([r.vector for r in results]))


def test_manifest_records_counts_flags_files_and_their_sha256(tmp_path, table):
    out = tmp_path / "out"
    summary = export(out, make_results(), table)
    manifest = json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert manifest["model"] == FIELDS["model"] and manifest["settings"] == FIELDS["settings"]
    assert manifest["counts"] == {"prompts": 4, "pooled_from_step0": 1, "hit_token_limit": 1}
    assert manifest["hidden_size"] == H
    assert manifest["rows_pooled_from_step0"] == [0] and manifest["rows_hit_token_limit"] == [2]
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert sorted(manifest["sha256"]) == sorted(set(written) - {MANIFEST_NAME})
    for name, digest in manifest["sha256"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    assert summary.files[-1] == MANIFEST_NAME and sorted(summary.files) == written
    assert summary.rows_hit_token_limit == (2,) and summary.hidden_size == H and summary.n_rows == 4


def test_two_exports_of_equal_results_are_byte_identical(tmp_path, table):
    first, second = tmp_path / "first", tmp_path / "second"
    export(first, make_results(), table)
    # Equal results built separately (as after a resume): other objects, same values.
    rebuilt = [
        PromptResult(**{**r.__dict__, "vector": r.vector.copy(), "text": "".join(list(r.text))}) for r in make_results()
    ]
    export(second, rebuilt, table)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_custom_prefix_and_save_name(tmp_path, table):
    out = tmp_path / "out"
    settings = ExportSettings(prefix="hidden_last_", save_name="speeches")
    export(out, make_results(), table, settings)
    assert load_hiddens(str(out / "hidden"), [0, 1, 2, 3], prefix="hidden_last_").shape == (4, H)
    assert (out / "speeches.pkl").is_file() and (out / "speeches.csv").is_file()
    assert not (out / "generated_texts.pkl").exists()


def test_any_hidden_width_is_kept(tmp_path, table):
    out = tmp_path / "out"
    export(out, make_results(width=3), table)
    assert load_hiddens(str(out / "hidden"), [0, 1, 2, 3]).shape == (4, 3)


def test_non_empty_folder_is_refused_without_overwrite_and_nothing_is_written(tmp_path, table):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputFolderError, match="not empty") as error:
        export(out, make_results(), table)
    assert "--overwrite" in cli_sentence(error.value)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_the_run_journal_folder_does_not_make_a_folder_non_empty(tmp_path, table):
    out = tmp_path / "out"
    (out / ".gpi-run").mkdir(parents=True)
    (out / ".gpi-run" / "journal.json").write_text("{}")
    check_output_folder(out, overwrite=False, allow_names={".gpi-run"})
    export(out, make_results(), table, allow_names={".gpi-run"})
    assert (out / ".gpi-run" / "journal.json").read_text() == "{}"
    with pytest.raises(OutputFolderError):
        check_output_folder(out, overwrite=False, allow_names=set())


def test_overwrite_replaces_an_earlier_export_but_keeps_other_files(tmp_path, table):
    out = tmp_path / "out"
    bigger = make_results(6)
    big_table = load_prompt_table(_csv(tmp_path / "six.csv", 6))
    export(out, bigger, big_table, ExportSettings(prefix="old_", save_name="old"))
    (out / "notes.txt").write_text("mine")
    (out / "hidden" / "my_plot.png").write_bytes(b"png")
    export(out, make_results(), table, overwrite=True)
    left = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    expected = sorted(
        [f"hidden/hidden_{k}.pt" for k in range(4)]
        + [
            "generated_texts.pkl",
            "generated_texts.csv",
            "hidden_states.npy",
            MANIFEST_NAME,
            "notes.txt",
            "hidden/my_plot.png",
        ]
    )
    assert left == expected


def test_overwrite_removes_stale_hidden_files_beyond_the_new_row_count(tmp_path, table):
    out = tmp_path / "out"
    export(out, make_results(6), load_prompt_table(_csv(tmp_path / "six.csv", 6)))
    export(out, make_results(), table, overwrite=True)
    assert sorted(p.name for p in (out / "hidden").iterdir()) == [f"hidden_{k}.pt" for k in range(4)]


def _csv(path: Path, n: int) -> Path:
    pd.DataFrame({"text": [f"prompt {k}" for k in range(n)]}).to_csv(path, index=False)
    return path


def test_folder_checks_refuse_a_file_and_accept_a_new_folder(tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(OutputFolderError, match="is a file"):
        check_output_folder(a_file, overwrite=True)
    with pytest.raises(OutputFolderError, match="is a file"):
        check_output_folder(a_file / "sub", overwrite=False)
    check_output_folder(tmp_path / "new" / "deeper", overwrite=False)
    assert not (tmp_path / "new").exists()  # checking writes nothing


def test_unwritable_folder_is_refused(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    # os.access is what the check asks; faking its answer also covers running as root.
    monkeypatch.setattr(export_module.os, "access", lambda path, mode: Path(path) != locked)
    with pytest.raises(OutputFolderError, match="may not write"):
        check_output_folder(locked, overwrite=False)
    with pytest.raises(OutputFolderError, match="may not create"):
        check_output_folder(locked / "new" / "deeper", overwrite=False)


def test_progress_is_reported_per_file_and_cancel_leaves_nothing(tmp_path, table):
    state = RecordingState()
    out = tmp_path / "out"
    export(out, make_results(), table, state=state)
    assert [p.done for p in state.progress] == list(range(1, 9)) and state.progress[-1].total == 8

    class CancelAfter(RecordingState):
        def is_interruption_requested(self) -> bool:
            return len(self.progress) >= 3

    cancelled = tmp_path / "cancelled"
    with pytest.raises(Cancelled):
        export(cancelled, make_results(), table, state=CancelAfter())
    assert not cancelled.exists()  # the folder it created is gone too


@pytest.mark.parametrize("fail_on", ["hidden_2.pt", "generated_texts.csv", "hidden_states.npy", MANIFEST_NAME])
def test_disk_full_leaves_no_half_written_file(tmp_path, table, monkeypatch, fail_on):
    real_replace = os.replace

    def replace(src, dst):
        if Path(dst).name == fail_on:
            with open(src, "rb+") as handle:  # as if the last write had half-succeeded
                handle.truncate(3)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(export_module.os, "replace", replace)
    out = tmp_path / "out"
    out.mkdir()
    (out / ".gpi-run").mkdir()
    with pytest.raises(DiskFullError, match="The disk is full"):
        export(out, make_results(), table, allow_names={".gpi-run"})
    assert [p.relative_to(out).as_posix() for p in out.rglob("*")] == [".gpi-run"]


def test_results_must_cover_every_row_once(tmp_path, table):
    with pytest.raises(ValueError, match="exactly one result"):
        export(tmp_path / "out", make_results()[:3], table)
    with pytest.raises(ValueError, match="equally long"):
        export(tmp_path / "out", [*make_results()[:3], make_results(width=5)[3]], table)
    assert not (tmp_path / "out").exists()


# 24 characters after hf_ is a token to the log's redaction, so it is one to the export's guard too.
@pytest.mark.parametrize("token", ["hf_" + "a" * 34, "hf_" + "a1" * 12], ids=["real-length", "shorter"])
def test_manifest_refuses_a_hugging_face_token(token, tmp_path, table):
    fields = {**FIELDS, "oops": token}
    with pytest.raises(ValueError, match="token"):
        write_export(tmp_path / "out", make_results(), table, ExportSettings(), fields)
    assert not any(p.is_file() for p in (tmp_path / "out").rglob("*"))


def test_bytes_do_not_depend_on_which_strings_are_shared_objects(tmp_path, table):
    # A "repeat" run may hand back the prompt object itself; a resumed run reads a copy.
    frame = table.frame.astype(object)
    table = PromptTable(table.path, frame, table.column, table.sha256, table.encoding)
    prompts = table.texts
    assert prompts[0] is table.texts[0]
    shared = [PromptResult(**{**r.__dict__, "text": prompts[r.row]}) for r in make_results()]
    copied = [PromptResult(**{**r.__dict__, "text": "".join(list(prompts[r.row]))}) for r in make_results()]
    assert copied[0].text is not prompts[0]
    export(tmp_path / "shared", shared, table)
    export(tmp_path / "copied", copied, table)
    name = "generated_texts.pkl"
    assert (tmp_path / "shared" / name).read_bytes() == (tmp_path / "copied" / name).read_bytes()


def test_exported_files_are_readable_by_others_as_the_umask_allows(tmp_path, table):
    import stat

    folder = tmp_path / "export"
    export(folder, make_results(len(table.texts)), table)
    mask = os.umask(0)
    os.umask(mask)
    for path in [*folder.glob("*.*"), *(folder / "hidden").iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, path


def test_only_the_exports_own_files_and_folders_are_flushed_before_the_manifest(tmp_path, table, monkeypatch):
    # os.sync() flushes every disk of the machine (a model download too); the export must not wait for that.
    def machine_wide_sync():
        raise AssertionError("the export called os.sync()")

    events: list[tuple[str, str]] = []
    real_fsync_file, real_fsync_folder, real_replace = fileio.fsync_file, export_module.fsync_folder, os.replace
    monkeypatch.setattr(export_module.os, "sync", machine_wide_sync, raising=False)
    monkeypatch.setattr(fileio, "fsync_file", lambda path: (events.append(("file", str(path))), real_fsync_file(path)))
    monkeypatch.setattr(
        export_module,
        "fsync_folder",
        lambda *folders: (events.extend(("dir", str(f)) for f in folders), real_fsync_folder(*folders)),
    )
    monkeypatch.setattr(
        export_module.os, "replace", lambda src, dst: (events.append(("replace", str(dst))), real_replace(src, dst))
    )

    out = tmp_path / "new" / "out"
    summary = export(out, make_results(), table)

    manifest_at = events.index(("replace", str(out / MANIFEST_NAME)))
    before = events[:manifest_at]
    data_files = {str(out / name) for name in summary.files if name != MANIFEST_NAME}
    assert data_files == {path for kind, path in before if kind == "file"}
    assert {str(out), str(out / "hidden"), str(out.parent)} <= {path for kind, path in before if kind == "dir"}
    last_file = max(i for i, (kind, _) in enumerate(before) if kind == "file")
    assert all(kind == "dir" for kind, _ in before[last_file + 1 :] if kind != "replace")
    assert ("dir", str(out)) in events[manifest_at:]  # the manifest's own rename


def test_a_disk_full_found_when_flushing_leaves_no_export(tmp_path, table, monkeypatch):
    # ext4 with delayed allocation reports a full disk at fsync, after every write succeeded.
    def full(path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio, "fsync_file", full)
    out = tmp_path / "out"
    with pytest.raises(DiskFullError, match="The disk is full"):
        export(out, make_results(), table)
    assert not out.exists()
