"""Task -> instruction, chat messages, and the rendered prompt tokens (gpi_pack contract, points 1-2)."""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpi_desktop.core.model.context import PromptLengths
from gpi_desktop.core.vocabulary import template_date as dates
from gpi_desktop.core.vocabulary.errors import ModelError
from gpi_desktop.core.vocabulary.progress import NullState, Progress, TaskState, check_cancel
from gpi_desktop.core.vocabulary.settings import RunSettings
from gpi_desktop.core.vocabulary.template_date import fixed_template_clock, parse_template_date

if TYPE_CHECKING:
    from gpi_desktop.core.model.models import PromptTokenizer

# Two dates that differ in day, month, year and weekday: a template whose rendering changes between them uses the date.
_PROBE_DATES = ("2001-02-03", "2012-11-25")
TOKEN_IDS_HASH = "sha256 of the token ids written in decimal and joined by commas, e.g. '128000,128006,9125'"

CREATE_INSTRUCTION = "You are a text generator who always produces the texts suggested by the prompts."
REPEAT_INSTRUCTION = "You are a text generator who just repeats the input text."


def instruction_for(task: str) -> str:
    if task == "create":
        return CREATE_INSTRUCTION
    if task == "repeat":
        return REPEAT_INSTRUCTION
    return task


def messages_for(instruction: str, prompt: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": instruction}, {"role": "user", "content": prompt}]


def merged_messages_for(instruction: str, prompt: str) -> list[dict[str, str]]:
    """The fallback for templates without a system role: one user message holding both."""
    return [{"role": "user", "content": f"{instruction}\n\n{prompt}"}]


@dataclass(frozen=True)
class Renderer:
    """Turns a prompt into the token ids the model sees, exactly as gpi_pack renders them, on the job's date.

    Every prompt of a job is rendered through `encode` (and the example through
    `render_text`), inside the job's fixed template clock.
    """

    tokenizer: Any
    instruction: str
    add_generation_prompt: bool
    template_options: dict[str, Any]
    system_role: bool
    template_date: str = ""  # YYYY-MM-DD; "" renders with today's date (callers outside a job)
    uses_date: bool = False  # the template's text changes with the date

    def messages(self, prompt: str) -> list[dict[str, str]]:
        build = messages_for if self.system_role else merged_messages_for
        return build(self.instruction, prompt)

    def encode(self, prompt: str) -> list[int]:
        with fixed_template_clock(self._day()):
            return _apply(self.tokenizer, self.messages(prompt), self.add_generation_prompt, self.template_options)

    def render_text(self, prompt: str) -> str:
        """The template's text for `prompt` (what `encode` tokenizes)."""
        with fixed_template_clock(self._day()):
            return _render_text(
                self.tokenizer, self.messages(prompt), self.add_generation_prompt, self.template_options
            )

    def _day(self) -> datetime.date:
        return parse_template_date(self.template_date) if self.template_date else dates.local_today()


def token_ids_sha256(ids: Iterable[int]) -> str:
    """The checksum of a prompt's exact token ids (TOKEN_IDS_HASH), which a reader can recompute without us."""
    return hashlib.sha256(",".join(str(int(i)) for i in ids).encode("ascii")).hexdigest()


def template_text(tokenizer: Any) -> str:
    """The chat template text the tokenizer renders with (a named set of templates: the default one)."""
    getter = getattr(tokenizer, "get_chat_template", None)
    if getter is not None:
        try:
            return str(getter())
        except Exception:  # a tokenizer whose default template cannot be chosen: hash what it holds
            pass
    return str(tokenizer.chat_template)


def template_sha256(tokenizer: Any) -> str:
    return hashlib.sha256(template_text(tokenizer).encode("utf-8")).hexdigest()


def _apply(
    tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool, options: dict[str, Any]
) -> list[int]:
    # Tokenized by the template call itself (as gpi_pack does), so special tokens such as
    # BOS come from the template text and are not added a second time.
    enc = tokenizer.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=add_generation_prompt, return_dict=True, **options
    )
    ids = enc["input_ids"]
    if ids and isinstance(ids[0], list):
        ids = ids[0]
    return list(ids)


def _render_text(
    tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool, options: dict[str, Any]
) -> str:
    text = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt, **options
    )
    return text[0] if isinstance(text, list) else str(text)


def make_renderer(
    tokenizer: Any,
    task: str,
    template_style: str,
    template_options: dict[str, Any] | None = None,
    template_date: str = "",
) -> Renderer:
    """Probe the chat template once: a template that rejects the system role gets the fallback.

    The probe is rendered on two dates as well, to tell whether the template uses the date.
    """
    options = dict(template_options or {})
    if not getattr(tokenizer, "chat_template", None):
        raise ModelError(
            "This model has no chat template, so prompts cannot be formatted as gpi_pack does; "
            "choose an instruction-tuned (chat) model."
        )
    if template_date:
        parse_template_date(template_date)
    instruction = instruction_for(task)
    add_gen = template_style == "model-card"
    try:
        with fixed_template_clock(_PROBE_DATES[0]):
            _apply(tokenizer, messages_for(instruction, "probe"), add_gen, options)
        system_role = True
    except Exception as exc:  # jinja raises TemplateError (or others) for a rejected system role
        if "system" not in str(exc).lower():
            raise ModelError(f"The model's chat template failed on a test prompt: {exc}") from exc
        system_role = False
    renders = [
        Renderer(tokenizer, instruction, add_gen, options, system_role, day).render_text("probe")
        for day in _PROBE_DATES
    ]
    return Renderer(
        tokenizer, instruction, add_gen, options, system_role, template_date, uses_date=renders[0] != renders[1]
    )


@dataclass(frozen=True)
class TemplateRecord:
    """What the manifest says about how a job's prompts were rendered, so a reader can check it without us."""

    date: str  # YYYY-MM-DD given to the template
    date_given: bool  # given with the job (set by the user, or fixed in a job file); False: the day it was created
    date_used: bool  # the template's text changes with the date (rendered on two dates and compared)
    sha256: str  # of the chat template's text
    example_row: int
    example_text: str  # the template's text for the example row
    example_ids: tuple[int, ...]  # the token ids the model was given for it

    def to_manifest(self) -> dict[str, Any]:
        return {
            "date": self.date,
            "date_source": "given with the job" if self.date_given else "the day the job was created",
            "date_used_by_template": self.date_used,
            "template_sha256": self.sha256,
            "example": {
                "row": self.example_row,
                "rendered_text": self.example_text,
                "token_ids": list(self.example_ids),
                "tokens": len(self.example_ids),
                "token_ids_sha256": token_ids_sha256(self.example_ids),
            },
            "token_ids_hash": TOKEN_IDS_HASH,
        }


def template_record(
    renderer: Renderer, prompts: list[str], ids: list[tuple[int, ...]], date_given: bool, row: int = 0
) -> TemplateRecord | None:
    """The record of a job's template, with row `row` as the example; None for a job without rows."""
    if not prompts:
        return None
    return TemplateRecord(
        date=renderer.template_date,
        date_given=date_given,
        date_used=renderer.uses_date,
        sha256=template_sha256(renderer.tokenizer),
        example_row=row,
        example_text=renderer.render_text(prompts[row]),
        example_ids=tuple(ids[row]),
    )


def measure_prompt_lengths(
    settings: RunSettings, texts: Sequence[str], reader: PromptTokenizer, *, state: TaskState | None = None
) -> PromptLengths:
    """Render and count every prompt as a run of `settings` would, with the tokenizer alone (never the weights).

    `reader` is a core.model.models.PromptTokenizer (`load_tokenizer_only` gets
    one without downloading a hub model). The date is the one a new job of these
    settings would get. Stops (Cancelled) when the state asks, every 200 rows.
    """
    state = state or NullState()
    check_cancel(state)
    renderer = make_renderer(
        reader.tokenizer,
        settings.task,
        settings.template,
        settings.template_options,
        dates.job_template_date(settings.template_date),
    )
    tokens = []
    for row, text in enumerate(texts):
        if row % 200 == 0:
            check_cancel(state)
            state.set_progress(Progress(row, len(texts)))
        tokens.append(len(renderer.encode(text)))
    return PromptLengths(tuple(tokens), reader.context)
