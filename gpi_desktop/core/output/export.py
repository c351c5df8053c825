"""Write the export folder that gpi_pack users load (docs/architecture.md, "Export folder").

    hidden/<prefix><k>.pt     float32 tensor (1, H) per data row k, as gpi_pack's torch.save
    <save_name>.pkl           DataFrame with X (generated text) and P (prompt), row k = prompt k
    <save_name>.csv           the same for people: UTF-8 with BOM so Excel reads accents
    hidden_states.npy         float32 (N, H)
    manifest.json             written last: its presence means the export is complete

Every file goes to a temporary name in its final folder and is renamed into
place. The bytes depend only on the results and settings (no timestamps, no
temporary names inside files), so a resumed run exports files identical to
an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from gpi_desktop.core.files.fileio import (
    TEMP_PREFIX,
    BackgroundFsync,
    fsync_folder,
    plain_os_errors,
    share_like_a_document,
)
from gpi_desktop.core.files.prompts import PromptTable
from gpi_desktop.core.files.runstore import RUN_DIR_NAME
from gpi_desktop.core.generation.instructions import TOKEN_IDS_HASH
from gpi_desktop.core.hub.secrets import TOKEN_PATTERN
from gpi_desktop.core.vocabulary.errors import OutputFolderError, Remedy
from gpi_desktop.core.vocabulary.progress import NullState, Progress, ProgressKind, TaskState, check_cancel
from gpi_desktop.core.vocabulary.results import PromptResult
from gpi_desktop.core.vocabulary.settings import ExportSettings

if TYPE_CHECKING:  # pandas is imported where the texts are written (about 0.5 s): the window starts without it
    pass

EXPORT_FORMAT = "gpi-desktop export 1"
HIDDEN_DIR = "hidden"
MATRIX_NAME = "hidden_states.npy"
MANIFEST_NAME = "manifest.json"
CSV_COLUMNS = ("row", "prompt", "generated text", "tokens", "stop reason", "prompt tokens", "prompt token ids sha256")
# Names a fresh folder may hold without counting as "not empty".
DEFAULT_ALLOWED_NAMES = frozenset({RUN_DIR_NAME, ".DS_Store", "Thumbs.db", "desktop.ini"})
# Keys this module adds to the caller's manifest fields.
MANIFEST_KEYS = (
    "format",
    "counts",
    "hidden_size",
    "rows_pooled_from_step0",
    "rows_hit_token_limit",
    "files",
    "sha256",
    "prompt_tokens",
)

DISK_FULL_MESSAGE = (
    "The disk is full while writing the export: free some space, then export again; finished prompts are kept."
)


@dataclass(frozen=True)
class ExportSummary:
    folder: Path
    n_rows: int
    hidden_size: int
    files: tuple[str, ...]  # relative POSIX paths, manifest last
    manifest: Path
    rows_pooled_from_step0: tuple[int, ...]
    rows_hit_token_limit: tuple[int, ...]


def check_output_folder(
    folder: Path | str, *, overwrite: bool, allow_names: Collection[str] = DEFAULT_ALLOWED_NAMES
) -> None:
    """Refuse, in plain words, a folder the export cannot use; writes nothing."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(f"'{folder}' is a file, not a folder: choose a folder for the results.")
    if folder.is_dir():
        if not os.access(folder, os.W_OK | os.X_OK):
            raise OutputFolderError(f"You may not write in '{folder}': choose another folder for the results.")
        others = sorted(name for name in os.listdir(folder) if name not in allow_names)
        if others and not overwrite:
            raise OutputFolderError(
                f"'{folder}' is not empty (it holds '{others[0]}'"
                + (f" and {len(others) - 1} more" if len(others) > 1 else "")
                + ")",
                remedy=Remedy.EMPTY_FOLDER_OR_REPLACE,
            )
        return
    parent = folder.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputFolderError(f"'{folder}' cannot be created because '{parent}' is a file: choose another folder.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputFolderError(
            f"You may not create '{folder}' inside '{parent}': choose another folder for the results."
        )


def holds_only_this_export(
    folder: Path | str, export: ExportSettings, n_rows: int, allow_names: Collection[str] = DEFAULT_ALLOWED_NAMES
) -> bool:
    """Whether every file in `folder` is one this export writes, or a temporary file of one.

    That is what an export interrupted at any moment leaves (with or without its
    manifest): a resume of the same job may replace it, and nothing else.
    """
    folder = Path(folder)
    names = {MANIFEST_NAME, MATRIX_NAME, f"{export.save_name}.pkl", f"{export.save_name}.csv"}
    hidden_names = {f"{export.prefix}{row}.pt" for row in range(n_rows)}
    for entry in os.scandir(folder):
        if entry.name in allow_names:
            continue
        if entry.name == HIDDEN_DIR and entry.is_dir(follow_symlinks=False):
            if not all(_is_own_file(inner, hidden_names) for inner in os.scandir(entry.path)):
                return False
        elif not _is_own_file(entry, names):
            return False
    return True


def _is_own_file(entry: os.DirEntry[str], names: set[str]) -> bool:
    return entry.is_file(follow_symlinks=False) and (entry.name in names or entry.name.startswith(TEMP_PREFIX))


def write_export(
    folder: Path | str,
    results: list[PromptResult],
    table: PromptTable,
    export: ExportSettings,
    manifest_fields: dict[str, Any],
    *,
    overwrite: bool = False,
    state: TaskState = NullState(),
    allow_names: Collection[str] = DEFAULT_ALLOWED_NAMES,
) -> ExportSummary:
    """Write the export folder; on failure or cancel, nothing of this export is left behind."""
    folder = Path(folder)
    export.validate()
    ordered = _in_row_order(results, len(table))
    hidden_size = ordered[0].vector.size
    clashes = sorted(set(manifest_fields) & set(MANIFEST_KEYS))
    if clashes:
        raise ValueError(f"manifest_fields may not set {clashes}; the export writes them.")
    check_output_folder(folder, overwrite=overwrite, allow_names=allow_names)

    writer = _Writer(folder, state, total=len(ordered) + 4)
    try:
        with plain_os_errors(
            DISK_FULL_MESSAGE,
            f"The export could not be written in '{folder}' ({{reason}}): "
            "check that you may write there, then export again.",
        ):
            if not folder.is_dir():
                folder.mkdir(parents=True)
                writer.created_dirs.append(folder)
                writer.dirs_to_sync.append(folder.parent)
            if overwrite:
                _remove_previous_export(folder, export)
            hidden_dir = folder / HIDDEN_DIR
            if not hidden_dir.is_dir():
                hidden_dir.mkdir()
                writer.created_dirs.append(hidden_dir)
            _write_all(writer, folder, ordered, table, export, hidden_size)
            writer.make_durable()
            manifest = _manifest(manifest_fields, ordered, export, hidden_size, writer.sha256)
            writer.write_bytes(MANIFEST_NAME, manifest, fsync=True)
            fsync_folder(folder)
    except BaseException:
        writer.roll_back()
        raise
    finally:
        writer.close()
    return ExportSummary(
        folder=folder,
        n_rows=len(ordered),
        hidden_size=hidden_size,
        files=tuple(writer.written),
        manifest=folder / MANIFEST_NAME,
        rows_pooled_from_step0=tuple(r.row for r in ordered if r.pooled_from_step0),
        rows_hit_token_limit=tuple(r.row for r in ordered if r.hit_limit),
    )


def hidden_file_name(export: ExportSettings, row: int) -> str:
    return f"{HIDDEN_DIR}/{export.prefix}{row}.pt"


def _in_row_order(results: list[PromptResult], n_rows: int) -> list[PromptResult]:
    ordered = sorted(results, key=lambda r: r.row)
    if [r.row for r in ordered] != list(range(n_rows)):
        raise ValueError(f"An export needs exactly one result for each of the {n_rows} rows.")
    widths = {np.asarray(r.vector).shape for r in ordered}
    if len(widths) != 1 or len(next(iter(widths))) != 1:
        raise ValueError(f"All result vectors must be one-dimensional and equally long; got shapes {sorted(widths)}.")
    return ordered


def hidden_tensor_bytes(vector: np.ndarray, hidden_size: int) -> bytes:
    """The bytes of one hidden/<prefix><k>.pt: torch.save of a float32 (1, H) tensor, as gpi_pack writes it."""
    import torch  # only here: reading prompts or journals must not pay for importing torch

    # A fresh (1, H) tensor owns exactly H floats; a view would save its whole base storage.
    tensor = torch.from_numpy(np.array(vector, dtype=np.float32).reshape(1, hidden_size)).clone()
    buffer = io.BytesIO()  # saving to a buffer keeps temporary file names out of the archive
    torch.save(tensor, buffer)
    return buffer.getvalue()


def remove_hidden_files(folder: Path, prefix: str, also: Collection[str] = ()) -> None:
    """Delete the .pt files an export or shard writes into folder/hidden (and `also`, names there), nothing else."""
    hidden = folder / HIDDEN_DIR
    if hidden.is_dir():
        ours = re.compile(re.escape(prefix) + r"\d+\.pt")
        for path in hidden.iterdir():
            if path.is_file() and (ours.fullmatch(path.name) or path.name in also or path.name.startswith(TEMP_PREFIX)):
                path.unlink()


def _write_all(
    writer: _Writer,
    folder: Path,
    ordered: list[PromptResult],
    table: PromptTable,
    export: ExportSettings,
    hidden_size: int,
) -> None:
    import pandas as pd

    for result in ordered:
        writer.write_bytes(hidden_file_name(export, result.row), hidden_tensor_bytes(result.vector, hidden_size))

    generated = [_fresh(r.text) for r in ordered]
    prompts = [_fresh(t) for t in table.texts]
    # Plain object columns and column names: pandas 3's "str" dtype does not unpickle in pandas 2,
    # and gpi_pack users' colleagues may run either.
    texts = pd.DataFrame({"X": pd.Series(generated, dtype=object), "P": pd.Series(prompts, dtype=object)})
    texts.columns = pd.Index(["X", "P"], dtype=object)
    buffer = io.BytesIO()
    texts.to_pickle(buffer)
    writer.write_bytes(f"{export.save_name}.pkl", buffer.getvalue())

    writer.write_bytes(f"{export.save_name}.csv", _csv_bytes(ordered, table))

    with writer.open(MATRIX_NAME) as handle:
        header = {
            "descr": np.lib.format.dtype_to_descr(np.dtype("<f4")),
            "fortran_order": False,
            "shape": (len(ordered), hidden_size),
        }
        np.lib.format.write_array_header_1_0(handle, header)  # what np.save writes, streamed
        for result in ordered:
            handle.write(np.asarray(result.vector, dtype="<f4").tobytes())


def _fresh(text: str) -> str:
    """An equal string object of its own, so pickle's memo (and the bytes) do not depend on object sharing."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "surrogatepass")


def _csv_bytes(ordered: list[PromptResult], table: PromptTable) -> bytes:
    import pandas as pd

    frame = pd.DataFrame(
        {
            "row": [r.row for r in ordered],
            "prompt": table.texts,
            "generated text": [r.text for r in ordered],
            "tokens": [r.n_tokens for r in ordered],
            "stop reason": [r.stop_reason for r in ordered],
            "prompt tokens": [r.prompt_tokens for r in ordered],
            "prompt token ids sha256": [r.prompt_ids_sha256 for r in ordered],
        }
    )
    for name in table.columns:
        if name != table.column:
            frame[f"{name} (input)" if name in CSV_COLUMNS else name] = table.frame[name].to_numpy()
    text: str = frame.to_csv(index=False, lineterminator="\r\n")
    return ("\ufeff" + text).encode("utf-8", "replace")


def _manifest(
    fields: dict[str, Any],
    ordered: list[PromptResult],
    export: ExportSettings,
    hidden_size: int,
    sha256: dict[str, str],
) -> bytes:
    step0 = [r.row for r in ordered if r.pooled_from_step0]
    limit = [r.row for r in ordered if r.hit_limit]
    manifest = {
        **fields,
        "format": EXPORT_FORMAT,
        "counts": {"prompts": len(ordered), "pooled_from_step0": len(step0), "hit_token_limit": len(limit)},
        "hidden_size": hidden_size,
        "rows_pooled_from_step0": step0,
        "rows_hit_token_limit": limit,
        "files": {
            "hidden_states": f"{HIDDEN_DIR}/{export.prefix}<k>.pt",
            "prefix": export.prefix,
            "texts_pickle": f"{export.save_name}.pkl",
            "texts_csv": f"{export.save_name}.csv",
            "matrix": MATRIX_NAME,
        },
        "sha256": sha256,
        # Row k's exact model input: its number of prompt tokens and the checksum of its token ids.
        "prompt_tokens": {
            "count": [r.prompt_tokens for r in ordered],
            "token_ids_sha256": [r.prompt_ids_sha256 for r in ordered],
            "token_ids_hash": TOKEN_IDS_HASH,
        },
    }
    text = json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False, default=str) + "\n"
    if TOKEN_PATTERN.search(text):  # a last guard: the HF token must never reach a file
        raise ValueError("The manifest fields contain something that looks like a Hugging Face token.")
    return text.encode("utf-8")


def _remove_previous_export(folder: Path, export: ExportSettings) -> None:
    """Delete only what an export writes (ours or an earlier one's), manifest first."""
    previous: dict[str, Any] = {}
    try:
        previous = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8")).get("sha256", {})
    except (OSError, ValueError, AttributeError):
        pass
    (folder / MANIFEST_NAME).unlink(missing_ok=True)
    names = {MATRIX_NAME, f"{export.save_name}.pkl", f"{export.save_name}.csv"}
    names |= {n for n in previous if isinstance(n, str) and re.fullmatch(r"[^/\\]+\.(pkl|csv|npy)", n)}
    hidden_names = {
        n.split("/", 1)[1] for n in previous if isinstance(n, str) and re.fullmatch(r"hidden/[^/\\]+\.pt", n)
    }
    for name in names:
        (folder / name).unlink(missing_ok=True)
    for path in folder.glob(TEMP_PREFIX + "*"):
        path.unlink(missing_ok=True)
    remove_hidden_files(folder, export.prefix, also=hidden_names)


class _HashingFile:
    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.handle.write(data)


class _Writer:
    """Writes files atomically, records their sha256, reports progress, and can undo itself."""

    def __init__(self, folder: Path, state: TaskState, total: int) -> None:
        self.folder = folder
        self.state = state
        self.total = total
        self.done = 0
        self.sha256: dict[str, str] = {}
        self.written: list[str] = []
        self.created_dirs: list[Path] = []
        self.dirs_to_sync: list[Path] = [folder / HIDDEN_DIR, folder]
        self._every = max(1, total // 200)
        self._fsync = BackgroundFsync()

    def write_bytes(self, name: str, data: bytes, *, fsync: bool = False) -> None:
        with self.open(name, fsync=fsync) as handle:
            handle.write(data)

    @contextmanager
    def open(self, name: str, *, fsync: bool = False) -> Iterator[_HashingFile]:
        check_cancel(self.state)
        final = self.folder / name
        fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=final.parent)
        try:
            share_like_a_document(fd)
            with os.fdopen(fd, "wb") as handle:
                hashing = _HashingFile(handle)
                yield hashing
                handle.flush()
                if fsync:
                    os.fsync(handle.fileno())
            os.replace(temp, final)
            if not fsync:
                self._fsync.add(final)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        self.written.append(name)
        self.sha256[name] = hashing.digest.hexdigest()
        self.done += 1
        if self.done % self._every == 0 or self.done == self.total:
            self.state.set_progress(
                Progress(self.done, self.total, message=f"Writing the export: {name}", kind=ProgressKind.STEPS)
            )

    def make_durable(self) -> None:
        """Flush the files, then their renames, to disk before the manifest claims completeness.

        Only this export's own files: each was handed to a few fsync threads as
        soon as it was renamed into place, so the disk works while the next
        files are pickled (100,000 rows: see benchmarks/README.md). os.sync()
        did this before and flushed every disk of the machine, waiting for a
        model download or other programs' writes too.
        """
        self._fsync.wait(between=lambda: check_cancel(self.state))
        fsync_folder(*self.dirs_to_sync)

    def close(self) -> None:
        self._fsync.close()

    def roll_back(self) -> None:
        self.close()  # no fsync thread may reopen a file while it is being removed
        for name in reversed(self.written):
            try:
                (self.folder / name).unlink(missing_ok=True)
            except OSError:
                pass
        for folder in reversed(self.created_dirs):
            try:
                folder.rmdir()
            except OSError:
                pass
