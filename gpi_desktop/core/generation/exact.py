"""Each row's numbers a function of its own tokens alone, whatever else runs in the batch (issue 29), on the CPU.

A batched decoding step computes every row with the same kernels, but a
kernel's order of summation can depend on the batch: PyTorch's float32
`linear` goes to MKL, whose one-row and 2-15-row products sum in other
orders than its 16+-row ones; attention over a batch reads each row's keys
at a padded width (the other rows decide it), summing scores and values in
blocks that the padding shifts; and elementwise kernels switch from vector
to scalar code at the end of a tensor, whose size is the batch's. Measured
on this project's CPUs: 0/16 rows bit-equal to their batch-1 numbers at
batch 8 (SmolLM2-135M-Instruct, up to 2.7e-5).

While the engine runs, `row_exact_kernels` gives the model:

- every float32 `nn.Linear` (the decoder's and the output layer's) through
  oneDNN's linear, a single row padded to two: oneDNN's float32 product
  gives each row the same bits for any count of rows from two up (checked
  for 2-300 rows, any memory alignment, 1 and 2 threads; tests pin it on
  the models' own shapes);
- attention (`row_attention`) run row by row over exactly that row's keys
  (its prompt, its generated tokens, never the padding), so its blocks
  depend on the row's length alone;
- rotary position tables computed for fixed blocks of positions and looked
  up, so a position's cosine does not depend on which tensor it sat in.

The rest of the step (norms, activations, residuals) computes each row in
the same way at any batch size for the models' widths (multiples of the
vector length); tests/test_row_exact.py compares rows bit for bit across
batch sizes, orders and added rows. The bits still depend on the CPU's
instruction set, oneDNN's version and the thread count (the manifest
records them). Elsewhere (a GPU, half precision, sliding-window caches)
the kernels stay PyTorch's own and rows can differ in the last bits with
the batch (docs/architecture.md says what the GPU would need).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F

from gpi_desktop.core.generation.cpu_linear import onednn_available
from gpi_desktop.core.vocabulary.hf_lock import TRANSFORMERS_LOCK

ATTENTION_NAME = "gpi_row_exact"
ROTARY_BLOCK = 256  # positions per block of the rotary table


def applies(model: Any) -> bool:
    """Whether the model's numbers can be made row-exact: float32 on the CPU with oneDNN, full attention only."""
    on_cpu = model.get_input_embeddings().weight.device.type == "cpu"
    layer_types = set(getattr(model.config, "layer_types", None) or ["full_attention"])
    return (
        on_cpu
        and model.dtype == torch.float32
        and layer_types == {"full_attention"}
        and not getattr(model.config, "sliding_window", None)
        and onednn_available()
    )


def _exact_linear(module: torch.nn.Linear) -> Callable[[torch.Tensor], torch.Tensor]:
    op = torch.ops.mkldnn._linear_pointwise

    def forward(x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x.shape[-1]
        flat = x.reshape(rows, x.shape[-1])
        if rows == 1:  # oneDNN sums one row in another order than two or more
            flat = flat.expand(2, -1)
        y: torch.Tensor = op(flat.contiguous(), module.weight, module.bias, "none", [], "")
        return y[:rows].reshape(*x.shape[:-1], y.shape[-1])

    return forward


def row_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention of each row over exactly its own keys (a transformers attention function).

    `row_key_lengths` (passed with the model's inputs, see `key_lengths`):
    how many keys each row attends to, which sit right-aligned in the cache
    (None: every key); a pass of several tokens (one prompt's) is causal, its
    tokens being the row's last. transformers gives a custom attention no mask.
    """
    batch, _, q_len, _ = query.shape
    width = key.shape[2]
    lengths = kwargs.get("row_key_lengths") or [width] * batch
    out = query.new_empty(batch, q_len, query.shape[1], query.shape[3])
    for b, n in enumerate(lengths):
        n = int(n)
        mask = None
        if q_len > 1:
            mask = torch.ones(q_len, n, dtype=torch.bool, device=query.device).tril(n - q_len)
        o = F.scaled_dot_product_attention(
            query[b : b + 1],
            key[b : b + 1, :, width - n :],
            value[b : b + 1, :, width - n :],
            attn_mask=mask,
            scale=scaling,
            enable_gqa=True,
        )
        out[b] = o[0].transpose(0, 1)
    return out, None


def key_lengths(mask: torch.Tensor | None) -> dict[str, list[int]]:
    """The model inputs that tell `row_attention` each row's keys, from the engine's 2D mask (None: all keys)."""
    return {} if mask is None else {"row_key_lengths": [int(n) for n in mask.sum(-1).tolist()]}


def _register_attention() -> None:
    with TRANSFORMERS_LOCK:
        from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION_NAME, row_attention)


RotaryForward = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _table_rotary(rotary: torch.nn.Module) -> RotaryForward:
    """The rotary module's forward through a table of fixed blocks of positions (see module doc)."""
    real: RotaryForward = rotary.forward
    blocks: dict[tuple[int, torch.dtype, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}

    def block(k: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = (k, like.dtype, like.device)
        if key not in blocks:
            positions = torch.arange(k * ROTARY_BLOCK, (k + 1) * ROTARY_BLOCK, device=like.device)[None, :]
            cos, sin = real(like, positions)
            blocks[key] = (cos[0], sin[0])
        return blocks[key]

    def forward(x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        top = int(position_ids.max()) // ROTARY_BLOCK
        parts = [block(k, x) for k in range(top + 1)]
        cos = torch.cat([p[0] for p in parts])
        sin = torch.cat([p[1] for p in parts])
        return cos[position_ids], sin[position_ids]

    return forward


def _config_objects(model: Any) -> list[Any]:
    configs = [model.config]
    for name in ("text_config", "decoder"):
        sub = getattr(model.config, name, None)
        if sub is not None and hasattr(sub, "_attn_implementation"):
            configs.append(sub)
    return configs


@contextmanager
def row_exact_kernels(model: Any) -> Iterator[bool]:
    """While the engine runs: the row-exact kernels of the module doc, where `applies`; yields whether they are on."""
    if not applies(model):
        yield False
        return
    _register_attention()
    linears = [m for m in model.modules() if type(m) is torch.nn.Linear and "forward" not in m.__dict__]
    rotary = getattr(model.base_model, "rotary_emb", None)
    configs = _config_objects(model)
    before = [c._attn_implementation for c in configs]
    for m in linears:
        m.forward = _exact_linear(m)  # type: ignore[method-assign,assignment]  # an instance's own forward, removed after
    if rotary is not None:
        rotary.forward = _table_rotary(rotary)  # an instance's own forward, removed after
    for c in configs:
        c._attn_implementation = ATTENTION_NAME
    try:
        yield True
    finally:
        for m in linears:
            del m.forward
        if rotary is not None:
            del rotary.forward
        for c, impl in zip(configs, before):
            c._attn_implementation = impl


def _library_versions() -> dict[str, str]:
    """MKL's and oneDNN's versions as this PyTorch build reports them ("" where it has none)."""
    shown = torch.__config__.show()
    found = {}
    for name, pattern in (("mkl", r"Math Kernel Library Version ([\w.]+)"), ("onednn", r"MKL-DNN v([\w.]+)")):
        match = re.search(pattern, shown)
        found[name] = match.group(1) if match else ""
    return found


def numbers_record(model: Any, *, row_exact: bool, one_at_a_time: bool) -> dict[str, object]:
    """What a job's bytes depend on beyond its inputs and settings, for the manifest (issue 29).

    `row_exact`: the run asked for the row-exact kernels (the engine's
    default); they apply where `applies` says so.
    """
    device = model.get_input_embeddings().weight.device
    exact_on = row_exact and not one_at_a_time and applies(model)
    versions = _library_versions()
    if device.type == "cuda":
        kernels = f"cuBLAS and PyTorch {torch.__version__}'s CUDA kernels (CUDA {torch.version.cuda})"
    elif device.type != "cpu":
        kernels = f"PyTorch {torch.__version__}'s {device.type} kernels"
    else:
        # MKL_CBWR picks MKL's code path (and so its sums' order) for the process: part of the kernel library.
        mkl = f"MKL {versions['mkl']}" + (f" (MKL_CBWR={os.environ['MKL_CBWR']})" if os.environ.get("MKL_CBWR") else "")
        kernels = (
            f"oneDNN {versions['onednn']} (linear layers), PyTorch {torch.__version__} with {mkl} (attention, the rest)"
            if exact_on
            else f"{mkl} and oneDNN {versions['onednn']} through PyTorch {torch.__version__}"
        )
    return {
        "device": device.type,
        "cpu_instruction_set": torch.backends.cpu.get_cpu_capability(),
        "kernels": kernels,
        "threads": torch.get_num_threads(),
        # Rows computed alone (one at a time) or with the row-exact kernels: a row's numbers are its own.
        "rows_independent_of_batch": bool(exact_on or one_at_a_time),
        "depends_on": "the inputs, the settings, the CPU's instruction set, the kernel library and the thread count"
        + ("" if exact_on or one_at_a_time else ", and the rows computed beside each row (the batch)"),
    }
