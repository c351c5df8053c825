"""The run journal: every finished prompt is on disk before the next one starts.

A run killed at any moment (kill -9, power cut) resumes from the journal
without redoing a finished prompt. Three files live in the work folder:

    journal.json   the job's key (what must match to resume) and its plan; replaced atomically
    vectors.f32    little-endian float32 vectors, appended
    records.jsonl  one JSON line per finished prompt, appended after its vector

A record is written only after its vector is durable, and carries a CRC of
itself and of its vector bytes, so on reopening a torn tail (half a line, a
vector cut short, garbage) is recognised and cut off; everything before it
is intact. The header (key and plan: the batch size decides which rows run
together) is sealed the same way, with a CRC of itself, and a header that does
not match its seal is refused, records untouched.

What the CRCs promise: accidental damage (a torn write, a cut or overwritten
file, a hand edit that did not recompute them) is found. They are no
authentication code: whoever can write the folder can change a record and
recompute its CRC. A key beside the journal could be rewritten with it, and one
kept elsewhere (the keyring) would not travel with a cluster job's folder, so
the journal makes no promise against deliberate edits (docs/architecture.md).
"""

from __future__ import annotations

import json
import os
import shutil
import zlib
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from gpi_desktop.core.files.fileio import fsync_folder, is_disk_full, make_folder, plain_os_errors, write_atomically
from gpi_desktop.core.vocabulary.errors import DiskFullError, Remedy, ResumeError, RunBusyError
from gpi_desktop.core.vocabulary.results import PromptResult

RUN_DIR_NAME = ".gpi-run"  # where the command line keeps the journal inside --out
HEADER_NAME = "journal.json"
VECTORS_NAME = "vectors.f32"
RECORDS_NAME = "records.jsonl"
FORMAT = 1
SEAL = "crc"  # the header's CRC of itself (without this field)

DISK_FULL_MESSAGE = "The disk is full"  # then Remedy.FREE_SPACE_AND_RESUME, in each front end's words
_VECTOR_DTYPE = np.dtype("<f4")
_BINARY = getattr(os, "O_BINARY", 0)

try:  # POSIX: keep a second process (a double-clicked Resume) out of a journal in use
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class RunJournal:
    """Append-only, crash-safe store of finished `PromptResult`s for one job."""

    def __init__(self, folder: Path, header: dict[str, Any]) -> None:
        """Use `create` or `open`; this only opens the files and takes the lock."""
        self.folder = folder
        self._header = header
        self._records: dict[int, dict[str, Any]] = {}
        self._vectors_end = 0
        self._records_end = 0
        self._hidden_size: int | None = header.get("hidden_size")
        self._vfd: int | None = None
        self._rfd: int | None = None
        try:
            self._vfd = os.open(folder / VECTORS_NAME, os.O_RDWR | os.O_CREAT | _BINARY, 0o644)
            self._rfd = os.open(folder / RECORDS_NAME, os.O_RDWR | os.O_CREAT | _BINARY, 0o644)
            self._lock()
        except BaseException:
            self.close()
            raise

    # -- opening ---------------------------------------------------------------------------

    @staticmethod
    def exists(folder: Path | str) -> bool:
        return (Path(folder) / HEADER_NAME).is_file()

    @staticmethod
    def holds_job(folder: Path | str, key: dict[str, Any]) -> bool:
        """Whether `folder` holds a journal of this job (changes nothing, takes no lock)."""
        try:
            header = _read_header(Path(folder))
        except ResumeError:
            return False
        return header.get("format") == FORMAT and header.get("key") == normalise_key(key)

    @classmethod
    def create(
        cls,
        folder: Path | str,
        key: dict[str, Any],
        hidden_size: int | None = None,
        plan: dict[str, Any] | None = None,
    ) -> RunJournal:
        """Start a new journal in `folder` (created if needed), which must not hold one.

        The header is written whole, plan included, before any record: a journal
        without its plan would resume with other decisions (another batch size).
        """
        folder = Path(folder)
        if cls.exists(folder):
            raise ResumeError(f"'{folder}' already holds an unfinished run", remedy=Remedy.RESUME_OR_ANOTHER_FOLDER)
        header = {
            "format": FORMAT,
            "key": normalise_key(key),
            "hidden_size": hidden_size,
            "plan": normalise_key(plan or {}),
        }
        with _plain_errors(folder):
            make_folder(folder)
            journal = cls(folder, header)
            try:
                # Leftovers of a create that died before writing its header.
                for fd in journal._open_fds:
                    os.ftruncate(fd, 0)
                _write_header(folder, header)
            except BaseException:
                journal.close()
                raise
        return journal

    @classmethod
    def open(cls, folder: Path | str, key: dict[str, Any]) -> RunJournal:
        """Reopen the journal of the same job, cutting off a torn last record."""
        folder = Path(folder)
        header = _read_header(folder)
        if header.get("format") != FORMAT:
            raise ResumeError(
                f"The unfinished run in '{folder}' was made by another version of GPI Desktop and cannot be "
                "resumed: start the run over in an empty folder."
            )
        differences = describe_key_differences(header.get("key"), normalise_key(key))
        if differences:
            raise ResumeError(
                f"The unfinished run in '{folder}' is a different job ({differences}), so it cannot be resumed: "
                "choose another output folder, or start the run over."
            )
        with _plain_errors(folder):
            journal = cls(folder, header)  # locked before anything is cut off
            try:
                records, vectors_end, records_end = _scan(folder)
                widths = {record["length"] for record in records.values()}
                if header.get("hidden_size") is not None and widths - {header["hidden_size"]}:
                    # Intact records (their CRCs hold) of another width: the header was changed. Refuse
                    # before cutting anything, so that putting the header right still resumes them all.
                    raise ResumeError(
                        f"The unfinished run in '{folder}' does not match its own records (its hidden size was "
                        "changed), so it cannot be resumed: start the run over."
                    )
                for fd, end in zip(journal._open_fds, (vectors_end, records_end)):
                    if os.fstat(fd).st_size > end:
                        os.ftruncate(fd, end)
                        os.fsync(fd)
            except BaseException:
                journal.close()
                raise
        journal._records, journal._vectors_end, journal._records_end = records, vectors_end, records_end
        if journal._hidden_size is None and records:
            journal._hidden_size = next(iter(records.values()))["length"]
        return journal

    # -- reading ---------------------------------------------------------------------------

    @property
    def key(self) -> dict[str, Any]:
        return cast("dict[str, Any]", json.loads(json.dumps(self._header["key"])))

    @property
    def plan(self) -> dict[str, Any]:
        return cast("dict[str, Any]", json.loads(json.dumps(self._header["plan"])))

    def header_mtime(self) -> float:
        """When the header was last written (seconds since the epoch)."""
        return (self.folder / HEADER_NAME).stat().st_mtime

    @property
    def hidden_size(self) -> int | None:
        return self._hidden_size

    def __len__(self) -> int:
        return len(self._records)

    def finished_rows(self) -> set[int]:
        return set(self._records)

    def finished_tokens(self) -> int:
        """The tokens generated for the finished prompts (for a resumed run's time-left estimate)."""
        return sum(record["n_tokens"] for record in self._records.values())

    def results(self, *, vectors: bool = True) -> dict[int, PromptResult]:
        """Every finished prompt, by row (ascending), vectors read back from disk.

        With vectors=False each result's vector is empty: enough to list the finished texts of a long job
        without reading gigabytes of vectors (the export always reads them).
        """
        if not self._records:
            return {}
        if not vectors:
            return {
                row: PromptResult.from_record(record, np.empty(0, np.float32))
                for row, record in sorted(self._records.items())
            }
        data = np.fromfile(self.folder / VECTORS_NAME, dtype=_VECTOR_DTYPE, count=self._vectors_end // 4)
        results = {}
        for row in sorted(self._records):
            record = self._records[row]
            start = record["offset"] // 4
            results[row] = PromptResult.from_record(record, data[start : start + record["length"]].astype(np.float32))
        return results

    # -- writing ---------------------------------------------------------------------------

    def set_plan(self, **data: Any) -> None:
        """Store decisions made when the run started (e.g. the resolved batch size) for a resume."""
        header = dict(self._header, plan={**self._header["plan"], **normalise_key(data)})
        with _plain_errors(self.folder):
            _write_header(self.folder, header)
        self._header = header

    def append(self, result: PromptResult) -> None:
        """Make one finished prompt durable: its vector first, then its record."""
        vfd, rfd = self._open_fds
        if result.row in self._records:
            raise ValueError(f"Row {result.row} is already in the journal.")
        vector = np.ascontiguousarray(result.vector, dtype=_VECTOR_DTYPE)
        if vector.ndim != 1 or vector.size == 0:
            raise ValueError(f"A result vector must be one-dimensional; row {result.row} has shape {vector.shape}.")
        if self._hidden_size is not None and vector.size != self._hidden_size:
            raise ValueError(
                f"Row {result.row} has {vector.size} values; this run's hidden size is {self._hidden_size}."
            )
        vector_bytes = vector.tobytes()
        record = {**result.to_record(prompt_ids=False), "offset": self._vectors_end, "length": int(vector.size)}
        line = _record_line(record, vector_bytes)
        try:
            _write_at(vfd, self._vectors_end, vector_bytes)
            _write_at(rfd, self._records_end, line)
        except OSError as error:
            self._roll_back()
            if is_disk_full(error):
                raise DiskFullError(DISK_FULL_MESSAGE, remedy=Remedy.FREE_SPACE_AND_RESUME) from error
            raise
        self._vectors_end += len(vector_bytes)
        self._records_end += len(line)
        self._records[record["row"]] = record
        self._hidden_size = vector.size

    @property
    def _open_fds(self) -> tuple[int, int]:
        """The vectors' and the records' file descriptors; a closed journal refuses."""
        if self._vfd is None or self._rfd is None:
            raise ValueError("The journal is closed.")
        return self._vfd, self._rfd

    def close(self) -> None:
        for name in ("_vfd", "_rfd"):
            fd = getattr(self, name, None)
            if fd is not None:
                os.close(fd)  # also releases the lock
                setattr(self, name, None)

    def remove(self) -> None:
        """Delete the journal folder (after a successful export)."""
        self.close()
        self.discard(self.folder)

    @staticmethod
    def discard(folder: Path | str) -> None:
        """Delete the journal in `folder` without opening it, whatever job it holds (Start again; an exported job).

        It may take a while (the vectors of a large job): call it off the GUI thread.
        """
        shutil.rmtree(folder, ignore_errors=True)

    def __enter__(self) -> RunJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _roll_back(self) -> None:
        # Best effort: a tail left behind is cut off on the next open anyway,
        # and the next append writes at the known end, not at the file's end.
        for fd, end in zip(self._open_fds, (self._vectors_end, self._records_end)):
            try:
                os.ftruncate(fd, end)
            except OSError:
                pass

    def _lock(self) -> None:
        if fcntl is None:
            return
        try:
            fcntl.flock(self._open_fds[1], fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            # No folder named: in the window it is an internal one (the command line's user knows --out).
            raise RunBusyError("Another run is using this job right now", remedy=Remedy.WAIT_FOR_OTHER_RUN) from None


def is_in_use(folder: Path | str) -> bool:
    """Whether another run holds the journal in `folder` now (POSIX; elsewhere nothing says so: False).

    Takes the journal's lock and lets it go at once. Within one process a journal this process holds
    counts as in use too (the lock belongs to each opening of the file).
    """
    if fcntl is None:  # pragma: no cover - Windows
        return False
    try:
        fd = os.open(Path(folder) / RECORDS_NAME, os.O_RDONLY | _BINARY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # also lets a lock taken here go
    return False


@dataclass(frozen=True)
class JournalSummary:
    """What a journal folder says about its job without opening (and locking) it."""

    folder: Path
    key: dict[str, Any]
    plan: dict[str, Any]
    rows_done: int  # complete record lines: a torn last one is not counted
    modified: float  # when a prompt last finished (POSIX time)


def summarize(folder: Path | str) -> JournalSummary | None:
    """The journal in `folder` at a glance, or None when there is none or it cannot be read."""
    folder = Path(folder)
    try:
        header = _read_header(folder)
        records = folder / RECORDS_NAME
        rows_done = records.read_bytes().count(b"\n") if records.is_file() else 0
        modified = max(p.stat().st_mtime for p in (folder / HEADER_NAME, records) if p.exists())
    except (ResumeError, OSError):
        return None
    return JournalSummary(folder, header["key"], header["plan"], rows_done, modified)


def describe_key_differences(stored: Any, wanted: Any) -> str:
    """Plain words for what differs between two job keys ("" when they are the same).

    The short form for a refusal (a journal or a shard of another job); `key_changes` is the long form,
    input by input. Both walk the keys with `_differing_paths` and read values with `_lookup`.
    """
    if stored == wanted:
        return ""
    paths = differing_paths(stored, wanted, "")
    kinds: list[str] = []
    settings: list[str] = []
    for path in paths:
        lowered = path.lower()
        if "revision" in lowered:
            kind = f"model revision {value_words(key_value(stored, path))} vs {value_words(key_value(wanted, path))}"
        elif "model" in lowered:
            kind = "another model"
        elif "column" in lowered:
            kind = "another prompt column"
        elif lowered == "sheet":
            kind = "another sheet"
        elif any(word in lowered for word in ("input", "prompt", "sha256", "rows", "file")):
            kind = "another input file"
        else:
            settings.append(path.rsplit(".", 1)[-1] or "settings")
            continue
        if kind not in kinds:
            kinds.append(kind)
    if settings:
        kinds.append("other settings: " + ", ".join(dict.fromkeys(settings)))
    return "; ".join(kinds)


def key_value(key: Any, path: str) -> Any:
    for name in path.split("."):
        key = key.get(name, _MISSING) if isinstance(key, dict) else _MISSING
    return key


def value_words(value: Any) -> str:
    if value is _MISSING or value is None:
        return "none"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def differing_paths(a: Any, b: Any, prefix: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        paths = []
        for name in sorted(set(a) | set(b), key=str):
            if a.get(name, _MISSING) != b.get(name, _MISSING):
                paths += differing_paths(a.get(name), b.get(name), f"{prefix}.{name}" if prefix else str(name))
        return paths
    return [prefix or "key"]


_MISSING = object()


def normalise_key(data: Any) -> Any:
    """The JSON form of `data`, so that a key compares equal to its stored copy."""
    return json.loads(json.dumps(data, sort_keys=True, default=str))


def _record_body(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def _record_line(record: dict[str, Any], vector_bytes: bytes) -> bytes:
    crc = zlib.crc32(_record_body(record) + vector_bytes)
    return _record_body({**record, "crc": crc}) + b"\n"


_RECORD_FIELDS = {
    "row": int, "text": str, "n_tokens": int, "stop_reason": str, "pooled_from_step0": bool,
    "prompt_tokens": int, "offset": int, "length": int, "crc": int,
}  # fmt: skip


def _scan(folder: Path) -> tuple[dict[int, dict[str, Any]], int, int]:
    """The intact records (all of the first one's width), and where the good data ends in each file."""
    hidden_size: int | None = None
    records: dict[int, dict[str, Any]] = {}
    data = (folder / RECORDS_NAME).read_bytes()
    vectors_path = folder / VECTORS_NAME
    vectors_size = vectors_path.stat().st_size
    vectors_end = records_end = 0
    with open(vectors_path, "rb") as vectors:
        while (newline := data.find(b"\n", records_end)) >= 0:
            record = _parse_record(data[records_end:newline])
            if record is None or record["row"] in records or record["offset"] != vectors_end:
                break
            length = record["length"]
            if length < 1 or (hidden_size is not None and length != hidden_size):
                break
            if vectors_end + 4 * length > vectors_size:
                break
            vectors.seek(vectors_end)
            vector_bytes = vectors.read(4 * length)
            crc = record.pop("crc")
            if zlib.crc32(_record_body(record) + vector_bytes) != crc:
                break
            hidden_size = length
            records[record["row"]] = record
            vectors_end += 4 * length
            records_end = newline + 1
    return records, vectors_end, records_end


def _parse_record(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or set(record) != set(_RECORD_FIELDS):
        return None
    for name, kind in _RECORD_FIELDS.items():
        value = record[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return None
    return record


def _write_at(fd: int, offset: int, data: bytes) -> None:
    # Writing at the known end (not O_APPEND) means a failed write's leftovers
    # are overwritten by the next append instead of shifting it.
    os.lseek(fd, offset, os.SEEK_SET)
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
    os.fsync(fd)


def _read_header(folder: Path) -> dict[str, Any]:
    path = folder / HEADER_NAME
    if not path.is_file():
        raise ResumeError(f"There is no unfinished run in '{folder}' to resume: start the run without resuming.")
    try:
        header = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ResumeError(
            f"The unfinished run in '{folder}' cannot be read, so it cannot be resumed: start the run over."
        ) from None
    if not isinstance(header, dict) or not isinstance(header.get("plan"), dict) or "key" not in header:
        raise ResumeError(
            f"The unfinished run in '{folder}' cannot be read, so it cannot be resumed: start the run over."
        )
    if SEAL in header and header.pop(SEAL) != _seal(header):  # earlier versions wrote no seal
        raise ResumeError(
            f"The unfinished run in '{folder}' does not match its seal (its {HEADER_NAME} was changed or damaged "
            "after it was written, its plan included), so it cannot be resumed",
            remedy=Remedy.START_OVER,
        )
    return header


def _seal(header: dict[str, Any]) -> int:
    """The records' integrity scheme, for the header: a CRC of its canonical JSON (see the module's docstring)."""
    return zlib.crc32(_record_body(header))


def _write_header(folder: Path, header: dict[str, Any]) -> None:
    sealed = {**header, SEAL: _seal(header)}
    write_atomically(folder / HEADER_NAME, json.dumps(sealed, sort_keys=True, indent=1).encode("utf-8"))
    fsync_folder(folder)  # the rename itself survives a power cut


def _plain_errors(folder: Path) -> AbstractContextManager[None]:
    """Turn OS errors while setting up the journal into the user's words."""
    return plain_os_errors(
        DISK_FULL_MESSAGE,
        f"The run's journal cannot be written in '{folder}' ({{reason}}): choose a folder you may write to.",
        disk_full_remedy=Remedy.FREE_SPACE_AND_RESUME,
    )
