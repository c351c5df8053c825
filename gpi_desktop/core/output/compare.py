"""Two export folders side by side: made the same way, and how far their vectors and texts differ.

    comparison = compare_exports(a, b, state)
    print("\n".join(comparison.lines()))

So a researcher can tell an exact replication (same model, revision, template,
date, settings and inputs; identical texts; vectors equal) from a near one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from gpi_desktop.core.output.export import MATRIX_NAME
from gpi_desktop.core.output.provenance import NOT_RECORDED, read_manifest
from gpi_desktop.core.vocabulary.errors import InputError
from gpi_desktop.core.vocabulary.progress import NullState, Progress, ProgressKind, TaskState, check_cancel

# Settings that by contract do not change the numbers; reported, but not a difference in how the export was made.
_NEUTRAL_SETTINGS = ("batch_size", "strategy")
_ROWS_AT_ONCE = 4096
_LISTED = 10


@dataclass(frozen=True)
class Aspect:
    """One thing both exports record: whether it is the same, and in words what each says."""

    name: str
    same: bool | None  # None: at least one export does not record it
    a: str
    b: str

    def sentence(self) -> str:
        if self.same is None:
            return f"{self.name}: cannot tell (A: {self.a}; B: {self.b})."
        if self.same:
            return f"{self.name}: same ({self.a})."
        return f"{self.name}: DIFFERENT ({f'A: {self.a}; B: {self.b}' if self.b else self.a})."


@dataclass(frozen=True)
class VectorDifference:
    rows: int
    max_abs_difference: float
    min_cosine: float
    mean_cosine: float
    least_similar_row: int


@dataclass(frozen=True)
class Comparison:
    a: Path
    b: Path
    aspects: tuple[Aspect, ...]
    rows: tuple[int, int]
    identical_texts: int | None  # rows whose generated texts are identical (None: row counts differ)
    differing_text_rows: tuple[int, ...]
    vectors: VectorDifference | None  # None: the matrices cannot be compared (shapes differ)
    vector_problem: str = ""
    # Where the numbers were computed (CPU instruction set, kernels, threads): not how the export was made, but
    # what its bytes depend on besides inputs and settings (the manifest's "numbers").
    machine: Aspect | None = None

    @property
    def made_the_same_way(self) -> bool:
        return all(a.same for a in self.aspects)

    @property
    def identical_results(self) -> bool:
        return (
            self.identical_texts == self.rows[0] and self.vectors is not None and self.vectors.max_abs_difference == 0.0
        )

    def verdict(self) -> str:
        if self.made_the_same_way and self.identical_results:
            return "An exact replication: made the same way, with identical texts and identical vectors."
        if self.made_the_same_way and self.machine is not None and self.machine.same is False:
            return (
                "Made the same way, but computed differently (see 'Computed with'): the bytes depend on the "
                "CPU's instruction set, the kernel library and the thread count besides the inputs and settings, "
                "so the last digits can differ, and rarely a token."
            )
        if self.made_the_same_way:
            return (
                "Made the same way, but the results are not identical (a near replication: other hardware, "
                "library versions or batch sizes can change the last digits, and rarely a token)."
            )
        unknown = [a.name for a in self.aspects if a.same is None]
        differ = [a.name for a in self.aspects if a.same is False]
        parts = []
        if differ:
            parts.append("made differently (" + ", ".join(differ) + ")")
        if unknown:
            parts.append("not everything is recorded (" + ", ".join(unknown) + ")")
        return "Not a replication of the same job: " + "; ".join(parts) + "."

    def lines(self) -> list[str]:
        out = [f"A: {self.a}", f"B: {self.b}", self.verdict()]
        out += [a.sentence() for a in self.aspects]
        if self.machine is not None:
            out.append(self.machine.sentence())
        if self.identical_texts is None:
            out.append(f"Texts: cannot be compared row by row (A has {self.rows[0]:,} rows, B {self.rows[1]:,}).")
        else:
            share = self.identical_texts / self.rows[0] if self.rows[0] else 1.0
            rows = ""
            if self.differing_text_rows:
                shown = ", ".join(map(str, self.differing_text_rows[:_LISTED]))
                rows = f"; differing rows: {shown}{' …' if len(self.differing_text_rows) > _LISTED else ''}"
            out.append(f"Texts: {self.identical_texts:,} of {self.rows[0]:,} identical ({share:.1%}){rows}.")
        if self.vectors is None:
            out.append(f"Vectors: cannot be compared ({self.vector_problem}).")
        else:
            v = self.vectors
            out.append(
                f"Vectors: largest |difference| {v.max_abs_difference:.3g}; cosine similarity per row "
                f"mean {v.mean_cosine:.8f}, lowest {v.min_cosine:.8f} (row {v.least_similar_row})."
            )
        return out


def compare_exports(a: Path | str, b: Path | str, state: TaskState | None = None) -> Comparison:
    state = state or NullState()
    a, b = Path(a), Path(b)
    ma, mb = read_manifest(a), read_manifest(b)
    aspects = tuple(_aspects(ma, mb))
    texts_a, texts_b = _texts(a, ma), _texts(b, mb)
    rows = (len(texts_a), len(texts_b))
    identical: int | None = None
    differing: tuple[int, ...] = ()
    if rows[0] == rows[1]:
        differing = tuple(i for i, (x, y) in enumerate(zip(texts_a, texts_b)) if x != y)
        identical = rows[0] - len(differing)
    vectors, problem = _vector_difference(a, b, state)
    return Comparison(a, b, aspects, rows, identical, differing, vectors, problem, _machine_aspect(ma, mb))


def _machine_aspect(ma: dict[str, Any], mb: dict[str, Any]) -> Aspect:
    keys = ("device", "cpu_instruction_set", "kernels", "threads")

    def words(m: dict[str, Any]) -> str | None:
        n = m.get("numbers")
        if not isinstance(n, dict) or any(k not in n for k in keys):
            return None
        return f"{n['device']}, {n['cpu_instruction_set']}, {n['kernels']}, {n['threads']} threads"

    a, b = words(ma), words(mb)
    if a is None or b is None:
        return Aspect("Computed with", None, a or NOT_RECORDED, b or NOT_RECORDED)
    return Aspect("Computed with", a == b, a, "" if a == b else b)


def _aspects(ma: dict[str, Any], mb: dict[str, Any]) -> list[Aspect]:
    def get(m: Any, *path: str) -> Any:
        for key in path:
            if not isinstance(m, dict) or key not in m:
                return _MISSING
            m = m[key]
        return m

    def aspect(name: str, *paths: tuple[str, ...], words: Callable[[tuple[Any, ...]], str] | None = None) -> Aspect:
        va = tuple(get(ma, *p) for p in paths)
        vb = tuple(get(mb, *p) for p in paths)
        say = words or (lambda v: ", ".join(str(x) for x in v))
        if any(x is _MISSING for x in va + vb):
            return Aspect(name, None, _said(va, say), _said(vb, say))
        return Aspect(name, va == vb, say(va), say(vb))

    def settings(m: dict[str, Any]) -> Any:
        s = get(m, "settings")
        if s is _MISSING:
            return _MISSING
        return {
            k: v
            for k, v in s.items()
            if k not in _NEUTRAL_SETTINGS
            and k not in ("template", "instruction", "add_generation_prompt", "system_role_fallback")
        }

    sa, sb = settings(ma), settings(mb)
    if sa is _MISSING or sb is _MISSING:
        settings_aspect = Aspect(
            "Settings",
            None,
            "recorded" if sa is not _MISSING else NOT_RECORDED,
            "recorded" if sb is not _MISSING else NOT_RECORDED,
        )
    elif sa == sb:
        settings_aspect = Aspect("Settings", True, _settings_words(sa), "")
    else:
        keys = sorted(k for k in set(sa) | set(sb) if sa.get(k) != sb.get(k))
        settings_aspect = Aspect(
            "Settings",
            False,
            "; ".join(f"{k}={sa.get(k)!r}" for k in keys),
            "; ".join(f"{k}={sb.get(k)!r}" for k in keys),
        )
    return [
        aspect("Model", ("model", "model_id")),
        aspect("Revision", ("model", "revision")),
        aspect(
            "Precision",
            ("model", "precision"),
            ("model", "quantization"),
            words=lambda v: f"{v[0]}" + (f", quantized {v[1]}" if v[1] else ""),
        ),
        aspect(
            "Template",
            ("prompt_template", "template_sha256"),
            ("settings", "template"),
            ("settings", "system_role_fallback"),
            ("settings", "instruction"),
            words=lambda v: f'template sha256 {str(v[0])[:12]}…, {v[1]} formatting, instruction "{v[3]}"',
        ),
        aspect(
            "Template date",
            ("prompt_template", "date"),
            ("prompt_template", "date_used_by_template"),
            words=lambda v: f"{v[0]}, {'used by the template' if v[1] else 'not used by the template'}",
        ),
        settings_aspect,
        aspect(
            "Input file",
            ("input", "sha256"),
            ("input", "column"),
            ("input", "rows"),
            words=lambda v: f"sha256 {str(v[0])[:12]}…, column '{v[1]}', {v[2]} rows",
        ),
        # Recorded for a workbook of several sheets only: its bytes do not say which sheet held the prompts.
        *(
            [aspect("Input sheet", ("input", "sheet"))]
            if any(get(m, "input", "sheet") is not _MISSING for m in (ma, mb))
            else []
        ),
        _token_ids_aspect(get(ma, "prompt_tokens", "token_ids_sha256"), get(mb, "prompt_tokens", "token_ids_sha256")),
    ]


def _token_ids_aspect(a: Any, b: Any) -> Aspect:
    name = "Model input (every row's token ids)"
    if not isinstance(a, list) or not isinstance(b, list) or not all(a) or not all(b):
        return Aspect(
            name,
            None,
            "recorded" if isinstance(a, list) and all(a) else NOT_RECORDED,
            "recorded" if isinstance(b, list) and all(b) else NOT_RECORDED,
        )
    if a == b:
        return Aspect(name, True, f"the same tokens for all {len(a):,} rows", "")
    if len(a) != len(b):
        return Aspect(name, False, f"{len(a):,} rows", f"{len(b):,} rows")
    rows = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
    shown = ", ".join(map(str, rows[:_LISTED])) + (" …" if len(rows) > _LISTED else "")
    return Aspect(name, False, f"other tokens in {len(rows):,} of {len(a):,} rows: {shown}", "")


def _settings_words(s: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in sorted(s.items()))


def _said(values: tuple[Any, ...], say: Callable[[tuple[Any, ...]], str]) -> str:
    if any(x is _MISSING for x in values):
        return NOT_RECORDED
    return say(values)


_MISSING = object()


def _texts(folder: Path, manifest: dict[str, Any]) -> list[str]:
    """The generated texts, from the export's CSV (the pickle is never loaded: unpickling can run code)."""
    import pandas as pd

    name = (manifest.get("files") or {}).get("texts_csv", "generated_texts.csv")
    try:
        frame = pd.read_csv(folder / name, encoding="utf-8-sig", dtype=str, keep_default_na=False)
        return cast("list[str]", frame["generated text"].tolist())
    except (OSError, ValueError, KeyError) as error:
        raise InputError(
            f"The texts file {name} in '{folder}' cannot be read ({error}): copy the export again."
        ) from None


def _vector_difference(a: Path, b: Path, state: TaskState) -> tuple[VectorDifference | None, str]:
    try:
        xa = np.load(a / MATRIX_NAME, mmap_mode="r", allow_pickle=False)
        xb = np.load(b / MATRIX_NAME, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as error:
        return None, f"a {MATRIX_NAME} cannot be read: {error}"
    if xa.shape != xb.shape:
        return None, f"A's vectors are {xa.shape[0]:,} x {xa.shape[1]}, B's {xb.shape[0]:,} x {xb.shape[1]}"
    n = xa.shape[0]
    if n == 0:
        return VectorDifference(0, 0.0, 1.0, 1.0, 0), ""
    largest = 0.0
    cosines = np.empty(n, dtype=np.float64)
    for start in range(0, n, _ROWS_AT_ONCE):
        check_cancel(state)
        state.set_progress(Progress(start, n, message="Comparing the vectors", kind=ProgressKind.STEPS))
        pa = np.asarray(xa[start : start + _ROWS_AT_ONCE], dtype=np.float64)
        pb = np.asarray(xb[start : start + _ROWS_AT_ONCE], dtype=np.float64)
        largest = max(largest, float(np.max(np.abs(pa - pb))))
        norms = np.linalg.norm(pa, axis=1) * np.linalg.norm(pb, axis=1)
        dots = np.einsum("ij,ij->i", pa, pb)
        # Two zero vectors are the same vector; one zero vector has no direction to compare.
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = np.where(norms > 0, dots / norms, np.where(np.all(pa == pb, axis=1), 1.0, 0.0))
        cosines[start : start + len(pa)] = cos
    state.set_progress(Progress(n, n, message="Compared the vectors", kind=ProgressKind.STEPS))
    low = int(np.argmin(cosines))
    return VectorDifference(n, largest, float(cosines[low]), float(cosines.mean()), low), ""
