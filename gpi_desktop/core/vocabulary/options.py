"""Advanced options, as gpi_pack's `tokenizer_config` and `model_config` give them.

Options pass through to the chat template and to generation, except those that
would break the contract (greedy decoding, one vector per prompt, the token
limit set in its own field): those are refused in plain words, never silently
overridden.
"""

from __future__ import annotations

import json
from typing import Any

from gpi_desktop.core.vocabulary.errors import SettingsError

# Keys that decide sampling or what generate returns; the contract fixes them.
_FORBIDDEN_GENERATION = {
    "do_sample": "decoding is always greedy (no sampling), as in gpi_pack",
    "temperature": "decoding is always greedy, so temperature has no meaning",
    "top_p": "decoding is always greedy, so top_p has no meaning",
    "top_k": "decoding is always greedy, so top_k has no meaning",
    "typical_p": "decoding is always greedy, so typical_p has no meaning",
    "min_p": "decoding is always greedy, so min_p has no meaning",
    "epsilon_cutoff": "decoding is always greedy, so epsilon_cutoff has no meaning",
    "eta_cutoff": "decoding is always greedy, so eta_cutoff has no meaning",
    "penalty_alpha": "contrastive search is not greedy decoding",
    "num_return_sequences": "each prompt gives exactly one text and one vector",
    "output_hidden_states": "the program itself collects the hidden states",
    "output_scores": "the program itself decides what generation returns",
    "output_logits": "the program itself decides what generation returns",
    "output_attentions": "the program itself decides what generation returns",
    "return_dict_in_generate": "the program itself decides what generation returns",
    "max_new_tokens": "use the 'maximum new tokens' setting instead",
    "max_length": "use the 'maximum new tokens' setting instead",
    "max_time": "a time limit would make results depend on the machine's speed",
    "streamer": "the program itself reports progress",
    "assistant_model": "assisted generation is not supported",
    "prompt_lookup_num_tokens": "assisted generation is not supported",
    "num_beam_groups": "group beam search is not supported",
    "diversity_penalty": "group beam search is not supported",
    "use_cache": "the program manages the cache itself",
    "pad_token_id": "padding is set by the program",
}

# Options the batched engine applies itself, through transformers' logits processors.
BATCHED_GENERATION_OPTIONS = {
    "repetition_penalty",
    "no_repeat_ngram_size",
    "min_new_tokens",
    "bad_words_ids",
    "suppress_tokens",
    "begin_suppress_tokens",
}

_FORBIDDEN_TEMPLATE = {
    "tokenize": "the program tokenizes the rendered template itself",
    "return_tensors": "the program decides the tensor format",
    "return_dict": "the program decides the tensor format",
    "add_generation_prompt": "use the 'chat formatting' setting (gpi_pack-compatible or model-card)",
    "conversation": "the messages are built from the instruction and the prompt",
    "padding": "padding is set by the program",
    "truncation": "prompts are never cut",
    "max_length": "prompts are never cut",
}


def parse_option(text: str) -> tuple[str, Any]:
    """Parse one KEY=VALUE; the value is JSON where it parses, else the plain string."""
    if "=" not in text:
        raise SettingsError(f"The option '{text}' must be written KEY=VALUE, for example repetition_penalty=1.1.")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key.isidentifier():
        raise SettingsError(f"'{key}' is not a valid option name; write KEY=VALUE, for example num_beams=2.")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


def parse_options(items: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        key, value = parse_option(item)
        out[key] = value
    return out


def check_generation_options(options: dict[str, Any]) -> None:
    for key in options:
        if key in _FORBIDDEN_GENERATION:
            raise SettingsError(f"The generation option '{key}' cannot be used: {_FORBIDDEN_GENERATION[key]}.")
    beams = options.get("num_beams", 1)
    if isinstance(beams, bool) or not isinstance(beams, int) or beams < 1:
        raise SettingsError("num_beams must be a whole number of at least 1.")


def check_template_options(options: dict[str, Any]) -> None:
    for key in options:
        if key in _FORBIDDEN_TEMPLATE:
            raise SettingsError(f"The template option '{key}' cannot be used: {_FORBIDDEN_TEMPLATE[key]}.")


def needs_one_at_a_time(options: dict[str, Any]) -> bool:
    """True when an option asks for something only transformers' own generate() does (beam search...)."""
    return any(k not in BATCHED_GENERATION_OPTIONS for k in options if not (k == "num_beams" and options[k] == 1))
