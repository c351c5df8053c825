"""What the engine reads from the model around a forward pass: its device, padding id, cache argument, last state."""

from __future__ import annotations

from typing import Any

import torch

from gpi_desktop.core.model.models import LoadedModel


class LastStateHook:
    """Keeps only the last position's final-layer state of each forward pass."""

    def __init__(self, decoder: torch.nn.Module) -> None:
        self.state: torch.Tensor | None = None
        self.handle = decoder.register_forward_hook(self._grab)

    def _grab(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        hidden = output[0] if isinstance(output, (tuple, list)) else output.last_hidden_state
        self.state = hidden[:, -1, :].detach()

    def take(self) -> torch.Tensor:
        state, self.state = self.state, None
        if state is None:  # pragma: no cover - a model whose decoder did not run
            raise RuntimeError("the decoder hook saw no forward pass")
        return state

    def remove(self) -> None:
        self.handle.remove()


def input_device(model: Any) -> torch.device:
    device: torch.device = model.get_input_embeddings().weight.device
    return device


def pad_id(loaded: LoadedModel) -> int:
    tok = loaded.tokenizer
    for candidate in (
        tok.pad_token_id,
        getattr(loaded.model.generation_config, "pad_token_id", None),
        tok.eos_token_id,
    ):
        if candidate is not None:
            return int(candidate if not isinstance(candidate, (list, tuple)) else candidate[0])
    return int(loaded.info.eos_token_ids[0])


def is_out_of_memory(exc: BaseException) -> bool:
    oom: type[BaseException] | None = getattr(torch, "OutOfMemoryError", None) or getattr(
        torch.cuda, "OutOfMemoryError", None
    )
    text = str(exc).lower()
    # The CPU allocator says "can't allocate memory" where CUDA says "out of memory".
    return (oom is not None and isinstance(exc, oom)) or (
        isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)
    )


def release_memory() -> None:
    import gc

    gc.collect()  # model outputs can sit in reference cycles
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if torch.backends.mps.is_available():
        torch.mps.empty_cache()  # MPS keeps freed blocks cached as CUDA does; the retry needs them back


def cache_argument(model: Any) -> str:
    # transformers renamed `past_key_values` to `cache` in the forward signature (5.x deprecation).
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
