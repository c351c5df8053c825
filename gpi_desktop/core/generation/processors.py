"""The generation options that change greedy decoding, as transformers' logits processors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gpi_desktop.core.vocabulary.hf_lock import TRANSFORMERS_LOCK

if TYPE_CHECKING:
    from transformers import LogitsProcessorList


def effective_generation_options(model: Any, user_options: dict[str, Any]) -> dict[str, Any]:
    """The model's own non-sampling generation defaults (as `generate` would apply them), then the user's."""
    gc = getattr(model, "generation_config", None)
    options: dict[str, Any] = {}
    if gc is not None:
        defaults = {
            "repetition_penalty": 1.0,
            "no_repeat_ngram_size": 0,
            "min_new_tokens": None,
            "bad_words_ids": None,
            "suppress_tokens": None,
            "begin_suppress_tokens": None,
            "num_beams": 1,
        }
        for key, neutral in defaults.items():
            value = getattr(gc, key, neutral)
            if value is not None and value != neutral:
                options[key] = value
    options.update(user_options)
    return options


def logits_processors(options: dict[str, Any], eos_ids: Sequence[int], prompt_len: int) -> LogitsProcessorList:
    with TRANSFORMERS_LOCK:
        from transformers import (
            LogitsProcessorList,
            MinNewTokensLengthLogitsProcessor,
            NoBadWordsLogitsProcessor,
            NoRepeatNGramLogitsProcessor,
            RepetitionPenaltyLogitsProcessor,
            SuppressTokensAtBeginLogitsProcessor,
            SuppressTokensLogitsProcessor,
        )

    # Same order as transformers' generate() builds them.
    procs = LogitsProcessorList()
    if options.get("repetition_penalty", 1.0) != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(penalty=float(options["repetition_penalty"])))
    if options.get("no_repeat_ngram_size", 0):
        procs.append(NoRepeatNGramLogitsProcessor(int(options["no_repeat_ngram_size"])))
    if options.get("bad_words_ids"):
        procs.append(NoBadWordsLogitsProcessor(options["bad_words_ids"], list(eos_ids)))
    if options.get("min_new_tokens"):
        procs.append(MinNewTokensLengthLogitsProcessor(prompt_len, int(options["min_new_tokens"]), list(eos_ids)))
    if options.get("suppress_tokens"):
        procs.append(SuppressTokensLogitsProcessor(options["suppress_tokens"]))
    if options.get("begin_suppress_tokens"):
        procs.append(SuppressTokensAtBeginLogitsProcessor(options["begin_suppress_tokens"], prompt_len))
    return procs
