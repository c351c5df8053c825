"""Durable writes and the user's words for what the disk refuses; shared by journal, export and shards."""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from gpi_desktop.core.vocabulary.errors import DiskFullError, OutputFolderError, Remedy

# Every atomic write starts under this name; what a killed write leaves is recognised (and removed) by it.
TEMP_PREFIX = ".gpi-tmp-"
DISK_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
# fsync waits on the disk, not the CPU: a few at once let the filesystem commit them together.
FSYNC_THREADS = 8
FSYNC_CHUNK = 64  # files per task: 100,000 files make ~1,600 tasks, not 100,000


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


def write_atomically(path: Path, data: bytes) -> str:
    """Write `data` to a temporary name in the same folder, fsync, then rename; returns its sha256.

    Readers never see half a file; the file is readable like any other document (not 0600).
    """
    fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=path.parent)
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


def fsync_file(path: Path) -> None:
    """Flush one file's data to disk, by name (the file was written and closed before)."""
    # Windows flushes only through a handle that may write.
    flags = os.O_RDONLY if os.name == "posix" else os.O_RDWR | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_files(paths: Iterable[Path]) -> None:
    for path in paths:
        fsync_file(path)


class BackgroundFsync:
    """fsyncs the files it is given on a few threads while the caller writes the next ones.

    Only these files are flushed: unlike os.sync() (every disk of the machine),
    it never waits for a download or another program's writes. Call wait()
    before anything claims the files are complete, and close() in any case.
    """

    def __init__(self, threads: int = FSYNC_THREADS) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="gpi-fsync")
        self._pending: list[Path] = []
        self._futures: list[Future[None]] = []

    def add(self, path: Path) -> None:
        self._pending.append(path)
        if len(self._pending) >= FSYNC_CHUNK:
            self._submit()

    def wait(self, between: Callable[[], None] = lambda: None) -> None:
        """Return once every added file is on disk; raises the first fsync error.

        `between` runs before each wait (a cancel check, say).
        """
        self._submit()
        for future in self._futures:
            between()
            future.result()
        self._futures.clear()

    def close(self) -> None:
        """Stop: files not yet flushed are left to the OS (after a failure nothing claims them)."""
        self._pending.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _submit(self) -> None:
        if self._pending:
            self._futures.append(self._pool.submit(_fsync_files, tuple(self._pending)))
            self._pending = []


def make_folder(folder: Path) -> None:
    """Create `folder` and its missing parents so that the new entries survive a power cut.

    A new directory's name lives in its parent: until the parent is synced, a crash
    can lose the folder and everything written into it since.
    """
    missing = []
    path = Path(folder)
    while not path.is_dir():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    Path(folder).mkdir(parents=True, exist_ok=True)
    fsync_folder(*(new.parent for new in reversed(missing)))


@contextmanager
def plain_os_errors(disk_full: str, cannot_write: str, *, disk_full_remedy: Remedy | None = None) -> Iterator[None]:
    """OSError -> DiskFullError(disk_full) or OutputFolderError(cannot_write, with the OS's reason filled in).

    `cannot_write` may hold "{reason}", replaced by the operating system's own words; `disk_full_remedy`:
    what to do about a full disk, where each front end words it its own way.
    """
    try:
        yield
    except OSError as error:
        if is_disk_full(error):
            raise DiskFullError(disk_full, remedy=disk_full_remedy) from error
        raise OutputFolderError(cannot_write.format(reason=error.strerror or error)) from error
