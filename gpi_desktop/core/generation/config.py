"""The engine's settings for one run, and how its prompt-pass mode is resolved."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PREFILL_MODES = ("auto", "alone", "batched")


@dataclass
class EngineConfig:
    pooling: str
    max_new_tokens: int
    batch_size: int
    generation_options: dict[str, Any] = field(default_factory=dict)
    one_at_a_time: bool = False
    # "alone": each prompt's pass on its own, only decoding batched (see _fill_alone);
    # "batched": one padded pass for the batch's first rows (_fill_padded); "auto": see resolve_prefill.
    prefill: str = "auto"
    # The job's shared token prefix when `prompts` are only part of the job (a shard); None: of the prompts given.
    shared_prefix: tuple[int, ...] | None = None
    # Each row's numbers a function of its own tokens alone (exact.py) where the model allows it, unless a padded
    # prompt pass is asked for (prefill="batched"). A job passes its template's `shared_prefix`: one found from
    # the prompts (None) would make every row depend on the others.
    row_exact: bool = True


def resolve_prefill(config: EngineConfig, growing: bool) -> str:
    """`auto` is each prompt's pass alone wherever the model's cache allows copying it into a batch.

    Alone, step 0 is exactly a one-prompt run's numbers (in half precision a
    padded batched pass is where most batch-induced greedy flips start), and
    no work or memory goes to padding. "batched" is one padded pass over the
    batch's prompts, after the shared prefix where there is one (its cache
    expanded to the batch); a refilled row's pass always runs alone. The CPU
    measurements behind the default are in benchmarks/README.md.
    """
    if config.prefill not in PREFILL_MODES:
        raise ValueError(f"unknown prefill mode {config.prefill!r}")
    if not growing:
        return "batched"
    return "alone" if config.prefill == "auto" else config.prefill
