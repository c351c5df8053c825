"""The automatic batch size: as many rows as keep the hardware busy and fit in memory."""

from __future__ import annotations

from collections.abc import Sequence

from gpi_desktop.core.generation.cache import CACHE_CHUNK, new_cache
from gpi_desktop.core.generation.config import EngineConfig, resolve_prefill
from gpi_desktop.core.generation.forward import input_device
from gpi_desktop.core.generation.plan import EncodedPrompt
from gpi_desktop.core.model.models import LoadedModel

CPU_AUTO_BATCH = 32
MAX_AUTO_BATCH = 256


def _free_host_memory() -> int | None:
    """Bytes of RAM this process may still allocate (a cluster task's allocation, not the node's); None if unknown."""
    from gpi_desktop.core.model.host import host_memory

    ram = host_memory()
    return ram.free_bytes if ram.total_bytes else None


def _free_gpu_memory(kind: str = "cuda") -> int:
    """Free bytes of the CUDA GPUs together, or what the Apple GPU may still use ('mps'), as the verdict counts them."""
    from gpi_desktop.core.model.memory import available_memory

    return sum(d.free_bytes for d in available_memory(kind))


def auto_batch_size(
    loaded: LoadedModel, prompts: Sequence[EncodedPrompt], max_new_tokens: int, prefill: str = "auto"
) -> int:
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
    device = input_device(model)
    dtype = str(model.dtype).removeprefix("torch.")
    one = estimate_memory(
        model.config,
        dtype=dtype if dtype in DTYPE_BYTES else "auto",
        batch_size=1,
        prompt_tokens=longest,
        max_new_tokens=max_new_tokens + CACHE_CHUNK,
    )
    per_row = one.kv_cache_bytes
    if resolve_prefill(EngineConfig("last", 1, 1, prefill=prefill), new_cache(model)[1]) == "batched":
        per_row += one.activations_bytes
    # Alone (and every refill): one prompt's pass and its own cache, before the copy into the batch.
    reserve = one.activations_bytes + one.kv_cache_bytes * longest // (longest + max_new_tokens + CACHE_CHUNK)
    free: float | None
    if device.type in ("cuda", "mps"):
        cap, free = MAX_AUTO_BATCH, _free_gpu_memory(device.type) * USABLE_SHARE
    else:
        cap, free = CPU_AUTO_BATCH, _free_host_memory()
        free = None if free is None else free * 0.5
    fit = cap if free is None else int(max(0.0, free - reserve) // per_row)
    return max(1, min(n, cap, fit))
