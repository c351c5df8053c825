"""Whether each prompt, with the new tokens after it, fits in the positions the model can read.

A prompt longer than the model's context (`max_position_embeddings`) less the
token limit runs on without any error in most architectures, and the model's
texts and states past its last position mean nothing; it is refused before the
model is loaded, naming the rows, so the user can shorten them or lower the
token limit. Pure functions: the command line and the window call the same
(the window measures with `generation.instructions.measure_prompt_lengths`,
off its thread, to mark the rows before Run).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gpi_desktop.core.files.prompts import MAX_LISTED_ROWS
from gpi_desktop.core.vocabulary.errors import SettingsError

# Where configs keep the number of positions, in the order they are looked for.
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


@dataclass(frozen=True)
class TooLong:
    row: int  # zero-based data row
    tokens: int  # the prompt's tokens as the model reads them (chat template included)


def context_length(config: Mapping[str, Any]) -> int | None:
    """The positions the model can read, from its config.json (also a multimodal model's text part); None if unsaid."""
    for part in (config, config.get("text_config") or {}):
        for key in _CONTEXT_KEYS:
            value = part.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def prompt_room(context: int, max_new_tokens: int) -> int:
    """The most tokens a prompt may have so that `max_new_tokens` still fit after it."""
    return context - max_new_tokens


def too_long_prompts(lengths: Sequence[tuple[int, int]], context: int | None, max_new_tokens: int) -> list[TooLong]:
    """The (row, tokens) pairs whose prompt leaves no room for the token limit; none when the context is unknown."""
    if context is None:
        return []
    room = prompt_room(context, max_new_tokens)
    return [TooLong(row, tokens) for row, tokens in lengths if tokens > room]


def describe_too_long(
    too_long: Sequence[TooLong], context: int, max_new_tokens: int, listed: int = MAX_LISTED_ROWS
) -> str:
    """One plain sentence: which rows (the first `listed`), how long, what the model allows, and what to do."""
    room = prompt_room(context, max_new_tokens)
    shown = ", ".join(f"{p.row} ({p.tokens:,} tokens)" for p in too_long[:listed])
    more = f" and {len(too_long) - listed:,} more" if len(too_long) > listed else ""
    one = len(too_long) == 1
    if room < 1:
        limit = (
            f"the model reads at most {context:,} tokens, which the maximum of {max_new_tokens:,} new tokens "
            "alone fills"
        )
    else:
        limit = (
            f"the model reads at most {context:,} tokens, so with up to {max_new_tokens:,} new tokens a prompt "
            f"may have at most {room:,} (chat template included)"
        )
    return (
        f"{'The prompt' if one else 'The prompts'} in data {'row' if one else 'rows'} {shown}{more} (rows "
        f"counted from 0) {'is' if one else 'are'} too long: {limit}; shorten {'it' if one else 'them'} or lower "
        "the maximum new tokens."
    )


def check_prompt_lengths(lengths: Sequence[tuple[int, int]], context: int | None, max_new_tokens: int) -> None:
    """Raise SettingsError naming every prompt that does not fit with the token limit."""
    if context is None:
        return  # an unknown context: nothing can be said too long
    too_long = too_long_prompts(lengths, context, max_new_tokens)
    if too_long:
        raise SettingsError(describe_too_long(too_long, context, max_new_tokens))


@dataclass(frozen=True)
class PromptLengths:
    """Every prompt's length in the model's tokens (chat template included), in row order, and the model's context."""

    tokens: tuple[int, ...]
    context: int | None  # None: the config does not say

    def too_long(self, max_new_tokens: int) -> list[TooLong]:
        return too_long_prompts(list(enumerate(self.tokens)), self.context, max_new_tokens)
