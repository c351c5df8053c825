"""Job folders that an older version kept elsewhere: move them to where jobs are kept now.

Up to 0.x the window kept its jobs under `<data>/GPI Desktop/GPI Desktop/runs` (the
organisation and application names, both "GPI Desktop"); now they are under
`<data>/GPI Desktop/runs`. A researcher's unfinished or finished-but-not-exported
job must survive the update, so each one is moved (a rename on the same disk, so
gigabytes of vectors move at once) and one that cannot be moved is still looked up
where it is.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)


def adopt_job_folders(old_runs: Path, runs: Path) -> list[Path]:
    """Move every job folder of `old_runs` into `runs` (keeping its name); returns those that had to stay."""
    try:
        entries = sorted(p for p in old_runs.iterdir() if p.is_dir())
    except OSError:
        return []  # no older folder: the usual case
    left: list[Path] = []
    for entry in entries:
        target = runs / entry.name
        if target.exists():
            left.append(entry)  # the same job started again after the update: both stay, the new one wins
            continue
        try:
            runs.mkdir(parents=True, exist_ok=True)
            os.replace(entry, target)
        except OSError as error:  # another disk, or no permission: look it up where it is
            log.warning("could not move the job folder %s to %s: %s", entry, target, error)
            left.append(entry)
    if not left:
        _remove_empty(old_runs)
    return left


def job_folder(runs: Path, name: str, elsewhere: Sequence[Path] = ()) -> Path:
    """Where the job `name` is kept: in `runs`, unless only an older folder (`elsewhere`) has it."""
    if (runs / name).exists():
        return runs / name
    for folder in elsewhere:
        if (folder / name).exists():
            return folder / name
    return runs / name


def _remove_empty(folder: Path) -> None:
    """The old folders, once empty, so that the data folder shows one place for jobs."""
    for path in (folder, folder.parent):
        try:
            path.rmdir()
        except OSError:
            return  # not empty (logs, something of the user's) or already gone
