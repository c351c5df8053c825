"""Batched greedy generation with online pooling of the last layer's states.

Why a greedy loop of our own over the KV cache rather than transformers'
`generate(output_hidden_states=True)`: `generate` keeps every layer's state of
every step until the end (about 270 MB per 1000-token prompt for an 8B model,
8.6 GB at batch 32), and keeps finished rows in the batch until the longest
row ends. Here each forward pass runs the full causal-LM module (so any
head-side details, such as logit soft-capping, stay the model's own) with
`logits_to_keep=1`, while a forward hook on the decoder takes only the last
position's final state; each running row keeps one (H,) pooling accumulator;
finished rows leave the batch and the cache (at once in small batches, in
groups of an eighth of the batch in large ones, see `_compact_now`).

Speed (see benchmarks/README.md): the token prefix that every prompt of the
job shares (the chat template's start, the system turn with the instruction,
the user header: often most of each prompt) is computed once per job and
each prompt's pass starts from a copy of its key/value cache, computing only
the prompt's own tokens (`SharedPrefix`); each prompt's pass runs alone and
its cache is copied into the batch (`_prefill_alone`), the cache grows in chunks rather
than being concatenated at every step (`GrowingLayer`), and the automatic
batch size follows free memory and the cache size per token.

Batches are planned from all prompts sorted by length (little padding), and
the plan depends only on the prompts and the batch size, so a resumed run
runs every unfinished prompt in the same batch as an uninterrupted run would
(a batch some of whose rows were already finished is run whole again, its
finished rows discarded), which keeps a resumed run's files identical.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from gpi_desktop.core.vocabulary.errors import Cancelled
from gpi_desktop.core.model.models import LoadedModel
from gpi_desktop.core.vocabulary.options import needs_one_at_a_time
from gpi_desktop.core.generation.pooling import OnlinePool, pool_steps
from gpi_desktop.core.vocabulary.progress import Progress, TaskState, estimate_seconds_left
from gpi_desktop.core.vocabulary.results import STOP_EOS, STOP_LENGTH, PromptResult

log = logging.getLogger(__name__)

CPU_AUTO_BATCH = 32
MAX_AUTO_BATCH = 256
PREFILL_MODES = ("auto", "alone", "batched")


@dataclass(frozen=True)
class EncodedPrompt:
    row: int
    ids: tuple[int, ...]


@dataclass
class EngineConfig:
    pooling: str
    max_new_tokens: int
    batch_size: int
    generation_options: dict = field(default_factory=dict)
    one_at_a_time: bool = False
    # "alone": each prompt's pass on its own, only decoding batched (see _prefill_alone);
    # "batched": one padded pass for the batch; "auto": alone where the model's cache allows it.
    prefill: str = "auto"
    # The job's shared token prefix when `prompts` are only part of the job (a shard); None: of the prompts given.
    shared_prefix: tuple[int, ...] | None = None


class _Meter:
    """Progress over the whole run: prompts done (of total), generated tokens per second, time left."""

    def __init__(self, state: TaskState, total: int, done: int, done_tokens: int = 0) -> None:
        self.state, self.total, self.done = state, total, done
        self.tokens = 0  # of the prompts finished in this session
        self.generated = 0  # every token made in this session, those of unfinished prompts included
        self.job_tokens = done_tokens  # of every finished prompt of the job
        self.start = time.perf_counter()

    def step(self, tokens: int) -> None:
        self.generated += tokens

    def finished(self, result: PromptResult) -> None:
        self.done += 1
        self.tokens += result.n_tokens
        self.job_tokens += result.n_tokens
        generated = max(self.generated, self.tokens)  # one-at-a-time runs count whole prompts only
        elapsed = time.perf_counter() - self.start
        left = estimate_seconds_left(elapsed=elapsed, generated=generated, in_flight=generated - self.tokens,
                                     done_rows=self.done, done_tokens=self.job_tokens, total_rows=self.total)
        self.state.set_partial_result(result)
        self.state.set_progress(Progress(self.done, self.total, generated / elapsed if elapsed > 0 else 0.0, elapsed,
                                         estimate=left, estimated=True))


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
        return bool(self.ids) and len(prompt.ids) > len(self.ids)

    def compute(self, model, hook, cache_arg: str, device) -> None:
        from transformers import DynamicCache

        if self.keys or not self.ids:
            return
        ids = torch.tensor([self.ids], dtype=torch.long, device=device)
        own = DynamicCache(config=model.config)
        model(input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=torch.arange(ids.shape[1], device=device)[None, :],
              use_cache=True, logits_to_keep=1, **{cache_arg: own})
        hook.take()  # the prefix's last state is no prompt's step 0
        self.keys = [layer.keys for layer in own.layers]
        self.values = [layer.values for layer in own.layers]

    def cache_copy(self, model):
        """A one-prompt cache holding the prefix; the prompt's pass appends to it (DynamicLayer copies on update)."""
        from transformers import DynamicCache

        own = DynamicCache(config=model.config)
        for index, (keys, values) in enumerate(zip(self.keys, self.values)):
            own.update(keys, values, index)
        return own


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


def plan_batches(prompts: Sequence[EncodedPrompt], batch_size: int) -> list[list[EncodedPrompt]]:
    """Longest prompts first (an out-of-memory error shows at once), equal lengths together."""
    ordered = sorted(prompts, key=lambda p: (-len(p.ids), p.row))
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]


def effective_generation_options(model, user_options: dict) -> dict:
    """The model's own non-sampling generation defaults (as `generate` would apply them), then the user's."""
    gc = getattr(model, "generation_config", None)
    options: dict = {}
    if gc is not None:
        defaults = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "min_new_tokens": None,
                    "bad_words_ids": None, "suppress_tokens": None, "begin_suppress_tokens": None, "num_beams": 1}
        for key, neutral in defaults.items():
            value = getattr(gc, key, neutral)
            if value is not None and value != neutral:
                options[key] = value
    options.update(user_options)
    return options


def _logits_processors(options: dict, eos_ids: Sequence[int], prompt_len: int):
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


class _LastStateHook:
    """Keeps only the last position's final-layer state of each forward pass."""

    def __init__(self, decoder) -> None:
        self.state: torch.Tensor | None = None
        self.handle = decoder.register_forward_hook(self._grab)

    def _grab(self, module, args, output) -> None:
        hidden = output[0] if isinstance(output, (tuple, list)) else output.last_hidden_state
        self.state = hidden[:, -1, :].detach()

    def take(self) -> torch.Tensor:
        state, self.state = self.state, None
        if state is None:  # pragma: no cover - a model whose decoder did not run
            raise RuntimeError("the decoder hook saw no forward pass")
        return state

    def remove(self) -> None:
        self.handle.remove()


def _input_device(model) -> torch.device:
    return model.get_input_embeddings().weight.device


def _pad_id(loaded: LoadedModel) -> int:
    tok = loaded.tokenizer
    for candidate in (tok.pad_token_id, getattr(loaded.model.generation_config, "pad_token_id", None), tok.eos_token_id):
        if candidate is not None:
            return int(candidate if not isinstance(candidate, (list, tuple)) else candidate[0])
    return int(loaded.info.eos_token_ids[0])


def is_out_of_memory(exc: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", ())
    text = str(exc).lower()
    # The CPU allocator says "can't allocate memory" where CUDA says "out of memory".
    return isinstance(exc, oom) or (isinstance(exc, RuntimeError) and ("out of memory" in text
                                                                      or "can't allocate memory" in text))


def run_engine(
    loaded: LoadedModel,
    prompts: Sequence[EncodedPrompt],
    config: EngineConfig,
    state: TaskState,
    *,
    finished_rows: Iterable[int] = (),
    on_result: Callable[[PromptResult], None] = lambda r: None,
    finished_tokens: int = 0,
) -> None:
    """Generate for every prompt not in `finished_rows`; each result goes to `on_result` as soon as it is done.

    `finished_tokens`: the tokens of the finished rows (an earlier session's), for the time-left estimate.
    """
    finished = set(finished_rows)
    todo_total = len(prompts)
    meter = _Meter(state, todo_total, sum(1 for p in prompts if p.row in finished), finished_tokens)

    def deliver(result: PromptResult) -> None:
        on_result(result)
        meter.finished(result)

    options = effective_generation_options(loaded.model, config.generation_options)
    if config.one_at_a_time or needs_one_at_a_time(options):
        for prompt in prompts:
            if prompt.row in finished:
                continue
            _check(state)
            deliver(_reference_one(loaded, prompt, config, options))
        return

    hook = _LastStateHook(loaded.model.base_model)
    # Only where each prompt's pass runs alone from a cache that can be copied (full attention).
    prefix = SharedPrefix(())
    if resolve_prefill(config, _new_cache(loaded.model)[1]) == "alone":
        prefix = shared_prefix(prompts) if config.shared_prefix is None else SharedPrefix(config.shared_prefix)
    try:
        with torch.inference_mode():
            for batch in plan_batches(prompts, config.batch_size):
                if all(p.row in finished for p in batch):
                    continue
                _check(state)
                _run_with_oom_retry(loaded, hook, batch, config, options, state, finished, deliver, prefix,
                                    meter.step)
    finally:
        hook.remove()


def _check(state: TaskState) -> None:
    if state.is_interruption_requested():
        raise Cancelled()


def _run_with_oom_retry(loaded, hook, batch, config, options, state, finished, deliver, prefix, count) -> None:
    """Out of GPU memory is not the end: halve the batch and retry it, down to one prompt."""
    done_here: set[int] = set()

    def keep(result: PromptResult) -> None:
        done_here.add(result.row)
        if result.row not in finished:
            deliver(result)

    try:
        _run_batch(loaded, hook, batch, config, options, state, keep, prefix, count)
        return
    except Exception as exc:
        if not is_out_of_memory(exc) or len(batch) == 1:
            raise
    # Retried only here, after the except block: until then the exception's traceback keeps
    # the failed attempt's frames, and with them its whole key/value cache, alive.
    hook.state = None
    _release_memory()
    rest = [p for p in batch if p.row not in done_here and p.row not in finished]
    half = max(1, len(batch) // 2)
    where = "GPU" if _input_device(loaded.model).type in ("cuda", "mps") else "computer"
    state.set_status(
        f"The {where} ran out of memory with {len(batch)} prompts at once; retrying them {half} at a time "
        "(finished prompts are kept; this costs some speed, not results)."
    )
    log.warning("out of memory at batch %d; retrying at %d", len(batch), half)
    for i in range(0, len(rest), half):
        _run_with_oom_retry(loaded, hook, rest[i : i + half], config, options, state, finished, deliver, prefix,
                            count)


def _release_memory() -> None:
    import gc

    gc.collect()  # model outputs can sit in reference cycles
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if torch.backends.mps.is_available():
        torch.mps.empty_cache()  # MPS keeps freed blocks cached as CUDA does; the retry needs them back


def _cache_argument(model) -> str:
    # transformers renamed `past_key_values` to `cache` in the forward signature (5.x deprecation).
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


CACHE_CHUNK = 128


def _growing_layer_class():
    """transformers' DynamicLayer, growing in chunks (made on first use: transformers is imported lazily)."""
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        """A full-attention cache layer whose buffers have room for CACHE_CHUNK more tokens.

        DynamicLayer concatenates the whole cache with each new token, so every
        decoding step copies the cache on top of the attention reading it: on
        a GPU, where a step is bound by memory traffic, that triples the
        cache's cost. Here `keys`/`values` are views of the filled part of
        buffers that are copied only when they grow or when rows leave.
        """

        def __init__(self) -> None:
            super().__init__()
            self.length = 0
            self.buf_k: torch.Tensor | None = None
            self.buf_v: torch.Tensor | None = None

        def lazy_initialization(self, key_states, value_states) -> None:
            self.device = key_states.device
            self.is_initialized = True

        def _view(self) -> None:
            self.keys = self.buf_k[:, :, : self.length, :]
            self.values = self.buf_v[:, :, : self.length, :]

        def _reserve(self, needed: int, like_k: torch.Tensor, like_v: torch.Tensor, batch: int) -> None:
            if self.buf_k is not None and self.buf_k.shape[2] >= needed:
                return
            capacity = needed + CACHE_CHUNK
            k = like_k.new_zeros((batch, like_k.shape[1], capacity, like_k.shape[3]))
            v = like_v.new_zeros((batch, like_v.shape[1], capacity, like_v.shape[3]))
            if self.length:
                k[:, :, : self.length].copy_(self.buf_k[:, :, : self.length])
                v[:, :, : self.length].copy_(self.buf_v[:, :, : self.length])
            self.buf_k, self.buf_v = k, v

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            n = key_states.shape[2]
            self._reserve(self.length + n, key_states, value_states, key_states.shape[0])
            self.buf_k[:, :, self.length : self.length + n].copy_(key_states)
            self.buf_v[:, :, self.length : self.length + n].copy_(value_states)
            self.length += n
            self._view()
            return self.keys, self.values

        def place(self, row: int, batch: int, width: int, keys: torch.Tensor, values: torch.Tensor) -> None:
            """Put one prompt's own cache (1, heads, L, dim) into row `row`, right-aligned at `width` (left padding)."""
            if not self.is_initialized:
                self.lazy_initialization(keys, values)
                self._reserve(width, keys, values, batch)  # zeros: padding never holds garbage such as NaN
                self.length = width
            n = keys.shape[2]
            self.buf_k[row : row + 1, :, width - n : width].copy_(keys)
            self.buf_v[row : row + 1, :, width - n : width].copy_(values)
            self._view()

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            if self.buf_k is None:
                return
            self.buf_k = self.buf_k[:, :, : self.length + CACHE_CHUNK // 4].index_select(0, indices.to(self.buf_k.device))
            self.buf_v = self.buf_v[:, :, : self.length + CACHE_CHUNK // 4].index_select(0, indices.to(self.buf_v.device))
            self._view()

        def reset(self) -> None:
            self.buf_k = self.buf_v = None
            self.length = 0
            super().reset()

    return GrowingLayer


_GROWING = None


def _new_cache(model):
    """A cache for one batch, and whether its layers are our growing full-attention layers.

    Models with other layer kinds (sliding windows, linear attention, ...) keep
    transformers' own dynamic cache and the batched prompt pass.
    """
    global _GROWING
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    if _GROWING is None:
        _GROWING = _growing_layer_class()
    cache = DynamicCache(config=model.config)
    if cache.layers and all(type(layer) is DynamicLayer for layer in cache.layers):
        cache.layers = [_GROWING() for _ in cache.layers]
        return cache, True
    if not cache.layers and getattr(cache, "layer_class_to_replicate", None) is DynamicLayer:
        cache.layer_class_to_replicate = _GROWING
        return cache, True
    return cache, False


def resolve_prefill(config: EngineConfig, growing: bool) -> str:
    """`auto` is each prompt's pass alone wherever the model's cache allows copying it into a batch.

    Alone, step 0 is exactly a one-prompt run's numbers (in half precision a
    padded batched pass is where most batch-induced greedy flips start), and
    no work or memory goes to padding: on the CPU benchmark it was about 15%
    faster than the padded pass and used a quarter of the memory
    (benchmarks/README.md).
    """
    if config.prefill not in PREFILL_MODES:
        raise ValueError(f"unknown prefill mode {config.prefill!r}")
    if not growing:
        return "batched"
    return "alone" if config.prefill == "auto" else config.prefill


@dataclass
class _Prefilled:
    states: torch.Tensor  # (B, H): step 0 of every row
    logits: torch.Tensor  # (B, V) float32
    mask: torch.Tensor  # (B, width) 1 for real tokens, 0 for left padding
    positions: torch.Tensor  # (B, width)


def _left_padded(batch, pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p.ids) for p in batch)
    input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, p in enumerate(batch):  # left padding: every row's last token sits in the last column
        input_ids[i, width - len(p.ids) :] = torch.tensor(p.ids, dtype=torch.long)
        mask[i, width - len(p.ids) :] = 1
    return input_ids.to(device), mask.to(device)


def _prefill_batched(model, hook, batch, cache, cache_arg, pad, device) -> _Prefilled:
    input_ids, mask = _left_padded(batch, pad, device)
    # Positions count real tokens only, so a padded row sees the positions it would see alone.
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1,
                **{cache_arg: cache})
    return _Prefilled(hook.take().to(device), out.logits[:, -1, :].float().to(device), mask, positions)


def _prefill_alone(model, hook, batch, cache, cache_arg, pad, device, state, prefix: SharedPrefix) -> _Prefilled:
    """Each prompt's pass on its own, exactly as a one-prompt run does it; the batch shares only the decoding.

    Batch-induced differences in half precision come mostly from the prompt
    pass (matrix tile shapes, and the attention kernel changing once a
    padding mask appears), so step 0 here is the one-prompt run's own
    numbers, and no work is spent on padding. The prompt's cache is then
    copied into its row of the batch cache. With a shared prefix the pass
    starts from a copy of the prefix's cache and computes only the prompt's
    own tokens (in float32 within 1e-6 of the whole pass: the same sums, cut
    in two).
    """
    from transformers import DynamicCache

    width = max(len(p.ids) for p in batch)
    states, logits = [], []
    if any(prefix.applies_to(p) for p in batch):
        prefix.compute(model, hook, cache_arg, device)
    for i, p in enumerate(batch):
        if i:
            _check(state)
        start = len(prefix.ids) if prefix.applies_to(p) else 0
        own = prefix.cache_copy(model) if start else DynamicCache(config=model.config)
        ids = torch.tensor([p.ids[start:]], dtype=torch.long, device=device)
        out = model(input_ids=ids, attention_mask=torch.ones((1, len(p.ids)), dtype=torch.long, device=device),
                    position_ids=torch.arange(start, len(p.ids), device=device)[None, :], use_cache=True,
                    logits_to_keep=1, **{cache_arg: own})
        states.append(hook.take().to(device))
        logits.append(out.logits[:, -1, :].float().to(device))
        if not cache.layers:  # a cache that makes its layers on first use
            cache.layers = [cache.layer_class_to_replicate() for _ in own.layers]
        for target, layer in zip(cache.layers, own.layers):
            target.place(i, len(batch), width, layer.keys, layer.values)
        del own, out
    _, mask = _left_padded(batch, pad, device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return _Prefilled(torch.cat(states), torch.cat(logits), mask, positions)


def _compact_now(dead: int, rows: int) -> bool:
    # Dropping finished rows copies the whole cache once; keeping them costs a
    # little work per step. Drop them once they are an eighth of the batch.
    return dead > 0 and dead * 8 >= rows


def _run_batch(loaded, hook, batch, config, options, state, deliver, prefix: SharedPrefix,
               count=lambda tokens: None) -> None:
    """`count(n)`: n more tokens were generated (one step of the prompts still running), for the estimate."""
    model = loaded.model
    device = _input_device(model)
    eos = torch.tensor(loaded.info.eos_token_ids, device=device)
    eos_set = set(loaded.info.eos_token_ids)
    pad = _pad_id(loaded)
    cache, growing = _new_cache(model)
    cache_arg = _cache_argument(model)
    if resolve_prefill(config, growing) == "alone":
        first = _prefill_alone(model, hook, batch, cache, cache_arg, pad, device, state, prefix)
    else:
        first = _prefill_batched(model, hook, batch, cache, cache_arg, pad, device)
    mask, positions, logits, states = first.mask, first.positions, first.logits, first.states
    padded = bool((mask == 0).any())

    B = len(batch)
    rows = list(batch)
    running = [True] * B
    generated: list[list[int]] = [[] for _ in rows]
    procs = [_logits_processors(options, loaded.info.eos_token_ids, len(p.ids)) for p in rows] if options else None
    seqs = [torch.tensor(p.ids, dtype=torch.long, device=device) for p in rows] if options else None
    pool = OnlinePool(config.pooling, B, loaded.info.hidden_size, device)
    step = 0
    while True:
        pool.add(step, states)
        if procs is not None:
            for i in range(len(rows)):
                if running[i]:
                    logits[i : i + 1] = procs[i](seqs[i][None, :], logits[i : i + 1])
        next_tokens = logits.argmax(dim=-1)
        step += 1
        at_limit = step >= config.max_new_tokens
        # One transfer to the host per step: the tokens and whether each is an end of sequence.
        host = torch.stack([next_tokens, torch.isin(next_tokens, eos).long()]).tolist()
        count(running.count(True))
        for i, (token, is_eos) in enumerate(zip(*host)):
            if not running[i]:
                continue
            generated[i].append(token)
            if seqs is not None:
                seqs[i] = torch.cat([seqs[i], next_tokens[i : i + 1]])
            if is_eos or at_limit:
                running[i] = False
                vector, from_step0 = pool.result(i)
                deliver(PromptResult(
                    row=rows[i].row,
                    text=loaded.tokenizer.decode(generated[i], skip_special_tokens=True),
                    vector=vector.cpu().numpy().astype(np.float32, copy=True),
                    n_tokens=len(generated[i]),
                    stop_reason=STOP_EOS if token in eos_set else STOP_LENGTH,
                    pooled_from_step0=from_step0 and config.pooling != "last",
                    prompt_tokens=len(rows[i].ids),
                ))
        if not any(running):
            return
        _check(state)
        if _compact_now(running.count(False), len(rows)):
            keep_idx = [i for i, r in enumerate(running) if r]
            keep = torch.tensor(keep_idx, device=device)
            cache.batch_select_indices(keep)
            pool.select(keep)
            mask = mask.index_select(0, keep)
            positions = positions.index_select(0, keep)
            next_tokens = next_tokens.index_select(0, keep)
            rows = [rows[i] for i in keep_idx]
            generated = [generated[i] for i in keep_idx]
            running = [True] * len(rows)
            padded = bool((mask == 0).any())
            if seqs is not None:
                seqs = [seqs[i] for i in keep_idx]
                procs = [procs[i] for i in keep_idx]
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
        positions = positions[:, -1:] + 1
        # Without padding no mask is needed (a single token attends to the whole cache): that spares
        # building one per step and lets attention use its fastest kernel, as generate() does alone.
        out = model(input_ids=next_tokens[:, None], attention_mask=mask if padded else None, position_ids=positions,
                    use_cache=True, logits_to_keep=1, **{cache_arg: cache})
        # Under a multi-GPU device map the last layers (and so states and logits) sit on another GPU.
        states = hook.take().to(device)
        logits = out.logits[:, -1, :].float().to(device)


def _reference_one(loaded: LoadedModel, prompt: EncodedPrompt, config: EngineConfig, options: dict) -> PromptResult:
    """gpi_pack's own procedure: transformers' generate() with every hidden state kept, one prompt at a time."""
    model, tok = loaded.model, loaded.tokenizer
    device = _input_device(model)
    input_ids = torch.tensor([prompt.ids], dtype=torch.long, device=device)
    kwargs = dict(options)
    kwargs.update(max_new_tokens=config.max_new_tokens, output_hidden_states=True, return_dict_in_generate=True,
                  do_sample=False, pad_token_id=tok.eos_token_id if tok.eos_token_id is not None else _pad_id(loaded),
                  temperature=None, top_p=None, top_k=None)
    with torch.inference_mode():
        out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), **kwargs)
    beams = getattr(out, "beam_indices", None)
    steps = []
    for s, layers in enumerate(out.hidden_states):
        beam = 0
        if beams is not None and s < beams.shape[1] and beams[0, s] >= 0:
            beam = int(beams[0, s])
        steps.append(layers[-1][beam, -1, :])
    new = out.sequences[0, input_ids.shape[1] :].tolist()
    # generate() pads a finished sequence only in batches; alone, it ends at the end-of-sequence token.
    vector, from_step0 = pool_steps(steps[: len(new)], config.pooling)
    return PromptResult(
        row=prompt.row,
        text=tok.decode(new, skip_special_tokens=True),
        vector=vector.cpu().numpy().astype(np.float32, copy=True),
        n_tokens=len(new),
        stop_reason=STOP_EOS if new and new[-1] in loaded.info.eos_token_ids else STOP_LENGTH,
        pooled_from_step0=from_step0,
        prompt_tokens=len(prompt.ids),
    )


def _free_host_memory() -> int | None:
    """Bytes of RAM this process may still allocate (a cluster task's allocation, not the node's); None if unknown."""
    from gpi_desktop.core.model.memory import host_memory

    ram = host_memory()
    return ram.free_bytes if ram.total_bytes else None


def _free_gpu_memory(kind: str = "cuda") -> int:
    """Free bytes of the CUDA GPUs together, or what the Apple GPU may still use ('mps'), as the verdict counts them."""
    from gpi_desktop.core.model.memory import available_memory

    return sum(d.free_bytes for d in available_memory(kind))


def auto_batch_size(loaded: LoadedModel, prompts: Sequence[EncodedPrompt], max_new_tokens: int,
                    prefill: str = "auto") -> int:
    """A batch that keeps the hardware busy without running out of memory.

    Memory per row: its key/value cache at the longest prompt plus the token
    limit (plus the cache's growth chunk), and, when the prompt pass is
    batched, that pass's activations. On a GPU the batch fills 90% of the free
    memory after loading (on the Apple GPU: of what Metal lets it use, the
    figure the memory verdict uses), up to MAX_AUTO_BATCH (beyond that a
    decoding step is bound by arithmetic, not memory, and gains nothing). On the CPU, batching
    turns matrix-vector work into matrix-matrix work, which pays off up to a
    moderate batch (CPU_AUTO_BATCH; see benchmarks/README.md), within half the
    available RAM so the rest of the desktop keeps working.
    """
    n = max(1, len(prompts))
    longest = max((len(p.ids) for p in prompts), default=1)
    model = loaded.model
    device = _input_device(model)
    cfg = model.config.get_text_config(decoder=True) if hasattr(model.config, "get_text_config") else model.config
    hidden = loaded.info.hidden_size
    layers = getattr(cfg, "num_hidden_layers", 32)
    heads = getattr(cfg, "num_attention_heads", 32)
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or hidden // heads
    dtype = model.dtype
    elem = torch.finfo(dtype).bits // 8 if dtype.is_floating_point else 2
    kv_per_token = 2 * layers * kv_heads * head_dim * elem
    per_row = kv_per_token * (longest + max_new_tokens + CACHE_CHUNK) + getattr(cfg, "vocab_size", 0) * 4 * 3
    inter = getattr(cfg, "intermediate_size", 4 * hidden) or 4 * hidden
    one_pass = longest * (inter * 3 + hidden * 4) * elem  # a prompt pass's largest activations
    if resolve_prefill(EngineConfig("last", 1, 1, prefill=prefill), _new_cache(model)[1]) == "batched":
        per_row += one_pass
        reserve = 0
    else:
        reserve = one_pass + kv_per_token * longest  # one prompt's pass and its own cache, before the copy
    if device.type in ("cuda", "mps"):
        from gpi_desktop.core.model.memory import USABLE_SHARE

        cap, free = MAX_AUTO_BATCH, _free_gpu_memory(device.type) * USABLE_SHARE
    else:
        cap, free = CPU_AUTO_BATCH, _free_host_memory()
        free = None if free is None else free * 0.5
    fit = cap if free is None else int(max(0.0, free - reserve) // per_row)
    return max(1, min(n, cap, fit))
