"""One job split over cluster tasks: which rows a shard runs, the job settings file, shard folders, and the merge.

    gpi-desktop run --job job.json --shard 2/3 --out shards/2   # a task: its rows only, into a shard folder
    gpi-desktop merge job --out export                           # one export folder, as one machine writes it

What "the merge equals a single-machine run" means, exactly:

- The rows, the texts, the token counts, the stop reasons and the file layout
  (hidden/<prefix><k>.pt with the ORIGINAL row k, the pickle's X/P in row order,
  the CSV, hidden_states.npy, the manifest's format) are those of one run.
- With a fixed batch size (and the batched strategy), shards are made of whole
  batches of the single-machine plan, so every prompt runs in the very batch it
  would run in on one machine: on the same kind of hardware and software the
  merged files are byte-identical to a single run's. The one-at-a-time
  strategy runs each prompt alone, so it is exact too.
- With the automatic batch size each shard picks its own batches (from its own
  prompts and its GPU's free memory), so a prompt may share a batch with other
  prompts than on one machine: the vectors then agree within float tolerance
  (the last bits may differ), as any batched run does with gpi_pack's
  one-prompt-at-a-time procedure (docs/architecture.md, "Batching is an implementation detail").
  In rare near-ties of greedy decoding such a difference could change a token.

A shard folder holds hidden/<prefix><k>.pt for its rows (loadable by gpi_pack
for those rows), shard-states.npy and shard-results.jsonl (its vectors, texts
and input cells, so the merge needs nothing but the shard folders), and
shard.json, written last: the job's identity, the shard I/N and its rows.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from gpi_desktop.core.files.fileio import TEMP_PREFIX, fsync_folder, plain_os_errors, write_atomically
from gpi_desktop.core.vocabulary.errors import (
    InputError,
    NoResultsFolderError,
    OutputFolderError,
    Remedy,
    SettingsError,
)
from gpi_desktop.core.vocabulary.progress import NullState, Progress, ProgressKind, TaskState, check_cancel
from gpi_desktop.core.vocabulary.results import PromptResult
from gpi_desktop.core.vocabulary.settings import ExportSettings, RunSettings

if TYPE_CHECKING:
    from gpi_desktop.core.files.prompts import PromptTable
    from gpi_desktop.core.job.job import JobSpec, RunOutcome
    from gpi_desktop.core.output.export import ExportSummary

JOB_FORMAT = "gpi-desktop job 1"
SHARD_FORMAT = "gpi-desktop shard 1"
JOB_FILE_NAME = "job.json"
SHARD_MANIFEST = "shard.json"
SHARD_RESULTS = "shard-results.jsonl"
SHARD_MATRIX = "shard-states.npy"
_SHARD_PATTERN = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
_LISTED = 20


# -- which rows a shard runs -------------------------------------------------------------------------


@dataclass(frozen=True)
class Shard:
    """Task `index` (1..count) of a job split into `count` shards."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        match = _SHARD_PATTERN.match(str(text))
        if not match:
            raise SettingsError(
                f"--shard must look like 2/10 (this task's number, then the number of tasks); '{text}' does not."
            )
        index, count = int(match.group(1)), int(match.group(2))
        if count < 1 or not 1 <= index <= count:
            raise SettingsError(
                f"--shard {text}: the task number must be between 1 and {max(count, 1)} (they count from 1)."
            )
        return cls(index, count)

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    def select(self, lengths: Sequence[int], batch_size: int | None = None, max_new_tokens: int = 0) -> list[int]:
        """This shard's rows (sorted); see `assign_rows`."""
        return assign_rows(lengths, self.count, batch_size, max_new_tokens)[self.index - 1]


def assign_rows(
    lengths: Sequence[int], count: int, batch_size: int | None = None, max_new_tokens: int = 0
) -> list[list[int]]:
    """Split rows over `count` shards, deterministically and balanced by prompt length.

    Rows are ordered as the engine plans them (longest prompt first, then by
    row; engine.plan_batches) and cut into units of `batch_size` rows, or
    single rows when None; a run passes the engine's wave size
    (engine.wave_size of its batch size), since a running batch refills its
    rows within a wave. A shard made of whole waves re-plans into exactly
    those waves (only the plan's last one can be short, and it sorts last),
    which keeps the numbers those of one machine.
    Units go longest-first to the least-loaded shard (ties: the lower shard
    number), a unit weighing its prompt tokens plus `max_new_tokens` per row,
    the most each row may generate.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    order = sorted(range(len(lengths)), key=lambda row: (-lengths[row], row))
    size = max(1, batch_size or 1)
    units = [order[i : i + size] for i in range(0, len(order), size)]
    weights = [sum(lengths[row] + max_new_tokens for row in unit) for unit in units]
    loads = [0] * count
    shards: list[list[int]] = [[] for _ in range(count)]
    for u in sorted(range(len(units)), key=lambda u: (-weights[u], u)):
        target = min(range(count), key=lambda s: (loads[s], s))
        loads[target] += weights[u]
        shards[target].extend(units[u])
    return [sorted(rows) for rows in shards]


def tasks_with_rows(rows: int, count: int, unit: int | None) -> int:
    """How many of `count` shards get any rows when rows go out in groups of `unit` (assign_rows)."""
    return min(count, -(-rows // max(1, unit or 1)))


# -- the job settings file -----------------------------------------------------------------------------


@dataclass(frozen=True)
class JobFile:
    spec: JobSpec
    shards: int | None  # the number of tasks the job folder was prepared for


def job_file_data(spec: JobSpec, prompts: str, shards: int | None) -> dict[str, Any]:
    """The job file's content; `prompts` is the prompts file's path relative to the job file.

    The template date is fixed here, when the job is prepared, so shards that run
    on other days render their prompts with the same date.
    """
    from gpi_desktop.core.vocabulary.template_date import job_template_date

    settings = {**spec.settings.to_dict(), "template_date": job_template_date(spec.settings.template_date)}
    return {
        "format": JOB_FORMAT,
        "prompts": prompts,
        "column": spec.column,
        "sheet": spec.sheet,
        "settings": settings,
        "export": {"prefix": spec.export.prefix, "save_name": spec.export.save_name},
        "shards": shards,
    }


def write_job_file(path: Path, spec: JobSpec, prompts: str, shards: int | None) -> None:
    text = json.dumps(job_file_data(spec, prompts, shards), indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    write_atomically(Path(path), text.encode("utf-8"))


def load_job_file(path: Path | str) -> JobFile:
    """Read a job file; its prompts path is relative to the file's own folder. Raises SettingsError in plain words."""
    from gpi_desktop.core.job.job import JobSpec

    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(
            f"The job file '{path}' does not exist: give the job.json of a prepared job folder."
        ) from None
    except PermissionError:
        raise SettingsError(not_readable(path)) from None
    except (OSError, ValueError) as error:
        raise SettingsError(f"The job file '{path}' cannot be read ({error}): prepare the job folder again.") from None
    if not isinstance(data, dict) or data.get("format") != JOB_FORMAT:
        raise SettingsError(
            f"'{path}' is not a GPI Desktop job file: give the job.json of a job folder made by "
            '"Prepare for a cluster".'
        )
    try:
        settings = RunSettings(**data["settings"])
        export = ExportSettings(**data.get("export", {}))
        prompts = Path(data["prompts"])
        shards = data.get("shards")
    except (KeyError, TypeError) as error:
        raise SettingsError(
            f"The job file '{path}' is incomplete or from another version ({error}): "
            "prepare the job folder again with this version."
        ) from None
    if not prompts.is_absolute():
        prompts = path.parent / prompts
    spec = JobSpec(prompts, data.get("column"), settings, export, data.get("sheet")).validate()
    return JobFile(spec, int(shards) if shards else None)


# -- a shard folder -------------------------------------------------------------------------------------


def shard_identity(outcome: RunOutcome) -> dict[str, Any]:
    """What must be equal for shards to belong to one job (merge refuses anything else)."""
    from gpi_desktop.core.job.job import job_key

    info = outcome.model_info
    return _json_round_trip(
        {
            "job": job_key(outcome.spec, outcome.table),
            "model_revision": info.revision,
            "precision": info.dtype,
            "hidden_size": info.hidden_size,
            "instruction": outcome.instruction,
            "system_role": outcome.system_role,
            "export": {"prefix": outcome.spec.export.prefix, "save_name": outcome.spec.export.save_name},
            # Shards of a job file made before dates were fixed in it each took their own day: never merge two dates.
            **(
                {"template_date": outcome.template.date}
                if outcome.template is not None and outcome.template.date_used
                else {}
            ),
        }
    )


def write_shard_folder(folder: Path | str, outcome: RunOutcome, *, state: TaskState | None = None) -> Path:
    """Write a finished shard's folder; shard.json goes last, so its presence means the shard is complete."""
    from gpi_desktop.core.output.export import HIDDEN_DIR, hidden_file_name, hidden_tensor_bytes

    state = state or NullState()
    folder = Path(folder)
    if outcome.shard is None or outcome.rows is None:
        raise ValueError("write_shard_folder needs the outcome of a shard run")
    table, export = outcome.table, outcome.spec.export
    hidden_size = int(outcome.model_info.hidden_size)
    with _plain_os_errors(folder):
        folder.mkdir(parents=True, exist_ok=True)
        remove_shard_files(folder, export.prefix)
        (folder / HIDDEN_DIR).mkdir(exist_ok=True)
        sha: dict[str, str] = {}
        total = len(outcome.results) + 3
        for i, result in enumerate(outcome.results):
            if i % 200 == 0:
                check_cancel(state)
                state.set_progress(Progress(i, total, message="Writing the shard's files", kind=ProgressKind.STEPS))
            name = hidden_file_name(export, result.row)  # the file and bytes export.write_export writes for this row
            sha[name] = write_atomically(folder / name, hidden_tensor_bytes(result.vector, hidden_size))
        matrix = np.zeros((len(outcome.results), hidden_size), dtype="<f4")
        for i, result in enumerate(outcome.results):
            matrix[i] = np.asarray(result.vector, dtype="<f4")
        buffer = io.BytesIO()
        np.save(buffer, matrix)
        sha[SHARD_MATRIX] = write_atomically(folder / SHARD_MATRIX, buffer.getvalue())
        columns = table.columns
        lines = []
        for result in outcome.results:
            cells = [_cell(table.frame.iat[result.row, c]) for c in range(len(columns))]
            lines.append(json.dumps({**result.to_record(), "input": cells}, ensure_ascii=True))
        sha[SHARD_RESULTS] = write_atomically(
            folder / SHARD_RESULTS, ("\n".join(lines) + "\n" if lines else "").encode()
        )
        manifest = {
            "format": SHARD_FORMAT,
            "shard": {
                "index": outcome.shard.index,
                "count": outcome.shard.count,
                "rows": list(outcome.rows),
                "batch_size": outcome.batch_size,
                "device": outcome.model_info.device,
            },
            "identity": shard_identity(outcome),
            "input": {
                "file": Path(table.path).name,
                "sha256": table.sha256,
                "encoding": table.encoding,
                "column": table.column,
                "columns": columns,
                "rows": len(table),
            },
            "manifest_fields": _json_round_trip(outcome.manifest_fields()),
            "sha256": sha,
        }
        text = json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False, default=str) + "\n"
        write_atomically(folder / SHARD_MANIFEST, text.encode("utf-8"))
        fsync_folder(folder / HIDDEN_DIR, folder)
    state.set_progress(Progress(total, total, message="Shard written", kind=ProgressKind.STEPS))
    return folder / SHARD_MANIFEST


def remove_shard_files(folder: Path, prefix: str) -> None:
    """Delete what a shard run writes (manifest first), nothing else."""
    from gpi_desktop.core.output.export import remove_hidden_files

    (folder / SHARD_MANIFEST).unlink(missing_ok=True)
    for name in (SHARD_RESULTS, SHARD_MATRIX):
        (folder / name).unlink(missing_ok=True)
    for path in folder.glob(TEMP_PREFIX + "*"):
        path.unlink(missing_ok=True)
    remove_hidden_files(folder, prefix)


# -- merging shard folders -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShardFolder:
    """A finished shard folder as its shard.json describes it."""

    folder: Path
    index: int
    count: int
    rows: tuple[int, ...]
    manifest: dict[str, Any]

    @property
    def identity(self) -> dict[str, Any]:
        return cast("dict[str, Any]", self.manifest["identity"])

    @property
    def name(self) -> str:
        return f"shard {self.index} of {self.count} ('{self.folder}')"

    @property
    def device(self) -> str:
        return str(self.manifest["shard"].get("device") or "unknown device")

    @property
    def precision(self) -> str:
        return str(self.manifest.get("manifest_fields", {}).get("model", {}).get("precision") or "unknown precision")

    def describe_hardware(self) -> str:
        return f"Shard {self.index} of {self.count}: {len(self.rows)} rows on {self.device} in {self.precision}"


def find_shard_folders(paths: Iterable[Path | str]) -> list[Path]:
    """The shard folders among `paths`; a job folder or a folder of shard folders stands for the shards in it."""
    found: list[Path] = []
    for path in map(Path, paths):
        if (path / SHARD_MANIFEST).is_file() or _looks_like_unfinished_shard(path) or not path.is_dir():
            found.append(path)
            continue
        inner = path / "shards" if (path / "shards").is_dir() else path
        children = sorted((p for p in inner.iterdir() if p.is_dir()), key=_natural_key)
        shards = [p for p in children if (p / SHARD_MANIFEST).is_file() or _is_shard_journal(p)]
        found.extend(shards or [path])
    return found


def read_shard_folder(folder: Path | str) -> ShardFolder:
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"'{folder}' is not a folder: give the job folder (or its shard folders) to merge.")
    path = folder / SHARD_MANIFEST
    if not path.is_file():
        if _looks_like_unfinished_shard(folder):
            raise InputError(
                f"The shard in '{folder}' did not finish: run that task again (it resumes where it "
                "stopped), then merge."
            )
        if (folder / JOB_FILE_NAME).is_file():
            raise NoResultsFolderError(
                f"The job folder '{folder}' holds no finished results yet (its shards folder is empty or missing): merge it "
                "when every cluster task has finished, copied back with its shards folder.",
                folder=str(folder),
                job_folder=True,
            )
        raise NoResultsFolderError(
            f"'{folder}' is not a shard folder (it has no {SHARD_MANIFEST}): give the folders "
            "that `gpi-desktop run --shard` wrote.",
            folder=str(folder),
        )
    try:
        text = path.read_text(encoding="utf-8")
    except PermissionError:
        raise InputError(not_readable(path)) from None
    try:
        manifest = json.loads(text)
        if manifest.get("format") != SHARD_FORMAT:
            raise ValueError(manifest.get("format"))
        shard = manifest["shard"]
        return ShardFolder(
            folder, int(shard["index"]), int(shard["count"]), tuple(int(r) for r in shard["rows"]), manifest
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise InputError(
            f"The {SHARD_MANIFEST} in '{folder}' is damaged or from another version: run that shard again."
        ) from None


def check_devices(shards: Sequence[ShardFolder]) -> None:
    """Refuse shards run on different devices or precisions: greedy texts and numbers can differ between them."""
    first = min(shards, key=lambda s: (s.index, str(s.folder)))
    for shard in shards:
        if (shard.device, shard.precision) != (first.device, first.precision):
            raise InputError(
                f"{_capital(shard.name)} ran on {shard.device} in {shard.precision}, but {first.name} on "
                f"{first.device} in {first.precision}; greedy texts and hidden states can differ between devices "
                "and precisions, so they are not merged",
                remedy=Remedy.MERGE_MIXED_DEVICES,
            )


def check_shards(shards: Sequence[ShardFolder]) -> None:
    """Refuse, in plain words, shards that are not exactly one job's complete set of rows."""
    from gpi_desktop.core.files.runstore import describe_key_differences

    if not shards:
        raise InputError("There is nothing to merge: give the job folder (or its shard folders).")
    first = min(shards, key=lambda s: (s.index, str(s.folder)))
    for shard in shards:
        if shard.count != first.count:
            raise InputError(
                f"The job was split into {first.count} shards for {first.name} but into {shard.count} "
                f"for {shard.name}: merge only shards of one split."
            )
        if shard.identity != first.identity:
            what = describe_key_differences(first.identity, shard.identity)
            raise InputError(
                f"{_capital(shard.name)} comes from a different job than {first.name} ({what}): "
                "merge only shards of the same job, or run that shard again with the job's settings."
            )
    total = int(first.manifest["input"]["rows"])
    owners: dict[int, list[ShardFolder]] = {}
    for shard in shards:
        for row in shard.rows:
            owners.setdefault(row, []).append(shard)
    duplicated = sorted(row for row, who in owners.items() if len(who) > 1)
    if duplicated:
        who = owners[duplicated[0]]
        raise InputError(
            f"{_count(len(duplicated), 'row')} {_rows(duplicated)} would be merged twice ({who[0].name} and "
            f"{who[1].name} both hold row {duplicated[0]}): give each shard folder once."
        )
    outside = sorted(row for row in owners if not 0 <= row < total)
    if outside:
        raise InputError(
            f"{_capital(owners[outside[0]][0].name)} holds rows the input does not have "
            f"({_rows(outside)}): run that shard again."
        )
    missing = [row for row in range(total) if row not in owners]
    if missing:
        absent = sorted(set(range(1, first.count + 1)) - {s.index for s in shards})
        hint = (
            (
                f" (shard {', '.join(map(str, absent))} of {first.count} "
                f"{'is' if len(absent) == 1 else 'are'} not among the folders given)"
            )
            if absent
            else ""
        )
        raise InputError(
            f"{_count(len(missing), 'row')} {_rows(missing)} {'is' if len(missing) == 1 else 'are'} missing{hint}: "
            "add the missing shard folders, or run those shards again, then merge."
        )


def merge_shards(
    paths: Sequence[Path | str],
    out: Path | str,
    *,
    overwrite: bool = False,
    state: TaskState | None = None,
    allow_mixed_devices: bool = False,
) -> ExportSummary:
    """Check the shards and write one export folder, as a single-machine run of the job writes it.

    Shards of one device and precision only, unless `allow_mixed_devices`.
    """
    from gpi_desktop.core.output.export import check_output_folder, write_export

    state = state or NullState()
    out = Path(out)
    shards = [read_shard_folder(p) for p in find_shard_folders(paths)]
    check_shards(shards)
    if not allow_mixed_devices:
        check_devices(shards)
    shards.sort(key=lambda s: s.index)
    for shard in shards:
        state.set_status(shard.describe_hardware() + ".")
    out_resolved = out.resolve()
    for shard in shards:
        if out_resolved == shard.folder.resolve():
            raise OutputFolderError(f"'{out}' is {shard.name} itself: choose a new folder for the merged export.")
    check_output_folder(out, overwrite=overwrite)
    first = shards[0]
    results: list[PromptResult] = []
    cells: dict[int, list[Any]] = {}
    total = int(first.manifest["input"]["rows"])
    state.set_status(f"Reading {len(shards)} shard folders…")
    for shard in shards:
        check_cancel(state)
        results.extend(_read_shard_results(shard, cells))
        state.set_progress(Progress(len(results), total, message=f"Read {shard.name}", kind=ProgressKind.STEPS))
    table = _merged_table(first.manifest["input"], cells)
    fields = _json_round_trip(first.manifest["manifest_fields"])
    fields["sharded"] = {
        "shards": first.count,
        "batch_sizes": [s.manifest["shard"].get("batch_size") for s in shards],
        "devices": [s.manifest["shard"].get("device") for s in shards],
        "precisions": [s.precision for s in shards],
    }
    versions = [s.manifest["manifest_fields"].get("versions") for s in shards]
    if any(v != versions[0] for v in versions):  # the manifest's "versions" are shard 1's; say where they differ
        fields["sharded"]["versions"] = versions
    export = ExportSettings(**first.identity["export"])
    state.set_status("Writing the merged export folder…")
    return write_export(out, results, table, export, fields, overwrite=overwrite, state=state)


def _read_shard_results(shard: ShardFolder, cells: dict[int, list[Any]]) -> list[PromptResult]:
    files = shard.manifest.get("sha256", {})
    data: dict[str, bytes] = {}
    for name in (SHARD_RESULTS, SHARD_MATRIX):
        content: bytes | None
        try:
            content = (shard.folder / name).read_bytes()
        except PermissionError:
            raise InputError(not_readable(shard.folder / name)) from None
        except OSError:
            content = None
        if content is None or hashlib.sha256(content).hexdigest() != files.get(name):
            raise InputError(
                f"The file {name} of {shard.name} is missing or changed since the shard finished: "
                "copy that folder again from the cluster, or run that shard again."
            )
        data[name] = content
    matrix = np.load(io.BytesIO(data[SHARD_MATRIX]), allow_pickle=False)
    records = [json.loads(line) for line in data[SHARD_RESULTS].decode().splitlines() if line]
    if [r["row"] for r in records] != list(shard.rows) or matrix.shape[0] != len(records):
        raise InputError(f"The files of {shard.name} do not agree with its {SHARD_MANIFEST}: run that shard again.")
    out = []
    for record, vector in zip(records, matrix):
        cells[record["row"]] = record["input"]
        out.append(PromptResult.from_record(record, np.array(vector, dtype=np.float32)))
    return out


def _merged_table(meta: dict[str, Any], cells: dict[int, list[Any]]) -> PromptTable:
    import pandas as pd

    from gpi_desktop.core.files.prompts import PromptTable

    rows = [cells[row] for row in range(int(meta["rows"]))]
    columns = list(meta["columns"])
    data = {}
    for c, name in enumerate(columns):
        values = [row[c] for row in rows]
        # Cells are read as text (prompts.py); keep that dtype so the CSV is written as a single run writes it.
        data[name] = pd.Series(values, dtype=str if all(isinstance(v, str) for v in values) else object)
    frame = pd.DataFrame(data, columns=columns)
    return PromptTable(
        path=Path(meta["file"]), frame=frame, column=meta["column"], sha256=meta["sha256"], encoding=meta["encoding"]
    )


# -- small helpers ------------------------------------------------------------------------------------


def _looks_like_unfinished_shard(folder: Path) -> bool:
    """An interrupted run's journal and no shard.json (a normal run's folder looks the same; see _is_shard_journal)."""
    from gpi_desktop.core.files.runstore import RUN_DIR_NAME

    return (folder / RUN_DIR_NAME).is_dir() and not (folder / SHARD_MANIFEST).exists()


def _is_shard_journal(folder: Path) -> bool:
    """The folder holds the journal of an interrupted shard (its key names the shard), not of a normal run."""
    from gpi_desktop.core.files.runstore import HEADER_NAME, RUN_DIR_NAME

    try:
        header = json.loads((folder / RUN_DIR_NAME / HEADER_NAME).read_text(encoding="utf-8"))
        return not (folder / SHARD_MANIFEST).exists() and "shard" in header["key"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def not_readable(path: Path) -> str:
    """A file we may not read is not "damaged": say whose it is and how it is shared."""
    return (
        f"'{path}' may not be read by you (permission denied): ask its owner to share the job folder, for "
        f"example with: chmod -R a+rX '{path.parent}'"
    )


def _natural_key(path: Path) -> tuple[int | str, ...]:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name))


def _cell(value: Any) -> Any:
    if isinstance(value, str) or value is None:
        return value
    if isinstance(value, float) and value != value:
        return None
    return value.item() if hasattr(value, "item") else value


def _json_round_trip(data: dict[str, Any]) -> dict[str, Any]:
    return cast("dict[str, Any]", json.loads(json.dumps(data, sort_keys=True, default=str)))


def _rows(rows: list[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:_LISTED])
    return shown if len(rows) <= _LISTED else f"{shown} and {len(rows) - _LISTED} more"


def _count(n: int, word: str) -> str:
    return f"{word.capitalize()}{'' if n == 1 else 's'}"


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _plain_os_errors(folder: Path) -> AbstractContextManager[None]:
    return plain_os_errors(
        "The disk is full while writing the shard: free some space, then run the task again with --resume; "
        "finished prompts are kept.",
        f"The shard could not be written in '{folder}' ({{reason}}): check that you may write there, then run the "
        "task again.",
    )
