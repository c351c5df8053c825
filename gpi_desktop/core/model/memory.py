"""Will the model fit? Memory estimates, free memory, a plain verdict, and 8-/4-bit loading.

The estimate is what a researcher needs before a 16 GB load fails halfway:
the weights at the chosen precision, the KV cache for the chosen batch and
token limit, and the working memory of one forward pass. It is deliberately
a little generous; `fit_verdict` also keeps back a share of the free memory
for the allocator and the libraries, so that "it fits" can be trusted.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import struct
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpi_desktop.core.hub.cache import cached_snapshot
from gpi_desktop.core.hub.download import fetch_config
from gpi_desktop.core.hub.model_files import SAFE_INDEX, SAFE_SINGLE
from gpi_desktop.core.hub.plain_errors import offline_mode
from gpi_desktop.core.model.devices import auto_uses_mps, mps_available, mps_device_name, pick_device
from gpi_desktop.core.model.host import SLURM_LIMIT, DeviceMemory, host_memory
from gpi_desktop.core.vocabulary.errors import SettingsError
from gpi_desktop.core.vocabulary.formatting import human_bytes
from gpi_desktop.core.vocabulary.hf_lock import TRANSFORMERS_LOCK

if TYPE_CHECKING:
    from transformers import BitsAndBytesConfig

log = logging.getLogger(__name__)

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
QUANTIZATIONS = (None, "8bit", "4bit")
# Bytes per quantized weight: int8 plus a per-row scale; NF4 is half a byte plus one
# fp32 absmax per block of 64 (bitsandbytes' defaults, which quantization_config keeps).
_QUANT_BYTES = {"8bit": 1.0 + 1 / 256, "4bit": 0.5 + 4 / 64}
# Share of the free memory a run may plan to use: the rest is for the CUDA
# allocator's fragmentation, the libraries' buffers and other programs.
USABLE_SHARE = 0.9


# --- the model's shape -----------------------------------------------------------------------------


def _config_dict(config: Any) -> dict[str, Any]:
    d = config if isinstance(config, dict) else config.to_dict()
    # Multimodal wrappers (Gemma 3, Llama 4, ...) keep the language model's numbers in text_config.
    if "hidden_size" not in d and isinstance(d.get("text_config"), dict):
        d = {
            **d["text_config"],
            "tie_word_embeddings": d.get("tie_word_embeddings", d["text_config"].get("tie_word_embeddings", False)),
        }
    return d


@dataclass(frozen=True)
class ModelShape:
    n_params: int
    non_quantized_params: int  # embeddings and output layer: bitsandbytes leaves them in 16-bit
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int

    @property
    def kv_values_per_token(self) -> int:
        """Numbers stored in the KV cache per token (keys and values, every layer)."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim


def parameters_from_config(config: Any) -> int:
    """Parameter count of a Llama-style decoder from its config (Llama, Mistral, Qwen2, Gemma, ...)."""
    c = _config_dict(config)
    h, inter, layers, vocab = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
    heads = c["num_attention_heads"]
    kv = c.get("num_key_value_heads") or heads
    hd = c.get("head_dim") or h // heads
    attention = h * heads * hd + 2 * h * kv * hd + heads * hd * h
    if c.get("attention_bias") or c.get("model_type") in ("qwen2", "qwen2_moe"):
        attention += heads * hd + 2 * kv * hd
    experts = c.get("num_local_experts") or c.get("num_experts") or 0
    if experts:
        expert_inter = c.get("moe_intermediate_size") or inter
        mlp = experts * 3 * h * expert_inter + h * experts
    else:
        mlp = 3 * h * inter + (2 * inter + h if c.get("mlp_bias") else 0)
    per_layer = attention + mlp + 2 * h
    embeddings = vocab * h * (1 if c.get("tie_word_embeddings", False) else 2)
    return int(layers * per_layer + embeddings + h)


def model_shape(config: Any, n_params: int | None = None) -> ModelShape:
    if isinstance(config, ModelShape):
        return config if n_params is None else replace(config, n_params=n_params)
    c = _config_dict(config)
    h, heads = c["hidden_size"], c["num_attention_heads"]
    vocab = c["vocab_size"]
    total = n_params if n_params else parameters_from_config(c)
    non_quantized = vocab * h * (1 if c.get("tie_word_embeddings", False) else 2)
    return ModelShape(
        n_params=int(total),
        non_quantized_params=min(int(total), non_quantized),
        hidden_size=h,
        intermediate_size=c.get("moe_intermediate_size") or c["intermediate_size"],
        num_layers=c["num_hidden_layers"],
        num_heads=heads,
        num_kv_heads=c.get("num_key_value_heads") or heads,
        head_dim=c.get("head_dim") or h // heads,
        vocab_size=vocab,
    )


# --- parameter count from the weights files -------------------------------------------------------


def _safetensors_numel(path: Path) -> int:
    """Sum the tensor sizes in a safetensors file's header, without reading the weights."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    return sum(math.prod(t["shape"]) for k, t in header.items() if k != "__metadata__")


def count_parameters(model: str | Path, *, revision: str | None = None, token: str | None = None) -> int | None:
    """Parameters of a model folder or hub id from its safetensors headers; None when unknown.

    A local folder (or a hub id already in the cache) is read from disk; a hub id
    not yet downloaded asks the Hub for the headers only (a few kilobytes).
    """

    local = Path(model)
    folder = local if local.is_dir() else cached_snapshot(str(model), revision)
    if folder is not None:
        index = folder / SAFE_INDEX
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        elif (folder / SAFE_SINGLE).is_file():
            shards = [SAFE_SINGLE]
        else:
            shards = sorted(p.name for p in folder.glob("*.safetensors"))
        if not shards:
            return None
        try:
            return sum(_safetensors_numel(folder / s) for s in shards)
        except (OSError, ValueError, KeyError, struct.error):
            log.warning("Could not read the safetensors headers in %s.", folder, exc_info=True)
            return None
    if offline_mode():
        return None
    from huggingface_hub import HfApi

    try:
        # A fresh HfApi: the module-level shortcut keeps the endpoint of import time.
        meta = HfApi().get_safetensors_metadata(str(model), revision=revision, token=token or False)
    except Exception as exc:  # the download step reports access problems in plain words
        log.info("No safetensors metadata for %s (%s); using the config.", model, type(exc).__name__)
        return None
    return int(sum(meta.parameter_count.values())) or None


# --- the estimate ----------------------------------------------------------------------------------


def dtype_bytes(dtype: str) -> int:
    """Bytes per number; 'auto' counts as 16-bit (what it means on a GPU; pass 'float32' for the CPU)."""
    if dtype == "auto":
        return 2
    try:
        return DTYPE_BYTES[dtype]
    except KeyError:
        raise SettingsError(f"Precision must be one of auto, {', '.join(DTYPE_BYTES)}; '{dtype}' is not.") from None


@dataclass(frozen=True)
class MemoryEstimate:
    weights_bytes: int
    kv_cache_bytes: int
    activations_bytes: int
    total_bytes: int
    shape: ModelShape = field(repr=False, default=None)  # type: ignore[assignment]
    dtype: str = "auto"
    quantization: str | None = None
    batch_size: int = 1
    prompt_tokens: int = 0
    max_new_tokens: int = 0

    @property
    def per_prompt_bytes(self) -> int:
        """What one more prompt in the batch costs (KV cache and working memory)."""
        return (self.kv_cache_bytes + self.activations_bytes) // max(1, self.batch_size)

    def with_settings(self, **changes: Any) -> MemoryEstimate:
        """The same model with other settings (dtype, quantization, batch_size, prompt_tokens, max_new_tokens)."""
        args = {k: getattr(self, k) for k in ("dtype", "quantization", "batch_size", "prompt_tokens", "max_new_tokens")}
        args.update(changes)
        return estimate_memory(self.shape, **args)

    def describe(self) -> str:
        prompts = "1 prompt" if self.batch_size == 1 else f"{self.batch_size} prompts"
        return (
            f"about {human_bytes(self.total_bytes)} ({human_bytes(self.weights_bytes)} for the model, "
            f"{human_bytes(self.kv_cache_bytes + self.activations_bytes)} to generate {prompts} at a time)"
        )


def estimate_memory(
    config: Any,
    *,
    dtype: str,
    quantization: str | None = None,
    batch_size: int = 1,
    prompt_tokens: int = 512,
    max_new_tokens: int = 1000,
    n_params: int | None = None,
) -> MemoryEstimate:
    """Memory a run needs: weights + KV cache + working memory of the longest forward pass.

    `config` is a config dict, a transformers config or a ModelShape;
    `n_params` (from count_parameters) overrides the count worked out from the
    config; `prompt_tokens` is the longest prompt after the chat template.
    """
    if quantization not in QUANTIZATIONS:
        raise SettingsError(f"Quantization must be 8bit, 4bit or none; '{quantization}' is not.")
    shape = model_shape(config, n_params)
    b = dtype_bytes(dtype)
    if quantization:
        # bitsandbytes computes in 16-bit whatever precision was asked for.
        b = 2
        quantized = shape.n_params - shape.non_quantized_params
        weights = int(quantized * _QUANT_BYTES[quantization] + shape.non_quantized_params * 2)
    else:
        weights = shape.n_params * b
    batch = max(1, int(batch_size))
    tokens = max(1, int(prompt_tokens)) + max(1, int(max_new_tokens))
    kv = shape.kv_values_per_token * b * batch * tokens
    t = max(1, int(prompt_tokens))
    # The prompt's forward pass is the peak: residual stream and norms (~4 x hidden), the MLP's gate
    # and up projections (2 x intermediate), attention scores when the kernel materialises them, and
    # the float32 logits of the last position (twice: logits and the argmax/softmax scratch).
    activations = batch * (
        t * (4 * shape.hidden_size + 2 * shape.intermediate_size) * b
        + shape.num_heads * t * t * b
        + 2 * shape.vocab_size * 4
    )
    return MemoryEstimate(
        weights_bytes=int(weights),
        kv_cache_bytes=int(kv),
        activations_bytes=int(activations),
        total_bytes=int(weights + kv + activations),
        shape=shape,
        dtype=dtype,
        quantization=quantization,
        batch_size=batch,
        prompt_tokens=int(prompt_tokens),
        max_new_tokens=int(max_new_tokens),
    )


# --- free memory -----------------------------------------------------------------------------------


def _gpus() -> list[DeviceMemory]:
    import torch

    if not torch.cuda.is_available():
        return []
    gpus = []
    for i in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(i)
        gpus.append(DeviceMemory(torch.cuda.get_device_name(i), int(free), int(total), "cuda", i))
    return gpus


def _apple_gpu() -> list[DeviceMemory]:
    """The Apple GPU: what Metal recommends it may use of the shared memory, less what this process holds there.

    Free RAM alone would be the wrong figure: the GPU is held to its
    recommended working set whatever the RAM, and the CPU keeps the rest.
    """
    import torch

    if not mps_available():
        return []
    limit = int(torch.mps.recommended_max_memory())
    used = int(torch.mps.current_allocated_memory())
    return [DeviceMemory(mps_device_name(), max(0, limit - used), limit, "mps", None)]


def available_memory(device: str = "auto") -> list[DeviceMemory]:
    """Free memory where the model will run: every CUDA GPU, else the Apple GPU, else the RAM (or as `device` says)."""

    if device == "cpu":
        return [host_memory()]
    if device == "mps":
        return _apple_gpu()
    gpus = _gpus()
    if device == "cuda" or gpus:
        return gpus
    if auto_uses_mps():
        return _apple_gpu()
    return [host_memory()]


def usable_bytes(devices: list[DeviceMemory]) -> int:
    """What a run may plan to use: the free memory of all GPUs together (device_map='auto'), less a margin."""
    return int(sum(d.free_bytes for d in devices) * USABLE_SHARE)


# --- the verdict -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FitVerdict:
    fits: bool
    sentence: str
    suggestions: list[str] = field(default_factory=list)


def max_batch_for_memory(
    config: Any,
    *,
    dtype: str,
    free_bytes: int,
    quantization: str | None = None,
    prompt_tokens: int = 512,
    max_new_tokens: int = 1000,
    n_params: int | None = None,
    limit: int = 256,
) -> int:
    """The largest batch whose estimate fits in `free_bytes` (already the usable share); 0 if none does."""
    one = estimate_memory(
        config,
        dtype=dtype,
        quantization=quantization,
        batch_size=1,
        prompt_tokens=prompt_tokens,
        max_new_tokens=max_new_tokens,
        n_params=n_params,
    )
    room = free_bytes - one.weights_bytes
    if room < one.per_prompt_bytes:
        return 0
    return int(min(limit, room // max(1, one.per_prompt_bytes)))


def _max_new_tokens_that_fit(estimate: MemoryEstimate, usable: int) -> int:
    lo, hi = 0, estimate.max_new_tokens - 1
    while lo < hi:  # largest n in [1, current) that fits; 0 when even 1 does not
        mid = (lo + hi + 1) // 2
        if estimate.with_settings(max_new_tokens=mid).total_bytes <= usable:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _where(devices: list[DeviceMemory]) -> str:
    if not devices:
        return "no GPU"
    if len(devices) == 1:
        return f"the {devices[0].name}," if devices[0].kind == "mps" else devices[0].name
    return f"the {len(devices)} GPUs together ({', '.join(d.name for d in devices)})"


def _has(devices: list[DeviceMemory], free: int, only: str = "") -> str:
    """'has 20 GB free', or for the Apple GPU (a share of the Mac's memory) 'may use 20 GB'."""
    if any(d.kind == "mps" for d in devices):
        return f"may use {only}{human_bytes(free)}"
    return f"has {only}{human_bytes(free)} free"


def fit_verdict(estimate: MemoryEstimate, devices: list[DeviceMemory]) -> FitVerdict:
    """Say in plain words whether the run fits, and what to change when it does not."""
    usable = usable_bytes(devices)
    free = sum(d.free_bytes for d in devices)
    on_gpu = any(d.kind == "cuda" for d in devices)
    needs = f"The model needs {estimate.describe()}"
    if not devices:
        return FitVerdict(
            False,
            f"{needs}, but no NVIDIA GPU was found.",
            ["Choose the CPU as the device (slow), or run on a computer with an NVIDIA GPU."],
        )
    fits = estimate.total_bytes <= usable
    if fits:
        sentence = f"{needs}; {_where(devices)} {_has(devices, free)}: it fits."
        if on_gpu and len(devices) > 1 and estimate.weights_bytes > max(d.free_bytes for d in devices) * USABLE_SHARE:
            sentence += " The model will be spread over the GPUs."
        return FitVerdict(True, sentence, [])

    sentence = f"{needs}, but {_where(devices)} {_has(devices, free, 'only ')}: it will not fit as set."
    suggestions: list[str] = []
    if estimate.batch_size > 1:
        batch = max_batch_for_memory(
            estimate.shape,
            dtype=estimate.dtype,
            quantization=estimate.quantization,
            prompt_tokens=estimate.prompt_tokens,
            max_new_tokens=estimate.max_new_tokens,
            free_bytes=usable,
        )
        if batch >= 1:
            suggestions.append(f"Use a batch size of {batch} or less (it is {estimate.batch_size} now).")
    if estimate.max_new_tokens > 1 and estimate.weights_bytes < usable:
        tokens = _max_new_tokens_that_fit(estimate, usable)
        if tokens >= 1:
            suggestions.append(
                f"Lower the maximum new tokens to {tokens} or less (it is {estimate.max_new_tokens} "
                "now); texts that need more will be cut short."
            )
    if on_gpu:
        order = {None: 0, "8bit": 1, "4bit": 2}
        for kind, label in (("8bit", "8-bit"), ("4bit", "4-bit")):
            if order[kind] <= order[estimate.quantization]:
                continue
            smaller = estimate.with_settings(quantization=kind)
            if smaller.total_bytes <= usable:
                needs = "" if quantization_available() else f"; {quantization_missing()}"
                suggestions.append(
                    f"Load the model in {label} (about {human_bytes(smaller.total_bytes)}; it changes the "
                    f"numbers slightly{needs})."
                )
                break
        suggestions.append(
            f"Use a GPU with at least {human_bytes(estimate.total_bytes / USABLE_SHARE)} free: close other "
            "programs that use this GPU, or run on another machine."
        )
    elif any(d.kind == "mps" for d in devices):
        if dtype_bytes(estimate.dtype) == 4:
            half = estimate.with_settings(dtype="float16")
            if half.total_bytes <= usable:
                suggestions.append(
                    f"Choose bfloat16 or float16 precision (about {human_bytes(half.total_bytes)}; "
                    "the numbers change slightly)."
                )
        # bitsandbytes' 8-/4-bit loading needs CUDA, so it is not offered on a Mac.
        suggestions.append(
            f"Close other programs, which share this memory with the GPU, or run on a Mac (or an "
            f"NVIDIA GPU) that can give the model at least {human_bytes(estimate.total_bytes / USABLE_SHARE)}."
        )
    else:
        if estimate.dtype in ("float32", "auto") and dtype_bytes(estimate.dtype) == 4:
            half = estimate.with_settings(dtype="bfloat16")
            if half.total_bytes <= usable:
                suggestions.append(
                    f"Choose bfloat16 precision (about {human_bytes(half.total_bytes)}; slower on some "
                    "processors and the numbers change slightly)."
                )
        suggestions.append(_more_host_memory(devices[0], estimate.total_bytes / USABLE_SHARE))
    suggestions.append("Or choose a smaller model.")
    return FitVerdict(False, sentence, suggestions)


def _more_host_memory(host: DeviceMemory, needed: float) -> str:
    """Where more memory comes from: the job script's --mem line in a SLURM task, else another computer."""
    if host.limited_by == SLURM_LIMIT or (host.limited_by and os.environ.get("SLURM_JOB_ID")):  # cgroup = --mem
        return (
            f"Ask SLURM for more memory: raise #SBATCH --mem in run.sbatch to at least "
            f"--mem={math.ceil(needed / (1 << 30))}G (this task has {_slurm_size(host.total_bytes)}), then submit again."
        )
    if host.limited_by:
        return f"Give this job or container at least {human_bytes(needed)} of memory (its {host.limited_by} is lower)."
    return (
        f"Run on a computer with an NVIDIA GPU with at least {human_bytes(needed)} of memory, or close other programs."
    )


def _slurm_size(n: int) -> str:
    """Bytes as SLURM writes --mem: 1G, 1536M."""
    return f"{n >> 30}G" if n % (1 << 30) == 0 else f"{n >> 20}M"


def check_fit(
    model: str | Path,
    *,
    dtype: str = "auto",
    device: str = "auto",
    quantization: str | None = None,
    batch_size: int = 1,
    prompt_tokens: int = 512,
    max_new_tokens: int = 1000,
    revision: str | None = None,
    token: str | None = None,
) -> tuple[MemoryEstimate, FitVerdict]:
    """Everything at once for the window and `gpi-desktop run`: estimate for `model` on `device`, and the verdict.

    'auto' precision counts 4 bytes a number where the run will be on the CPU
    (the loader's choice there) and 2 on a GPU.
    """

    if device == "mps":
        pick_device(device)  # no Apple GPU here: the run's own plain sentence, not "no NVIDIA GPU"
    devices = available_memory(device)
    on_cpu = not devices or all(d.kind == "cpu" for d in devices)
    if dtype == "auto" and on_cpu and device != "cuda":
        dtype = "float32"
    config = fetch_config(model, revision=revision, token=token)
    n_params = count_parameters(model, revision=revision, token=token)
    estimate = estimate_memory(
        config,
        dtype=dtype,
        quantization=quantization,
        batch_size=batch_size,
        prompt_tokens=prompt_tokens,
        max_new_tokens=max_new_tokens,
        n_params=n_params,
    )
    return estimate, fit_verdict(estimate, devices)


# --- 8-bit and 4-bit loading ----------------------------------------------------------------------


def quantization_available() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def quantization_missing() -> str:
    """Why this build cannot load in 8-bit or 4-bit, and how to get one that can (a clause, no full stop).

    An installed program (an installer's bundle) cannot take a pip package; a Python install can.
    """
    if getattr(sys, "frozen", False):
        return (
            "this installed program does not include the bitsandbytes package it needs; the Python install "
            "of GPI Desktop with its quantization extra can (see the README, 'Install on a fresh machine')"
        )
    return (
        "this Python environment lacks the bitsandbytes package: install GPI Desktop's quantization extra "
        'into it (pip install "gpi-desktop[quantization]") and start gpi-desktop again'
    )


def quantization_config(kind: str | None) -> BitsAndBytesConfig | None:
    """transformers' BitsAndBytesConfig for 8-bit or 4-bit (NF4) loading; None for full precision.

    Refuses in plain words where it cannot work: without an NVIDIA GPU, or
    without the optional bitsandbytes package.
    """
    if kind is None or kind == "none":
        return None
    if kind not in ("8bit", "4bit"):
        raise SettingsError(f"Quantization must be 8bit, 4bit or none; '{kind}' is not.")
    import torch

    if not torch.cuda.is_available():
        raise SettingsError(
            "8-bit and 4-bit loading needs an NVIDIA GPU, and none is available here; choose full precision "
            "(no quantization) to run on this computer."
        )
    if not quantization_available():
        raise SettingsError(f"8-bit and 4-bit loading is not possible here: {quantization_missing()}.")
    with TRANSFORMERS_LOCK:
        from transformers import BitsAndBytesConfig

    if kind == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute)
