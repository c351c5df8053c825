"""What an export folder was made with, in plain words, and whether its files are still the ones written.

    report = inspect_export(folder, state)     # reads manifest.json, checks every file's sha256
    print("\n".join(report.lines()))

Used the same way by `gpi-desktop inspect FOLDER` and the window's export step.
Exports of earlier versions lack some manifest fields; those are said to be
"not recorded", never guessed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpi_desktop.core.output.export import MANIFEST_NAME
from gpi_desktop.core.vocabulary.errors import InputError
from gpi_desktop.core.vocabulary.progress import NullState, Progress, ProgressKind, TaskState, check_cancel

_CHUNK = 1 << 20
_LISTED = 10
NOT_RECORDED = "not recorded (made by an earlier version)"


@dataclass(frozen=True)
class FileCheck:
    name: str  # relative POSIX path
    problem: str  # "" when the file matches its checksum; else "missing" or "changed"


@dataclass(frozen=True)
class ExportReport:
    folder: Path
    manifest: dict[str, Any]
    checks: tuple[FileCheck, ...]

    @property
    def problems(self) -> tuple[FileCheck, ...]:
        return tuple(c for c in self.checks if c.problem)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        return describe_manifest(self.folder, self.manifest) + [checks_sentence(self.checks)]


def read_manifest(folder: Path | str) -> dict[str, Any]:
    """The export's manifest, or an InputError saying why the folder is not an export."""
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    if not folder.is_dir():
        raise InputError(f"'{folder}' is not a folder: give the folder an export was written to.")
    if not path.is_file():
        raise InputError(
            f"'{folder}' holds no {MANIFEST_NAME}, so it is not a finished GPI Desktop export: "
            "give the folder the export was written to."
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(
            f"The {MANIFEST_NAME} in '{folder}' cannot be read ({error}): copy the export again."
        ) from None
    if not isinstance(data, dict) or not str(data.get("format", "")).startswith("gpi-desktop export"):
        raise InputError(f"The {MANIFEST_NAME} in '{folder}' is not a GPI Desktop export's manifest.")
    return data


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_files(folder: Path, manifest: dict[str, Any], state: TaskState | None = None) -> tuple[FileCheck, ...]:
    """Each file the manifest lists, hashed again and compared; reports progress and can be stopped."""
    state = state or NullState()
    listed = manifest.get("sha256") or {}
    names = sorted(listed)
    checks = []
    every = max(1, len(names) // 200)
    for i, name in enumerate(names):
        if i % every == 0:
            check_cancel(state)
            state.set_progress(Progress(i, len(names), message=f"Checking the files: {name}", kind=ProgressKind.STEPS))
        path = folder / name
        if not path.is_file():
            checks.append(FileCheck(name, "missing"))
            continue
        checks.append(FileCheck(name, "" if file_sha256(path) == listed[name] else "changed"))
    state.set_progress(Progress(len(names), len(names), message="Checked the files", kind=ProgressKind.STEPS))
    return tuple(checks)


def inspect_export(folder: Path | str, state: TaskState | None = None) -> ExportReport:
    folder = Path(folder)
    manifest = read_manifest(folder)
    return ExportReport(folder, manifest, verify_files(folder, manifest, state))


def checks_sentence(checks: tuple[FileCheck, ...]) -> str:
    bad = [c for c in checks if c.problem]
    if not checks:
        return "Checksums: the manifest lists no files to check."
    if not bad:
        # What a checksum shows, no more: the files are as the export wrote them. A forged journal record or a
        # manifest rewritten with its files would match too (docs/architecture.md, "What the journal promises").
        return (
            f"Checksums: all {len(checks):,} files match the manifest, so they are unchanged since the export was "
            "written (a check against damage, not against deliberate edits; to check the numbers themselves, "
            "run the job again and compare the two exports)."
        )
    shown = ", ".join(f"{c.name} ({c.problem})" for c in bad[:_LISTED])
    more = f" and {len(bad) - _LISTED:,} more" if len(bad) > _LISTED else ""
    return (
        f"Checksums: {len(bad):,} of {len(checks):,} files do not match the manifest: {shown}{more}. "
        "The export was changed or damaged after it was written; copy it again from where it was made."
    )


def describe_manifest(folder: Path, m: dict[str, Any]) -> list[str]:
    """What an export was made with, one plain sentence a line."""
    model = m.get("model") or {}
    settings = m.get("settings") or {}
    source = m.get("input") or {}
    counts = m.get("counts") or {}
    versions = m.get("versions") or {}
    lines = [
        f"Export in '{folder}': {counts.get('prompts', '?')} prompts, vectors of {m.get('hidden_size', '?')} "
        f"numbers, made by GPI Desktop {versions.get('gpi_desktop', '(version not recorded)')}."
    ]
    quant = f", quantized {model['quantization']}" if model.get("quantization") else ""
    lines.append(
        f"Model: {model.get('model_id', NOT_RECORDED)}, revision {model.get('revision', NOT_RECORDED)} "
        f"({model.get('precision', '?')} on {model.get('device', '?')}{quant})."
    )
    if source:
        sheet = f"sheet '{source['sheet']}' of " if source.get("sheet") else ""  # a workbook of several sheets
        lines.append(
            f"Prompts: column '{source.get('column')}' of {sheet}{source.get('file')}, "
            f"{source.get('rows', '?')} rows (file sha256 {source.get('sha256')})."
        )
    task = settings.get("task")
    instruction = settings.get("instruction")
    if task is not None:
        lines.append(
            f"Task: {task if task in ('create', 'repeat') else 'own instruction'}; the instruction given "
            f'to the model: "{instruction}".'
        )
    if settings:
        style = (
            "gpi_pack-compatible (no assistant header)"
            if not settings.get("add_generation_prompt")
            else "model-card (assistant header appended)"
        )
        fallback = (
            "; the template has no system role, so instruction and prompt went in one user message"
            if settings.get("system_role_fallback")
            else ""
        )
        lines.append(f"Chat formatting: {style}{fallback}.")
        lines.append(
            f"Decoding: {settings.get('decoding', 'greedy')}, at most {settings.get('max_new_tokens')} new "
            f"tokens; pooling '{settings.get('pooling')}'; {settings.get('strategy', 'batched')}, batch size "
            f"{settings.get('batch_size')}."
        )
        lines.append(
            f"Template options: {_options(settings.get('template_options'))}; generation options: "
            f"{_options(settings.get('generation_options'))}."
        )
    lines.extend(_template_lines(m.get("prompt_template")))
    lines.extend(_prompt_token_lines(m.get("prompt_tokens")))
    limit, step0 = m.get("rows_hit_token_limit") or [], m.get("rows_pooled_from_step0") or []
    lines.append(f"Stopped at the token limit: {_rows(limit)}; pooled from the prompt's pass alone: {_rows(step0)}.")
    if m.get("sharded"):
        lines.append(f"Run as {m['sharded'].get('shards')} cluster shards and merged.")
    if versions:
        lines.append("Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) + ".")
    return lines


def _template_lines(template: Any) -> list[str]:
    if not isinstance(template, dict):
        return [f"Template date and template checksum: {NOT_RECORDED}."]
    used = (
        "the template writes it into every prompt"
        if template.get("date_used_by_template")
        else "the template does not use the date, so it does not matter"
    )
    lines = [
        f"Template date: {template.get('date')} ({template.get('date_source')}); {used}.",
        f"Chat template sha256: {template.get('template_sha256')}.",
    ]
    example = template.get("example") or {}
    if example:
        lines.append(
            f"Row {example.get('row')} as the model was given it ({example.get('tokens')} tokens, token ids "
            f"sha256 {example.get('token_ids_sha256')}):"
        )
        lines.extend("    " + line for line in str(example.get("rendered_text", "")).splitlines() or [""])
    return lines


def _prompt_token_lines(tokens: Any) -> list[str]:
    if not isinstance(tokens, dict) or not tokens.get("count"):
        return [f"Every row's prompt tokens and token ids checksum: {NOT_RECORDED}."]
    counts = [int(c) for c in tokens["count"]]
    return [
        f"Prompt tokens: {min(counts):,} to {max(counts):,} per prompt ({sum(counts):,} in all); every row's "
        f"token ids checksum is in the manifest and the CSV ({tokens.get('token_ids_hash')})."
    ]


def _options(options: Any) -> str:
    if not options:
        return "none"
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(dict(options).items()))


def _rows(rows: list[int]) -> str:
    if not rows:
        return "none"
    shown = ", ".join(str(r) for r in rows[:_LISTED])
    return f"{len(rows)} rows ({shown}{' …' if len(rows) > _LISTED else ''})"
