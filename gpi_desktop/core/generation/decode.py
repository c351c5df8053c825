"""A running batch: its first rows' prompt passes, decoding steps, finished rows refilled or dropped."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import numpy as np
import torch

from gpi_desktop.core.generation.cache import new_cache, placing_layers
from gpi_desktop.core.generation.plan import EncodedPrompt
from gpi_desktop.core.generation.pooling import OnlinePool
from gpi_desktop.core.generation.prefix import cache_layer_tensors
from gpi_desktop.core.generation.processors import logits_processors
from gpi_desktop.core.generation.session import Job
from gpi_desktop.core.vocabulary.hf_lock import TRANSFORMERS_LOCK
from gpi_desktop.core.vocabulary.progress import check_cancel
from gpi_desktop.core.vocabulary.results import STOP_EOS, STOP_LENGTH, PromptResult

if TYPE_CHECKING:
    from transformers import DynamicCache, LogitsProcessorList


@dataclass
class _Row:
    """One prompt in a slot of the running batch."""

    prompt: EncodedPrompt
    procs: LogitsProcessorList | None  # its logits processors, with generation options only
    seq: torch.Tensor | None  # prompt and generated ids, for the processors
    generated: list[int] = field(default_factory=list)


@dataclass
class _Batch:
    """The running batch: one slot per row (None once its prompt is done and no prompt is left to refill it)."""

    cache: DynamicCache
    slots: list[_Row | None]
    mask: torch.Tensor  # (B, width) 1 for the tokens each row attends to, 0 for padding; width = cache length
    positions: torch.Tensor  # (B, 1) the position of each row's last token
    pool: OnlinePool

    def running(self) -> int:
        return sum(slot is not None for slot in self.slots)


def _row(job: Job, prompt: EncodedPrompt) -> _Row:
    if not job.options:
        return _Row(prompt, None, None)
    return _Row(
        prompt,
        logits_processors(job.options, job.loaded.info.eos_token_ids, len(prompt.ids)),
        torch.tensor(prompt.ids, dtype=torch.long, device=job.device),
    )


def _left_padded(seqs: Sequence[Sequence[int]], pad: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    input_ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):  # left padding: every row's last token sits in the last column
        input_ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s) :] = 1
    return input_ids.to(device), mask.to(device)


def _own_pass(job: Job, prompt: EncodedPrompt) -> tuple[torch.Tensor, torch.Tensor, DynamicCache]:
    """One prompt's pass alone, from a copy of the shared prefix's cache where it applies: (state, logits, cache).

    Exactly a one-prompt run's numbers, and no work spent on padding; with the
    prefix only the prompt's own tokens are computed (in float32 within 1e-6
    of the whole pass: the same sums, cut in two).
    """
    with TRANSFORMERS_LOCK:
        from transformers import DynamicCache

    start = len(job.prefix.ids) if job.prefix.applies_to(prompt) else 0
    if start:
        job.prefix.compute(job.model, job.hook, job.cache_arg, job.device)
    own = job.prefix.cache_copy(job.model) if start else DynamicCache(config=job.model.config)
    ids = torch.tensor([prompt.ids[start:]], dtype=torch.long, device=job.device)
    state, logits = job.forward(
        ids,
        torch.ones((1, len(prompt.ids)), dtype=torch.long, device=job.device),
        torch.arange(start, len(prompt.ids), device=job.device)[None, :],
        own,
    )
    return state, logits, own


def _fill_alone(
    job: Job, prompts: list[EncodedPrompt]
) -> tuple[DynamicCache, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each prompt's pass on its own, its cache copied into its row of the batch cache (right-aligned)."""
    cache, _ = new_cache(job.model)
    width = max(len(p.ids) for p in prompts)
    states, logits = [], []
    for i, p in enumerate(prompts):
        if i:
            check_cancel(job.state)
        state, logit, own = _own_pass(job, p)
        states.append(state)
        logits.append(logit)
        for target, layer in zip(placing_layers(cache, len(own.layers)), own.layers):
            target.place(i, len(prompts), width, *cache_layer_tensors(layer))
        del own
    _, mask = _left_padded([p.ids for p in prompts], job.pad, job.device)
    return cache, mask, torch.cat(states), torch.cat(logits)


def _fill_padded(
    job: Job, prompts: list[EncodedPrompt]
) -> tuple[DynamicCache, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One left-padded pass over the batch: over each prompt's own tokens after the shared prefix, whose cache
    is expanded to every row first (the row reads [prefix, padding, own tokens]); the whole prompts where
    the prefix does not apply to all or the cache cannot take it."""
    cache, _ = new_cache(job.model)
    start = len(job.prefix.ids) if job.growing and all(job.prefix.applies_to(p) for p in prompts) else 0
    ids, own_mask = _left_padded([p.ids[start:] for p in prompts], job.pad, job.device)
    mask = own_mask
    if start:
        job.prefix.compute(job.model, job.hook, job.cache_arg, job.device)
        for layer, keys, values in zip(placing_layers(cache, len(job.prefix.keys)), job.prefix.keys, job.prefix.values):
            for i in range(len(prompts)):
                layer.place(i, len(prompts), start, keys, values)
        mask = torch.cat([own_mask.new_ones((len(prompts), start)), own_mask], dim=1)
    # Positions count real tokens only, so a padded row sees the positions it would see alone.
    positions = start + (own_mask.cumsum(-1) - 1).clamp(min=0)
    states, logits = job.forward(ids, mask, positions, cache)
    return cache, mask, states, logits


def _fill(job: Job, prompts: list[EncodedPrompt]) -> tuple[_Batch, torch.Tensor]:
    """The batch's first rows and their step 0: the batch, and the logits of each row's first token."""
    fill = _fill_alone if job.prefill == "alone" else _fill_padded
    cache, mask, states, logits = fill(job, prompts)
    pool = OnlinePool(job.config.pooling, len(prompts), job.loaded.info.hidden_size, job.device)
    pool.add(0, states)
    positions = torch.tensor([[len(p.ids) - 1] for p in prompts], dtype=torch.long, device=job.device)
    return _Batch(cache, [_row(job, p) for p in prompts], mask, positions, pool), logits


def _choose(job: Job, rows: Sequence[_Row | None], logits: torch.Tensor) -> torch.Tensor:
    """Each row's next token (greedy, after its logits processors)."""
    for i, row in enumerate(rows):
        if row is not None and row.procs is not None and row.seq is not None:  # seq is kept for the processors
            # A long tensor: transformers annotates it as torch.LongTensor, which torch's own functions never return.
            logits[i : i + 1] = row.procs(cast("torch.LongTensor", row.seq[None, :]), logits[i : i + 1])
    return logits.argmax(dim=-1)


def _advance(job: Job, batch: _Batch, i: int, token: int, is_eos: bool, token_tensor: torch.Tensor) -> bool:
    """Row i generated `token`; if that ends its text, deliver it and free the slot. Whether it ended."""
    row = batch.slots[i]
    if row is None:  # pragma: no cover - callers pass running rows only
        raise RuntimeError(f"slot {i} holds no prompt")
    row.generated.append(token)
    if row.seq is not None:
        row.seq = torch.cat([row.seq, token_tensor])
    if not is_eos and len(row.generated) < job.config.max_new_tokens:
        return False
    vector, from_step0 = batch.pool.result(i)
    job.deliver(
        PromptResult(
            row=row.prompt.row,
            text=job.loaded.tokenizer.decode(row.generated, skip_special_tokens=True),
            vector=vector.cpu().numpy().astype(np.float32, copy=True),
            n_tokens=len(row.generated),
            stop_reason=STOP_EOS if is_eos else STOP_LENGTH,
            pooled_from_step0=from_step0 and job.config.pooling != "last",
            prompt_tokens=len(row.prompt.ids),
        )
    )
    batch.slots[i] = None
    return True


def _take_tokens(job: Job, batch: _Batch, tokens: torch.Tensor) -> None:
    """Every running row takes its next token (one transfer to the host per step)."""
    host = torch.stack([tokens, torch.isin(tokens, job.eos).long()]).tolist()
    job.meter.step(batch.running())
    for i, (token, is_eos) in enumerate(zip(*host)):
        if batch.slots[i] is not None:
            _advance(job, batch, i, token, bool(is_eos), tokens[i : i + 1])


def _refill(job: Job, batch: _Batch, tokens: torch.Tensor, waiting: deque[EncodedPrompt]) -> None:
    """Free slots take the wave's next prompts: each one's pass alone, its step 0 taken, its cache placed."""
    width = batch.mask.shape[1]
    for i in range(len(batch.slots)):
        while batch.slots[i] is None and waiting:
            check_cancel(job.state)
            prompt = waiting.popleft()
            state, logits, own = _own_pass(job, prompt)
            batch.slots[i] = _row(job, prompt)
            batch.pool.start(i, state[0])
            token = _choose(job, [batch.slots[i]], logits)
            tokens[i] = token[0]
            host_token, is_eos = int(token[0]), bool(torch.isin(token, job.eos)[0])
            job.meter.step(1)
            if _advance(job, batch, i, host_token, is_eos, tokens[i : i + 1]):
                continue  # done at its first token: the slot takes the next prompt
            n = len(prompt.ids)
            if n > width:  # pragma: no cover - waves run longest first, and the width only grows
                raise RuntimeError("a refilled prompt is longer than the batch's cache")
            for target, layer in zip(placing_layers(batch.cache, len(own.layers)), own.layers):
                target.place(i, len(batch.slots), width, *cache_layer_tensors(layer))
            batch.mask[i] = 0
            batch.mask[i, width - n :] = 1
            batch.positions[i, 0] = n - 1


def _compact_now(dead: int, rows: int) -> bool:
    # Dropping finished rows copies the whole cache once; keeping them costs a
    # little work per step. Drop them once they are an eighth of the batch.
    return dead > 0 and dead * 8 >= rows


def _compact(job: Job, batch: _Batch, tokens: torch.Tensor) -> torch.Tensor:
    """Drop the finished rows from the batch and its cache; the running rows' next tokens."""
    keep_idx = [i for i, slot in enumerate(batch.slots) if slot is not None]
    keep = torch.tensor(keep_idx, device=job.device)
    batch.cache.batch_select_indices(keep)
    batch.pool.select(keep)
    batch.mask = batch.mask.index_select(0, keep)
    batch.positions = batch.positions.index_select(0, keep)
    batch.slots = [batch.slots[i] for i in keep_idx]
    return tokens.index_select(0, keep)


def _step(job: Job, batch: _Batch, tokens: torch.Tensor, step: int) -> torch.Tensor:
    """One decoding step of the whole batch: pools its states, returns its logits."""
    batch.mask = torch.cat([batch.mask, batch.mask.new_ones((batch.mask.shape[0], 1))], dim=1)
    batch.positions = batch.positions + 1
    # Without padding no mask is needed (a single token attends to the whole cache): that spares
    # building one per step and lets attention use its fastest kernel, as generate() does alone.
    padded = bool((batch.mask == 0).any())
    states, logits = job.forward(tokens[:, None], batch.mask if padded else None, batch.positions, batch.cache)
    batch.pool.add(step, states)  # a freed slot's states are pooled too, and never read
    return logits


def decode(job: Job, first: list[EncodedPrompt], waiting: deque[EncodedPrompt]) -> None:
    """Run `first` as one batch; a row that finishes takes the next of `waiting` until none is left."""
    batch, logits = _fill(job, first)
    step = 0
    while True:
        tokens = _choose(job, batch.slots, logits)
        _take_tokens(job, batch, tokens)
        _refill(job, batch, tokens, waiting)
        if not batch.running():
            return
        job.meter.running(lambda: [(r.prompt.row, r.generated) for r in batch.slots if r is not None])
        check_cancel(job.state)
        dead = len(batch.slots) - batch.running()
        if _compact_now(dead, len(batch.slots)):
            tokens = _compact(job, batch, tokens)
        step += 1
        logits = _step(job, batch, tokens, step)
