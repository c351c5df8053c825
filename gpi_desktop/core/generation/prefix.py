"""The token prefix every prompt of a job shares, computed once and copied into each prompt's cache."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from gpi_desktop.core.generation.plan import EncodedPrompt
from gpi_desktop.core.vocabulary.hf_lock import TRANSFORMERS_LOCK

if TYPE_CHECKING:
    from transformers import DynamicCache

    from gpi_desktop.core.generation.forward import LastStateHook


@dataclass
class SharedPrefix:
    """The job's common leading tokens and, once computed, their key/value cache (one per layer, batch 1).

    A function of the job's prompts alone (all of them, finished or not), so a
    resumed run starts every prompt's pass from the same prefix as an
    uninterrupted one.
    """

    ids: tuple[int, ...]
    keys: list[torch.Tensor] = field(default_factory=list)
    values: list[torch.Tensor] = field(default_factory=list)

    def applies_to(self, prompt: EncodedPrompt) -> bool:
        # A prompt that is all prefix has no token of its own to compute step 0 from.
        # A prefix given with the job (the template's part) need not start every prompt: the tokenizer can merge
        # across its end; such a prompt gets its whole pass.
        n = len(self.ids)
        return bool(self.ids) and len(prompt.ids) > n and prompt.ids[:n] == self.ids

    def compute(self, model: Any, hook: LastStateHook, cache_arg: str, device: torch.device) -> None:
        with TRANSFORMERS_LOCK:
            from transformers import DynamicCache

        if self.keys or not self.ids:
            return
        ids = torch.tensor([self.ids], dtype=torch.long, device=device)
        own = DynamicCache(config=model.config)
        model(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            position_ids=torch.arange(ids.shape[1], device=device)[None, :],
            use_cache=True,
            logits_to_keep=1,
            **{cache_arg: own},
        )
        hook.take()  # the prefix's last state is no prompt's step 0
        filled = [cache_layer_tensors(layer) for layer in own.layers]
        self.keys = [keys for keys, _ in filled]
        self.values = [values for _, values in filled]

    def cache_copy(self, model: Any) -> DynamicCache:
        """A one-prompt cache holding the prefix; the prompt's pass appends to it (DynamicLayer copies on update)."""
        with TRANSFORMERS_LOCK:
            from transformers import DynamicCache

        own = DynamicCache(config=model.config)
        for index, (keys, values) in enumerate(zip(self.keys, self.values)):
            own.update(keys, values, index)
        return own


def cache_layer_tensors(layer: object) -> tuple[torch.Tensor, torch.Tensor]:
    """A full-attention layer's keys and values (a shared prefix is only computed for such caches)."""
    keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
    if not isinstance(keys, torch.Tensor) or not isinstance(values, torch.Tensor):  # pragma: no cover
        raise RuntimeError(f"a shared prefix needs full-attention cache layers, not {type(layer).__name__}")
    return keys, values


def shared_prefix(prompts: Sequence[EncodedPrompt]) -> SharedPrefix:
    """The longest token prefix all prompts share (exact: compared after tokenization); empty for one prompt."""
    if len(prompts) < 2:
        return SharedPrefix(())
    first = prompts[0].ids
    length = min(len(p.ids) for p in prompts)
    for p in prompts[1:]:
        n = 0
        while n < length and p.ids[n] == first[n]:
            n += 1
        length = n
        if not length:
            break
    return SharedPrefix(first[:length])


# Probe texts that differ from their first character: what their renderings share is the template's own part.
_PROBES = ("a", "Z", "7")


def template_prefix(encode: Callable[[str], Sequence[int]]) -> tuple[int, ...]:
    """The token prefix a job's prompts share by the template alone (`encode`: a Renderer's), whatever the prompts.

    The job's prefix, for every row: a prefix found from the job's own
    prompts would change with them (one more row, a shard), and with it the
    numbers of every row, since the prefix's pass and each prompt's pass
    after it sum in other orders than one whole pass.
    """
    return shared_prefix([EncodedPrompt(i, tuple(encode(text))) for i, text in enumerate(_PROBES)]).ids
