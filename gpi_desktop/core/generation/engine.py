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
the prefix (`_fill_padded`, in decode.py); the cache grows in chunks rather than being
concatenated at every step (`GrowingLayer`, cache.py), and the automatic batch size (batch_size.py)
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

Row-exact (issue 29, exact.py): on a float32 CPU model with a plain cache,
unless a padded prompt pass is asked for, the run uses kernels whose sums
follow each row alone, so a row's bits do not depend on its wave at all; the
waves remain for the other devices and precisions.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence

import torch

from gpi_desktop.core.generation.batch_size import CPU_AUTO_BATCH, MAX_AUTO_BATCH, auto_batch_size
from gpi_desktop.core.generation.cache import CACHE_CHUNK, new_cache
from gpi_desktop.core.generation.config import PREFILL_MODES, EngineConfig, resolve_prefill
from gpi_desktop.core.generation.cpu_linear import onednn_linears
from gpi_desktop.core.generation.decode import decode
from gpi_desktop.core.generation.exact import row_exact_kernels
from gpi_desktop.core.generation.forward import is_out_of_memory, release_memory
from gpi_desktop.core.generation.meter import Meter
from gpi_desktop.core.generation.plan import WAVE_BATCHES, EncodedPrompt, plan_batches, plan_waves, wave_size
from gpi_desktop.core.generation.prefix import SharedPrefix, shared_prefix
from gpi_desktop.core.generation.processors import effective_generation_options
from gpi_desktop.core.generation.reference import reference_one
from gpi_desktop.core.generation.session import Job
from gpi_desktop.core.model.models import LoadedModel
from gpi_desktop.core.vocabulary.options import needs_one_at_a_time
from gpi_desktop.core.vocabulary.progress import TaskState, check_cancel
from gpi_desktop.core.vocabulary.results import PromptResult

__all__ = [
    "CACHE_CHUNK",
    "CPU_AUTO_BATCH",
    "MAX_AUTO_BATCH",
    "PREFILL_MODES",
    "WAVE_BATCHES",
    "EncodedPrompt",
    "EngineConfig",
    "SharedPrefix",
    "auto_batch_size",
    "is_out_of_memory",
    "plan_batches",
    "plan_waves",
    "resolve_prefill",
    "run_engine",
    "shared_prefix",
    "wave_size",
]

log = logging.getLogger(__name__)


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
    meter = Meter(
        state,
        total=len(prompts),
        done=sum(1 for p in prompts if p.row in finished),
        done_tokens=finished_tokens,
        max_new_tokens=config.max_new_tokens,
        earlier=finished,
        decode=lambda ids: loaded.tokenizer.decode(ids, skip_special_tokens=True),
    )

    def deliver(result: PromptResult) -> None:
        on_result(result)
        meter.finished(result)

    options = effective_generation_options(loaded.model, config.generation_options)
    if config.one_at_a_time or needs_one_at_a_time(options):
        for prompt in prompts:
            if prompt.row in finished:
                continue
            check_cancel(state)
            deliver(reference_one(loaded, prompt, config, options, meter))
        return

    # Not with a padded prompt pass asked for, nor for caches that cannot take one prompt's pass alone.
    exact_wanted = config.row_exact and config.prefill != "batched" and new_cache(loaded.model)[1]
    kernels = row_exact_kernels(loaded.model) if exact_wanted else onednn_linears(loaded.model)
    with torch.inference_mode(), kernels as exact:
        job = Job.open(loaded, config, options, state, finished, deliver, meter, prompts, bool(exact))
        try:
            for wave in plan_waves(prompts, config.batch_size):
                if all(p.row in finished for p in wave):
                    continue
                check_cancel(state)
                _run_wave(job, wave, config.batch_size)
        finally:
            job.hook.remove()


def _run_wave(job: Job, wave: list[EncodedPrompt], rows: int) -> None:
    """Run one wave `rows` prompts at a time; out of memory (GPU or RAM) halves `rows` and retries, down to one."""
    try:
        if job.growing:  # finished rows are refilled from the wave's next prompts
            decode(job, wave[:rows], deque(wave[rows:]))
        else:  # other cache kinds cannot take a new row: plain batches
            for i in range(0, len(wave), rows):
                decode(job, wave[i : i + rows], deque())
        return
    except Exception as exc:
        if not is_out_of_memory(exc) or rows == 1:
            raise
    # Retried only here, after the except block: until then the exception's traceback keeps
    # the failed attempt's frames, and with them its whole key/value cache, alive.
    job.hook.state = None
    release_memory()
    half = max(1, min(rows, len(wave)) // 2)
    where = "GPU" if job.device.type in ("cuda", "mps") else "computer"
    job.state.set_status(
        f"The {where} ran out of memory with {min(rows, len(wave))} prompts at once; retrying them {half} at a time "
        "(finished prompts are kept; this costs some speed, not results)."
    )
    log.warning("out of memory at batch %d; retrying at %d", min(rows, len(wave)), half)
    _run_wave(job, [p for p in wave if p.row not in job.done and p.row not in job.finished], half)
