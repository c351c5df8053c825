"""Durable writes: the old file survives a failed write, new folders survive a crash, disk errors in words."""

from __future__ import annotations

import errno
import hashlib
import os
import stat

import pytest

from gpi_desktop.core.files import fileio
from gpi_desktop.core.files.fileio import BackgroundFsync, make_folder, plain_os_errors, write_atomically
from gpi_desktop.core.vocabulary.errors import DiskFullError, OutputFolderError


def test_write_atomically_replaces_the_file_and_returns_its_sha256(tmp_path):
    target = tmp_path / "manifest.json"
    target.write_bytes(b"old")
    assert write_atomically(target, b"new content") == hashlib.sha256(b"new content").hexdigest()
    assert target.read_bytes() == b"new content"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_a_failed_write_leaves_the_old_content_and_no_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "manifest.json"
    target.write_bytes(b"old")

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio.os, "fsync", full_disk)
    with pytest.raises(OSError):
        write_atomically(target, b"new content")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_a_stop_during_the_write_also_leaves_the_old_content(tmp_path, monkeypatch):
    target = tmp_path / "records.jsonl"
    target.write_bytes(b"old")

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(fileio.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["records.jsonl"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_an_atomically_written_file_gets_the_mode_of_any_new_document(tmp_path):
    target = tmp_path / "texts.csv"
    write_atomically(target, b"x")
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~fileio.UMASK


def test_make_folder_syncs_the_parent_of_every_folder_it_created(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(fileio, "fsync_folder", lambda *folders: synced.extend(folders))
    make_folder(tmp_path / "a" / "b" / "c")
    assert (tmp_path / "a" / "b" / "c").is_dir()
    assert synced == [tmp_path, tmp_path / "a", tmp_path / "a" / "b"]


def test_make_folder_on_an_existing_folder_syncs_nothing(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(fileio, "fsync_folder", lambda *folders: synced.extend(folders))
    make_folder(tmp_path)
    assert synced == []


def test_fsync_folder_does_nothing_where_folders_have_no_handles(tmp_path, monkeypatch):
    monkeypatch.setattr(fileio.os, "name", "nt")
    monkeypatch.setattr(fileio.os, "open", lambda *a, **k: pytest.fail("opened a folder on Windows"))
    fileio.fsync_folder(tmp_path)


@pytest.mark.parametrize("code", sorted(fileio.DISK_FULL_ERRNOS))
def test_a_full_disk_becomes_the_disk_full_sentence(code):
    with pytest.raises(DiskFullError, match="^Free some space$"):
        with plain_os_errors("Free some space", "Cannot write: {reason}"):
            raise OSError(code, "No space left on device")


def test_another_os_error_becomes_the_folder_sentence_with_the_systems_reason():
    with pytest.raises(OutputFolderError, match="^Cannot write there \\(Permission denied\\); choose another folder.$"):
        with plain_os_errors("Free some space", "Cannot write there ({reason}); choose another folder."):
            raise PermissionError(errno.EACCES, "Permission denied")


def test_errors_that_are_not_the_disks_pass_through_plain_os_errors():
    with pytest.raises(ValueError), plain_os_errors("Free some space", "Cannot write: {reason}"):
        raise ValueError("our bug")


def test_background_fsync_flushes_every_file_added_in_chunks(tmp_path, monkeypatch):
    flushed = []
    monkeypatch.setattr(fileio, "fsync_file", flushed.append)
    paths = [tmp_path / f"hidden_{k}.pt" for k in range(fileio.FSYNC_CHUNK * 2 + 3)]
    syncer = BackgroundFsync(threads=2)
    try:
        for path in paths:
            syncer.add(path)
        checks = []
        syncer.wait(between=lambda: checks.append(1))
    finally:
        syncer.close()
    assert sorted(flushed) == sorted(paths)
    assert len(checks) == 3  # two full chunks and the rest


def test_background_fsync_wait_raises_the_first_failed_flush(tmp_path, monkeypatch):
    def failing(path):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(fileio, "fsync_file", failing)
    syncer = BackgroundFsync(threads=1)
    try:
        syncer.add(tmp_path / "a")
        with pytest.raises(OSError, match="Input/output error"):
            syncer.wait()
    finally:
        syncer.close()


def test_fsync_file_flushes_a_closed_file_by_name(tmp_path, monkeypatch):
    target = tmp_path / "hidden_0.pt"
    target.write_bytes(b"x")
    flushed = []
    real_fsync = os.fsync
    monkeypatch.setattr(fileio.os, "fsync", lambda fd: (flushed.append(os.fstat(fd).st_ino), real_fsync(fd)))
    fileio.fsync_file(target)
    assert flushed == [target.stat().st_ino]
