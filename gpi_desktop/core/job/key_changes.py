"""The job key's changes in the words a researcher uses: what differs between the job of some results and now.

The window says these when the results on screen no longer belong to its inputs. They sit
with the job key (core/job/job.py's `job_key`), whose paths they name; the journal, which
only compares keys to refuse another job's, keeps its short form (`describe_key_differences`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpi_desktop.core.files.runstore import differing_paths, key_value, normalise_key, value_words


@dataclass(frozen=True)
class KeyChange:
    """One input that differs between the job that made some results and the job the inputs describe now."""

    what: str  # plain words: "pooling", "the prompts file"
    before: str = ""  # the old and new value, where they are short enough to be worth showing
    after: str = ""

    def words(self) -> str:
        return f"{self.what} ({self.before} \u2192 {self.after})" if self.before or self.after else self.what


# Job-key paths (see core.job.job.job_key) in the words a researcher uses; the order is the order they are listed in.
_KEY_WORDS = {
    "input_sha256": "the prompts file",
    "column": "the prompt column",
    "sheet": "the sheet",
    "rows": "the number of rows",
    "model": "the model",
    "settings.model": "the model",
    "settings.revision": "the model revision",
    "settings.dtype": "precision",
    "settings.device": "device",
    "settings.quantization": "quantization",
    "settings.task": "the task",
    "settings.pooling": "pooling",
    "settings.max_new_tokens": "the maximum new tokens",
    "settings.template": "chat formatting",
    "settings.template_options": "the chat template options",
    "settings.generation_options": "the generation options",
    "settings.template_date": "the template date",
    "strategy": "strategy",
}
_SHOWN_VALUES = {
    "rows",
    "model",
    "settings.revision",
    "settings.dtype",
    "settings.device",
    "settings.quantization",
    "settings.pooling",
    "settings.max_new_tokens",
    "settings.template",
    "settings.template_date",
    "strategy",
}


def key_changes(made: dict[str, Any], now: dict[str, Any]) -> tuple[KeyChange, ...]:
    """What differs between two job keys, one entry per input a researcher would name (empty: the same job).

    Pure: the window shows these words when the results on screen no longer belong to its inputs.
    """
    made, now = normalise_key(made), normalise_key(now)
    if made == now:
        return ()
    order = list(_KEY_WORDS)
    changes: dict[str, KeyChange] = {}
    for path in sorted(differing_paths(made, now, ""), key=lambda p: order.index(p) if p in order else len(order)):
        top = path.split(".")[0] if path.split(".")[0] != "settings" else ".".join(path.split(".")[:2])
        what = _KEY_WORDS.get(top, top.rsplit(".", 1)[-1].replace("_", " "))
        if what in {c.what for c in changes.values()}:
            continue
        before = after = ""
        if top in _SHOWN_VALUES:
            before, after = value_words(key_value(made, top)), value_words(key_value(now, top))
        elif top == "settings.task":
            before, after = _task_words(key_value(made, top)), _task_words(key_value(now, top))
        if before == after:  # two different instructions of one's own: the values would say nothing
            before = after = ""
        changes[top] = KeyChange(what, before, after)
    return tuple(changes.values())


def _task_words(task: Any) -> str:
    return task if task in ("create", "repeat") else "your own instruction"
