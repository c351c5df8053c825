"""oneDNN for the decoder's matrix products on the CPU, where it beats the default BLAS for a few rows.

Measured (benchmarks/README.md, issue 16): on this project's CPU (AMD EPYC,
AVX2) PyTorch's float32 `linear` goes to MKL's sgemm, which for 2-32 rows
(a small batch's decoding step) costs 2-4 times a one-row product although
it reads the same weights; oneDNN's linear, which PyTorch ships for its
compiler (`torch.ops.mkldnn._linear_pointwise`, dense weights, no copy),
stays close to the one-row cost and is faster for prompt passes too. A
single row (the loop's decoding step) keeps MKL, which was as fast or
faster there. The numbers stay float32 sums of the same products in another
order: well within the engine's 1e-5 of generate() (tests/test_engine*.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F


def onednn_available() -> bool:
    op = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
    if op is None or not torch.backends.mkldnn.is_available():
        return False
    try:  # a build whose op exists but cannot run (no oneDNN for this CPU) falls back to MKL
        x, w = torch.ones(2, 8), torch.ones(4, 8)
        return bool(torch.equal(op(x, w, None, "none", [], ""), F.linear(x, w)))
    except RuntimeError:
        return False


def _onednn_forward(module: torch.nn.Linear) -> Callable[[torch.Tensor], torch.Tensor]:
    op = torch.ops.mkldnn._linear_pointwise

    def forward(x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x.shape[-1]
        if rows < 2 or x.dtype != torch.float32 or not x.is_contiguous():
            return F.linear(x, module.weight, module.bias)
        y: torch.Tensor = op(x.reshape(rows, x.shape[-1]), module.weight, module.bias, "none", [], "")
        return y.reshape(*x.shape[:-1], y.shape[-1])

    return forward


@contextmanager
def onednn_linears(model: Any) -> Iterator[None]:
    """While the engine runs: the decoder layers' float32 CPU `nn.Linear`s compute with oneDNN (see module doc)."""
    layers = getattr(getattr(model, "base_model", None), "layers", None)
    on_cpu = model.get_input_embeddings().weight.device.type == "cpu"
    if layers is None or not on_cpu or model.dtype != torch.float32 or not onednn_available():
        yield
        return
    linears = [m for m in layers.modules() if type(m) is torch.nn.Linear and "forward" not in m.__dict__]
    for m in linears:
        # On purpose: an instance attribute shadows the class's forward (deleted again below).
        m.forward = _onednn_forward(m)  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        for m in linears:
            del m.forward
