"""Hold an output folder for one run, from the check that it may be used to the end of its export.

Without it, two runs started into the same empty folder both pass the check
(made before the model loads) and the slower one replaces the other's finished
export. The hold is an advisory lock on the folder itself (POSIX flock), so it
never adds a file to what the user sees and ends with the process, however it
ends. Windows has no flock: there the export's own re-check of the folder,
just before it writes, is what refuses a folder another export appeared in.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gpi_desktop.core.files.fileio import make_folder, plain_os_errors
from gpi_desktop.core.vocabulary.errors import RunBusyError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


@contextmanager
def hold_folder(folder: Path | str) -> Iterator[None]:
    """Keep every other holder out of `folder` (created if missing; removed again if it is left empty)."""
    folder = Path(folder)
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    created = not folder.exists()
    with plain_os_errors(
        f"The disk is full, so '{folder}' cannot be created: free some space, then run again.",
        f"'{folder}' cannot be used ({{reason}}): choose a folder you may write to.",
    ):
        if created:
            make_folder(folder)
        fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # A folder removed and made again after we opened it is not the one we hold.
            same = os.stat(folder).st_ino == os.fstat(fd).st_ino
        except OSError:
            same = False
        if not same:
            raise RunBusyError(
                f"Another run is writing into '{folder}' right now: wait for it to finish, or choose another folder."
            )
        yield
    finally:
        os.close(fd)  # releases the hold
        if created:
            try:
                folder.rmdir()  # only when nothing was written into it
            except OSError:
                pass
