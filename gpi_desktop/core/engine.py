"""Batched greedy generation with online pooling of the last layer's states.

Why a greedy loop of our own over the KV cache rather than transformers'
`generate(output_hidden_states=True)`: `generate` keeps every layer's state of
every step until the end (about 270 MB per 1000-token prompt for an 8B model,
8.6 GB at batch 32), and keeps finished rows in the batch until the longest
row ends. Here each forward pass runs the full causal-LM module (so any
head-side details, such as logit soft-capping, stay the model's own) with
`logits_to_keep=1`, while a forward hook on the decoder takes only the last
position's final state; each running row keeps one (H,) pooling accumulator;
finished rows leave the batch and the cache at once.

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

from gpi_desktop.core.errors import Cancelled
from gpi_desktop.core.models import LoadedModel
from gpi_desktop.core.options import BATCHED_GENERATION_OPTIONS, needs_one_at_a_time
from gpi_desktop.core.pooling import OnlinePool, pool_steps
from gpi_desktop.core.progress import Progress, TaskState
from gpi_desktop.core.results import STOP_EOS, STOP_LENGTH, PromptResult

log = logging.getLogger(__name__)

CPU_AUTO_BATCH = 16
MAX_AUTO_BATCH = 256


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


class _Meter:
    """Progress over the whole run: prompts done (of total) and generated tokens per second."""

    def __init__(self, state: TaskState, total: int, done: int) -> None:
        self.state, self.total, self.done = state, total, done
        self.tokens = 0
        self.start = time.perf_counter()

    def finished(self, result: PromptResult) -> None:
        self.done += 1
        self.tokens += result.n_tokens
        elapsed = time.perf_counter() - self.start
        self.state.set_partial_result(result)
        self.state.set_progress(Progress(self.done, self.total, self.tokens / elapsed if elapsed > 0 else 0.0, elapsed))


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
    return isinstance(exc, oom) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def run_engine(
    loaded: LoadedModel,
    prompts: Sequence[EncodedPrompt],
    config: EngineConfig,
    state: TaskState,
    *,
    finished_rows: Iterable[int] = (),
    on_result: Callable[[PromptResult], None] = lambda r: None,
) -> None:
    """Generate for every prompt not in `finished_rows`; each result goes to `on_result` as soon as it is done."""
    finished = set(finished_rows)
    todo_total = len(prompts)
    meter = _Meter(state, todo_total, sum(1 for p in prompts if p.row in finished))

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
    try:
        with torch.inference_mode():
            for batch in plan_batches(prompts, config.batch_size):
                if all(p.row in finished for p in batch):
                    continue
                _check(state)
                _run_with_oom_retry(loaded, hook, batch, config, options, state, finished, deliver)
    finally:
        hook.remove()


def _check(state: TaskState) -> None:
    if state.is_interruption_requested():
        raise Cancelled()


def _run_with_oom_retry(loaded, hook, batch, config, options, state, finished, deliver) -> None:
    """Out of GPU memory is not the end: halve the batch and retry it, down to one prompt."""
    done_here: set[int] = set()

    def keep(result: PromptResult) -> None:
        done_here.add(result.row)
        if result.row not in finished:
            deliver(result)

    try:
        _run_batch(loaded, hook, batch, config, options, state, keep)
    except Exception as exc:
        if not is_out_of_memory(exc) or len(batch) == 1:
            raise
        hook.state = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        rest = [p for p in batch if p.row not in done_here and p.row not in finished]
        half = max(1, len(batch) // 2)
        state.set_status(
            f"The GPU ran out of memory with {len(batch)} prompts at once; retrying them {half} at a time "
            "(finished prompts are kept)."
        )
        log.warning("out of memory at batch %d; retrying at %d", len(batch), half)
        for i in range(0, len(rest), half):
            _run_with_oom_retry(loaded, hook, rest[i : i + half], config, options, state, finished, deliver)


def _cache_argument(model) -> str:
    # transformers renamed `past_key_values` to `cache` in the forward signature (5.x deprecation).
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _run_batch(loaded, hook, batch, config, options, state, deliver) -> None:
    from transformers import DynamicCache

    model = loaded.model
    device = _input_device(model)
    eos = torch.tensor(loaded.info.eos_token_ids, device=device)
    pad = _pad_id(loaded)
    B = len(batch)
    width = max(len(p.ids) for p in batch)
    input_ids = torch.full((B, width), pad, dtype=torch.long)
    mask = torch.zeros((B, width), dtype=torch.long)
    for i, p in enumerate(batch):  # left padding: every row's last token sits in the last column
        input_ids[i, width - len(p.ids) :] = torch.tensor(p.ids, dtype=torch.long)
        mask[i, width - len(p.ids) :] = 1
    input_ids, mask = input_ids.to(device), mask.to(device)
    # Positions count real tokens only, so a padded row sees the positions it would see alone.
    positions = (mask.cumsum(-1) - 1).clamp(min=0)

    rows = list(batch)
    generated: list[list[int]] = [[] for _ in rows]
    procs = [_logits_processors(options, loaded.info.eos_token_ids, len(p.ids)) for p in rows] if options else None
    seqs = [torch.tensor(p.ids, dtype=torch.long, device=device) for p in rows] if options else None
    pool = OnlinePool(config.pooling, B, loaded.info.hidden_size, device)
    cache = DynamicCache(config=model.config)
    step = 0
    cache_arg = _cache_argument(model)
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1,
                **{cache_arg: cache})
    while True:
        states = hook.take()
        pool.add(step, states)
        logits = out.logits[:, -1, :].float()
        if procs is not None:
            for i in range(len(rows)):
                logits[i : i + 1] = procs[i](seqs[i][None, :], logits[i : i + 1])
        next_tokens = logits.argmax(dim=-1)
        step += 1
        is_eos = torch.isin(next_tokens, eos)
        done_now = (is_eos | torch.tensor(step >= config.max_new_tokens, device=device)).tolist()
        tokens = next_tokens.tolist()
        keep_idx = []
        for i, token in enumerate(tokens):
            generated[i].append(token)
            if seqs is not None:
                seqs[i] = torch.cat([seqs[i], next_tokens[i : i + 1]])
            if done_now[i]:
                vector, from_step0 = pool.result(i)
                deliver(PromptResult(
                    row=rows[i].row,
                    text=loaded.tokenizer.decode(generated[i], skip_special_tokens=True),
                    vector=vector.cpu().numpy().astype(np.float32, copy=True),
                    n_tokens=len(generated[i]),
                    stop_reason=STOP_EOS if token in loaded.info.eos_token_ids else STOP_LENGTH,
                    pooled_from_step0=from_step0 and config.pooling != "last",
                    prompt_tokens=len(rows[i].ids),
                ))
            else:
                keep_idx.append(i)
        if not keep_idx:
            return
        _check(state)
        if len(keep_idx) < len(rows):
            keep = torch.tensor(keep_idx, device=device)
            cache.batch_select_indices(keep)
            pool.select(keep)
            mask = mask.index_select(0, keep)
            positions = positions.index_select(0, keep)
            next_tokens = next_tokens.index_select(0, keep)
            rows = [rows[i] for i in keep_idx]
            generated = [generated[i] for i in keep_idx]
            if seqs is not None:
                seqs = [seqs[i] for i in keep_idx]
                procs = [procs[i] for i in keep_idx]
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
        positions = positions[:, -1:] + 1
        out = model(input_ids=next_tokens[:, None], attention_mask=mask, position_ids=positions,
                    use_cache=True, logits_to_keep=1, **{cache_arg: cache})


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


def auto_batch_size(loaded: LoadedModel, prompts: Sequence[EncodedPrompt], max_new_tokens: int) -> int:
    """A batch that keeps the hardware busy without running out of memory.

    On a GPU: the free memory after loading (90% of it) over the KV cache and
    working memory one row needs at the longest prompt plus the token limit.
    On the CPU: batching turns matrix-vector work into matrix-matrix work, which
    the CPU also does many times faster, so a moderate fixed batch.
    """
    n = max(1, len(prompts))
    longest = max((len(p.ids) for p in prompts), default=1)
    device = _input_device(loaded.model)
    if device.type != "cuda":
        return max(1, min(n, CPU_AUTO_BATCH))
    cfg = loaded.model.config
    layers = getattr(cfg, "num_hidden_layers", 32)
    heads = getattr(cfg, "num_attention_heads", 32)
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or loaded.info.hidden_size // heads
    elem = torch.finfo(loaded.model.dtype).bits // 8 if loaded.model.dtype.is_floating_point else 2
    kv_per_token = 2 * layers * kv_heads * head_dim * elem
    tokens = longest + max_new_tokens
    # Working memory: the prefill's activations (MLP intermediate + attention) and the float32 logits row.
    inter = getattr(cfg, "intermediate_size", 4 * loaded.info.hidden_size)
    work = longest * (inter * 3 + loaded.info.hidden_size * 4) * elem + cfg.vocab_size * 4 * 2
    per_row = kv_per_token * tokens + work
    free = sum(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count()))
    fit = int(free * 0.9 // per_row)
    return max(1, min(n, MAX_AUTO_BATCH, fit))
