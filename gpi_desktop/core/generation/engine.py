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
the user header: often most of each prompt) is computed once per job, and
each prompt's pass starts from a copy of its key/value cache, computing only
the prompt's own tokens (`SharedPrefix`); each prompt's pass runs alone and
its cache is copied into its row of the batch (`_fill_alone`), or, with
prefill="batched", one padded pass runs over the batch's own tokens after
the prefix (`_fill_padded`); the cache grows in chunks rather than being
concatenated at every step (`GrowingLayer`), and the automatic batch size
follows free memory and the memory estimate (core/model/memory.py).

Batches kept full, and a schedule that depends on the prompts alone: all
prompts, sorted longest first (little padding; an out-of-memory error shows
at once), are cut into fixed waves of `wave_size(batch_size)` prompts
(WAVE_BATCHES batches' worth; `plan_waves`). A wave starts with its first
`batch_size` prompts as the running batch; when a row finishes, its slot
takes the wave's next prompt at once: that prompt's pass runs alone (from
the prefix's cache), its first token is taken, and its cache is placed
right-aligned in the slot (left padding; the batch's width only grows, and
the wave runs longest first, so it always fits), so the batch stays full
until the wave runs out. Only then do finished rows leave the batch (at once
in small batches, in groups of an eighth of the batch in large ones, see
`_compact_now`). Which prompt joins which slot at which step depends only on
the wave's prompts, the model and the settings, never on timing or on what
an earlier session finished: a resumed run reruns every wave that holds an
unfinished prompt whole (its rows finished earlier are computed again and
discarded), so each prompt is computed alongside exactly the same rows as
in an uninterrupted run and the files stay byte-identical. Shards are cut
by whole waves (core/cluster/shards.py, `unit` from `wave_size`) for the same
reason. Models whose cache cannot take a new row (sliding windows, other
cache kinds) run each wave as plain batches of `batch_size`.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from gpi_desktop.core.vocabulary.errors import Cancelled
from gpi_desktop.core.vocabulary.hf_lock import TRANSFORMERS_LOCK
from gpi_desktop.core.model.models import LoadedModel
from gpi_desktop.core.vocabulary.options import needs_one_at_a_time
from gpi_desktop.core.generation.cpu_linear import onednn_linears
from gpi_desktop.core.generation.meter import Meter
from gpi_desktop.core.generation.pooling import OnlinePool, pool_steps
from gpi_desktop.core.vocabulary.progress import TaskState
from gpi_desktop.core.vocabulary.results import STOP_EOS, STOP_LENGTH, PromptResult

log = logging.getLogger(__name__)

CPU_AUTO_BATCH = 32
MAX_AUTO_BATCH = 256
PREFILL_MODES = ("auto", "alone", "batched")
# A wave is this many batches' worth of prompts: enough for finished rows to be refilled until near the
# wave's end, few enough that a resume reruns little (a wave is rerun whole) and shards stay balanced.
WAVE_BATCHES = 4


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
    # "alone": each prompt's pass on its own, only decoding batched (see _fill_alone);
    # "batched": one padded pass for the batch's first rows (_fill_padded); "auto": see resolve_prefill.
    prefill: str = "auto"
    # The job's shared token prefix when `prompts` are only part of the job (a shard); None: of the prompts given.
    shared_prefix: tuple[int, ...] | None = None


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
        with TRANSFORMERS_LOCK:
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
        with TRANSFORMERS_LOCK:
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


def wave_size(batch_size: int) -> int:
    """Prompts per wave: a running batch refills its finished rows from its own wave only (module docstring)."""
    return WAVE_BATCHES * max(1, int(batch_size))


def plan_waves(prompts: Sequence[EncodedPrompt], batch_size: int) -> list[list[EncodedPrompt]]:
    """The job's fixed waves: `plan_batches` of `wave_size(batch_size)` prompts, longest first."""
    return plan_batches(prompts, wave_size(batch_size))


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
    meter = Meter(state, total=len(prompts), done=sum(1 for p in prompts if p.row in finished),
                  done_tokens=finished_tokens, max_new_tokens=config.max_new_tokens, earlier=finished,
                  decode=lambda ids: loaded.tokenizer.decode(ids, skip_special_tokens=True))

    def deliver(result: PromptResult) -> None:
        on_result(result)
        meter.finished(result)

    options = effective_generation_options(loaded.model, config.generation_options)
    if config.one_at_a_time or needs_one_at_a_time(options):
        for prompt in prompts:
            if prompt.row in finished:
                continue
            _check(state)
            deliver(_reference_one(loaded, prompt, config, options, meter))
        return

    job = _Job.open(loaded, config, options, state, finished, deliver, meter, prompts)
    try:
        with torch.inference_mode(), onednn_linears(loaded.model):
            for wave in plan_waves(prompts, config.batch_size):
                if all(p.row in finished for p in wave):
                    continue
                _check(state)
                _run_wave(job, wave, config.batch_size)
    finally:
        job.hook.remove()


def _check(state: TaskState) -> None:
    if state.is_interruption_requested():
        raise Cancelled()


@dataclass
class _Job:
    """What every batch of one `run_engine` call shares: the model, the settings, where results go."""

    loaded: LoadedModel
    config: EngineConfig
    options: dict
    state: TaskState
    hook: _LastStateHook
    prefix: SharedPrefix
    finished: set[int]  # rows an earlier session finished: rerun with their wave, not delivered again
    on_result: Callable[[PromptResult], None]
    meter: Meter  # counts the tokens generated, shows the running texts
    growing: bool  # the model's cache is plain full attention: rows can be refilled and placed
    prefill: str  # "alone" or "batched", resolved
    device: torch.device
    eos: torch.Tensor
    pad: int
    cache_arg: str
    done: set[int] = field(default_factory=set)  # rows finished in this call

    @classmethod
    def open(cls, loaded, config, options, state, finished, on_result, meter, prompts) -> "_Job":
        model = loaded.model
        growing = _new_cache(model)[1]
        prefill = resolve_prefill(config, growing)
        # Only where each row's cache can be built from a copy (plain full attention).
        prefix = SharedPrefix(())
        if growing:
            prefix = shared_prefix(prompts) if config.shared_prefix is None else SharedPrefix(config.shared_prefix)
        device = _input_device(model)
        return cls(loaded, config, options, state, _LastStateHook(model.base_model), prefix, finished, on_result,
                   meter, growing, prefill, device, torch.tensor(loaded.info.eos_token_ids, device=device),
                   _pad_id(loaded), _cache_argument(model))

    @property
    def model(self):
        return self.loaded.model

    def deliver(self, result: PromptResult) -> None:
        self.done.add(result.row)
        if result.row not in self.finished:
            self.on_result(result)

    def forward(self, input_ids, mask, positions, cache):
        out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True,
                         logits_to_keep=1, **{self.cache_arg: cache})
        # Under a multi-GPU device map the last layers (and so states and logits) sit on another GPU.
        return self.hook.take().to(self.device), out.logits[:, -1, :].float().to(self.device)


def _run_wave(job: _Job, wave: list[EncodedPrompt], rows: int) -> None:
    """Run one wave `rows` prompts at a time; out of memory (GPU or RAM) halves `rows` and retries, down to one."""
    try:
        if job.growing:  # finished rows are refilled from the wave's next prompts
            _decode(job, wave[:rows], deque(wave[rows:]))
        else:  # other cache kinds cannot take a new row: plain batches
            for i in range(0, len(wave), rows):
                _decode(job, wave[i : i + rows], deque())
        return
    except Exception as exc:
        if not is_out_of_memory(exc) or rows == 1:
            raise
    # Retried only here, after the except block: until then the exception's traceback keeps
    # the failed attempt's frames, and with them its whole key/value cache, alive.
    job.hook.state = None
    _release_memory()
    half = max(1, min(rows, len(wave)) // 2)
    where = "GPU" if job.device.type in ("cuda", "mps") else "computer"
    job.state.set_status(
        f"The {where} ran out of memory with {min(rows, len(wave))} prompts at once; retrying them {half} at a time "
        "(finished prompts are kept; this costs some speed, not results)."
    )
    log.warning("out of memory at batch %d; retrying at %d", min(rows, len(wave)), half)
    _run_wave(job, [p for p in wave if p.row not in job.done and p.row not in job.finished], half)


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
    with TRANSFORMERS_LOCK:
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
            """Put one prompt's own cache (1, heads, L, dim) into row `row`, right-aligned at `width` (left padding).

            `width` is the cache's length once it holds tokens (a row refilled in a running batch).
            """
            if not self.is_initialized:
                self.lazy_initialization(keys, values)
                self._reserve(width, keys, values, batch)  # zeros: padding never holds garbage such as NaN
                self.length = width
            n = keys.shape[2]
            if n < width:  # a refilled row: nothing of the slot's previous prompt stays in its padding
                self.buf_k[row : row + 1, :, : width - n].zero_()
                self.buf_v[row : row + 1, :, : width - n].zero_()
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
    with TRANSFORMERS_LOCK:
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


@dataclass
class _Row:
    """One prompt in a slot of the running batch."""

    prompt: EncodedPrompt
    procs: object | None  # its logits processors, with generation options only
    seq: torch.Tensor | None  # prompt and generated ids, for the processors
    generated: list[int] = field(default_factory=list)


@dataclass
class _Batch:
    """The running batch: one slot per row (None once its prompt is done and no prompt is left to refill it)."""

    cache: object
    slots: list[_Row | None]
    mask: torch.Tensor  # (B, width) 1 for the tokens each row attends to, 0 for padding; width = cache length
    positions: torch.Tensor  # (B, 1) the position of each row's last token
    pool: OnlinePool

    def running(self) -> int:
        return sum(slot is not None for slot in self.slots)


def _row(job: _Job, prompt: EncodedPrompt) -> _Row:
    if not job.options:
        return _Row(prompt, None, None)
    return _Row(prompt, _logits_processors(job.options, job.loaded.info.eos_token_ids, len(prompt.ids)),
                torch.tensor(prompt.ids, dtype=torch.long, device=job.device))


def _left_padded(seqs: Sequence[Sequence[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    input_ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):  # left padding: every row's last token sits in the last column
        input_ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s) :] = 1
    return input_ids.to(device), mask.to(device)


def _own_pass(job: _Job, prompt: EncodedPrompt):
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
    state, logits = job.forward(ids, torch.ones((1, len(prompt.ids)), dtype=torch.long, device=job.device),
                                torch.arange(start, len(prompt.ids), device=job.device)[None, :], own)
    return state, logits, own


def _fill_alone(job: _Job, prompts: list[EncodedPrompt]):
    """Each prompt's pass on its own, its cache copied into its row of the batch cache (right-aligned)."""
    cache, _ = _new_cache(job.model)
    width = max(len(p.ids) for p in prompts)
    states, logits = [], []
    for i, p in enumerate(prompts):
        if i:
            _check(job.state)
        state, logit, own = _own_pass(job, p)
        states.append(state)
        logits.append(logit)
        if not cache.layers:  # a cache that makes its layers on first use
            cache.layers = [cache.layer_class_to_replicate() for _ in own.layers]
        for target, layer in zip(cache.layers, own.layers):
            target.place(i, len(prompts), width, layer.keys, layer.values)
        del own
    _, mask = _left_padded([p.ids for p in prompts], job.pad, job.device)
    return cache, mask, torch.cat(states), torch.cat(logits)


def _fill_padded(job: _Job, prompts: list[EncodedPrompt]):
    """One left-padded pass over the batch: over each prompt's own tokens after the shared prefix, whose cache
    is expanded to every row first (the row reads [prefix, padding, own tokens]); the whole prompts where
    the prefix does not apply to all or the cache cannot take it."""
    cache, _ = _new_cache(job.model)
    start = len(job.prefix.ids) if job.growing and all(job.prefix.applies_to(p) for p in prompts) else 0
    ids, own_mask = _left_padded([p.ids[start:] for p in prompts], job.pad, job.device)
    mask = own_mask
    if start:
        job.prefix.compute(job.model, job.hook, job.cache_arg, job.device)
        if not cache.layers:
            cache.layers = [cache.layer_class_to_replicate() for _ in job.prefix.keys]
        for layer, keys, values in zip(cache.layers, job.prefix.keys, job.prefix.values):
            for i in range(len(prompts)):
                layer.place(i, len(prompts), start, keys, values)
        mask = torch.cat([own_mask.new_ones((len(prompts), start)), own_mask], dim=1)
    # Positions count real tokens only, so a padded row sees the positions it would see alone.
    positions = start + (own_mask.cumsum(-1) - 1).clamp(min=0)
    states, logits = job.forward(ids, mask, positions, cache)
    return cache, mask, states, logits


def _fill(job: _Job, prompts: list[EncodedPrompt]) -> tuple[_Batch, torch.Tensor]:
    """The batch's first rows and their step 0: the batch, and the logits of each row's first token."""
    fill = _fill_alone if job.prefill == "alone" else _fill_padded
    cache, mask, states, logits = fill(job, prompts)
    pool = OnlinePool(job.config.pooling, len(prompts), job.loaded.info.hidden_size, job.device)
    pool.add(0, states)
    positions = torch.tensor([[len(p.ids) - 1] for p in prompts], dtype=torch.long, device=job.device)
    return _Batch(cache, [_row(job, p) for p in prompts], mask, positions, pool), logits


def _choose(job: _Job, rows: Sequence[_Row | None], logits: torch.Tensor) -> torch.Tensor:
    """Each row's next token (greedy, after its logits processors)."""
    for i, row in enumerate(rows):
        if row is not None and row.procs is not None:
            logits[i : i + 1] = row.procs(row.seq[None, :], logits[i : i + 1])
    return logits.argmax(dim=-1)


def _advance(job: _Job, batch: _Batch, i: int, token: int, is_eos: bool, token_tensor: torch.Tensor) -> bool:
    """Row i generated `token`; if that ends its text, deliver it and free the slot. Whether it ended."""
    row = batch.slots[i]
    row.generated.append(token)
    if row.seq is not None:
        row.seq = torch.cat([row.seq, token_tensor])
    if not is_eos and len(row.generated) < job.config.max_new_tokens:
        return False
    vector, from_step0 = batch.pool.result(i)
    job.deliver(PromptResult(
        row=row.prompt.row,
        text=job.loaded.tokenizer.decode(row.generated, skip_special_tokens=True),
        vector=vector.cpu().numpy().astype(np.float32, copy=True),
        n_tokens=len(row.generated),
        stop_reason=STOP_EOS if is_eos else STOP_LENGTH,
        pooled_from_step0=from_step0 and job.config.pooling != "last",
        prompt_tokens=len(row.prompt.ids),
    ))
    batch.slots[i] = None
    return True


def _take_tokens(job: _Job, batch: _Batch, tokens: torch.Tensor) -> None:
    """Every running row takes its next token (one transfer to the host per step)."""
    host = torch.stack([tokens, torch.isin(tokens, job.eos).long()]).tolist()
    job.meter.step(batch.running())
    for i, (token, is_eos) in enumerate(zip(*host)):
        if batch.slots[i] is not None:
            _advance(job, batch, i, token, bool(is_eos), tokens[i : i + 1])


def _refill(job: _Job, batch: _Batch, tokens: torch.Tensor, waiting: deque) -> None:
    """Free slots take the wave's next prompts: each one's pass alone, its step 0 taken, its cache placed."""
    width = batch.mask.shape[1]
    for i in range(len(batch.slots)):
        while batch.slots[i] is None and waiting:
            _check(job.state)
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
            for target, layer in zip(batch.cache.layers, own.layers):
                target.place(i, len(batch.slots), width, layer.keys, layer.values)
            batch.mask[i] = 0
            batch.mask[i, width - n :] = 1
            batch.positions[i, 0] = n - 1


def _compact_now(dead: int, rows: int) -> bool:
    # Dropping finished rows copies the whole cache once; keeping them costs a
    # little work per step. Drop them once they are an eighth of the batch.
    return dead > 0 and dead * 8 >= rows


def _compact(job: _Job, batch: _Batch, tokens: torch.Tensor) -> torch.Tensor:
    """Drop the finished rows from the batch and its cache; the running rows' next tokens."""
    keep_idx = [i for i, slot in enumerate(batch.slots) if slot is not None]
    keep = torch.tensor(keep_idx, device=job.device)
    batch.cache.batch_select_indices(keep)
    batch.pool.select(keep)
    batch.mask = batch.mask.index_select(0, keep)
    batch.positions = batch.positions.index_select(0, keep)
    batch.slots = [batch.slots[i] for i in keep_idx]
    return tokens.index_select(0, keep)


def _step(job: _Job, batch: _Batch, tokens: torch.Tensor, step: int) -> torch.Tensor:
    """One decoding step of the whole batch: pools its states, returns its logits."""
    batch.mask = torch.cat([batch.mask, batch.mask.new_ones((batch.mask.shape[0], 1))], dim=1)
    batch.positions = batch.positions + 1
    # Without padding no mask is needed (a single token attends to the whole cache): that spares
    # building one per step and lets attention use its fastest kernel, as generate() does alone.
    padded = bool((batch.mask == 0).any())
    states, logits = job.forward(tokens[:, None], batch.mask if padded else None, batch.positions, batch.cache)
    batch.pool.add(step, states)  # a freed slot's states are pooled too, and never read
    return logits


def _decode(job: _Job, first: list[EncodedPrompt], waiting: deque) -> None:
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
        _check(job.state)
        dead = len(batch.slots) - batch.running()
        if _compact_now(dead, len(batch.slots)):
            tokens = _compact(job, batch, tokens)
        step += 1
        logits = _step(job, batch, tokens, step)


def _reference_one(loaded: LoadedModel, prompt: EncodedPrompt, config: EngineConfig, options: dict,
                   meter: Meter) -> PromptResult:
    """gpi_pack's own procedure: transformers' generate() with every hidden state kept, one prompt at a time."""
    model, tok = loaded.model, loaded.tokenizer
    device = _input_device(model)
    input_ids = torch.tensor([prompt.ids], dtype=torch.long, device=device)
    kwargs = dict(options)
    streamed = int(options.get("num_beams", 1)) == 1  # generate() streams no beam search
    if streamed:
        kwargs["streamer"] = meter.streamer(prompt.row)
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
    if not streamed:
        meter.step(len(new))
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

    Memory per row, from the one memory estimate (core/model/memory.py): its
    key/value cache at the longest prompt plus the token limit (plus the
    cache's growth chunk), and, when the prompt pass is batched, that pass's
    working memory; a pass alone needs one prompt's working memory and cache
    once. On a GPU the batch fills the usable share of the free memory after
    loading (on the Apple GPU: of what Metal lets it use, the figure the
    memory verdict uses), up to MAX_AUTO_BATCH (beyond that a decoding step is
    bound by arithmetic, not memory, and gains nothing). On the CPU, batching
    turns matrix-vector work into matrix-matrix work, which pays off up to a
    moderate batch (CPU_AUTO_BATCH; see benchmarks/README.md), within half the
    available RAM so the rest of the desktop keeps working.
    """
    from gpi_desktop.core.model.memory import DTYPE_BYTES, USABLE_SHARE, estimate_memory

    n = max(1, len(prompts))
    longest = max((len(p.ids) for p in prompts), default=1)
    model = loaded.model
    device = _input_device(model)
    dtype = str(model.dtype).removeprefix("torch.")
    one = estimate_memory(model.config, dtype=dtype if dtype in DTYPE_BYTES else "auto", batch_size=1,
                          prompt_tokens=longest, max_new_tokens=max_new_tokens + CACHE_CHUNK)
    per_row = one.kv_cache_bytes
    if resolve_prefill(EngineConfig("last", 1, 1, prefill=prefill), _new_cache(model)[1]) == "batched":
        per_row += one.activations_bytes
    # Alone (and every refill): one prompt's pass and its own cache, before the copy into the batch.
    reserve = one.activations_bytes + one.kv_cache_bytes * longest // (longest + max_new_tokens + CACHE_CHUNK)
    if device.type in ("cuda", "mps"):
        cap, free = MAX_AUTO_BATCH, _free_gpu_memory(device.type) * USABLE_SHARE
    else:
        cap, free = CPU_AUTO_BATCH, _free_host_memory()
        free = None if free is None else free * 0.5
    fit = cap if free is None else int(max(0.0, free - reserve) // per_row)
    return max(1, min(n, cap, fit))
