"""Durable writes and the user's words for what the disk refuses; shared by journal, export and shards."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gpi_desktop.core.errors import DiskFullError, OutputFolderError

DISK_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


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
