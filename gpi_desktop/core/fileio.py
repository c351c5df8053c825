"""Durable writes and the user's words for what the disk refuses; shared by journal, export and shards."""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gpi_desktop.core.errors import DiskFullError, OutputFolderError

DISK_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask can only be read by setting it, which must not race with other threads later.
UMASK = _current_umask()


def share_like_a_document(fd: int) -> None:
    """Give a mkstemp file (owner-only, 0600) the mode any new file gets, so colleagues can read it as usual."""
    if hasattr(os, "fchmod"):
        os.fchmod(fd, 0o666 & ~UMASK)


def write_atomically(path: Path, data: bytes, *, temp_prefix: str = ".gpi-tmp-") -> str:
    """Write `data` to a temporary name in the same folder, fsync, then rename; returns its sha256.

    Readers never see half a file; the file is readable like any other document (not 0600).
    """
    fd, temp = tempfile.mkstemp(prefix=temp_prefix, dir=path.parent)
    try:
        share_like_a_document(fd)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return hashlib.sha256(data).hexdigest()


def is_disk_full(error: OSError) -> bool:
    return error.errno in DISK_FULL_ERRNOS


def fsync_folder(*folders: Path) -> None:
    """Make renames in these folders durable (POSIX); Windows has no directory handles to sync."""
    if os.name != "posix":
        return
    for folder in folders:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextmanager
def plain_os_errors(disk_full: str, cannot_write: str) -> Iterator[None]:
    """OSError -> DiskFullError(disk_full) or OutputFolderError(cannot_write, with the OS's reason filled in).

    `cannot_write` may hold "{reason}", replaced by the operating system's own words.
    """
    try:
        yield
    except OSError as error:
        if is_disk_full(error):
            raise DiskFullError(disk_full) from error
        raise OutputFolderError(cannot_write.format(reason=error.strerror or error)) from error
