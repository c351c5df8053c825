"""The key/value cache the engine runs with: transformers' dynamic layers, grown in chunks, rows placed into it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, cast

import torch

from gpi_desktop.core.vocabulary.hf_lock import TRANSFORMERS_LOCK

if TYPE_CHECKING:
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

CACHE_CHUNK = 128


class PlacingLayer(Protocol):
    """A growing cache layer, as the engine uses it: rows' own caches placed into it."""

    def place(self, row: int, batch: int, width: int, keys: torch.Tensor, values: torch.Tensor) -> None: ...


def placing_layers(cache: DynamicCache, count: int) -> list[PlacingLayer]:
    """The layers of a cache `new_cache` made growing (made now for a cache that makes them on first use)."""
    if not cache.layers:
        make = cache.layer_class_to_replicate
        if make is None:  # pragma: no cover - new_cache set it
            raise RuntimeError("the cache cannot make its layers")
        cache.layers = [make() for _ in range(count)]
    return cast("list[PlacingLayer]", cache.layers)  # new_cache put GrowingLayers there


def _growing_layer_class() -> type[DynamicLayer]:
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
            # transformers leaves DynamicLayer.__init__ unannotated (untyped_calls_exclude does not reach super()).
            super().__init__()  # type: ignore[no-untyped-call]
            self.length = 0
            self.buf_k: torch.Tensor | None = None
            self.buf_v: torch.Tensor | None = None

        def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
            self.device = key_states.device
            self.is_initialized = True

        def _buffers(self) -> tuple[torch.Tensor, torch.Tensor]:
            if self.buf_k is None or self.buf_v is None:  # pragma: no cover - placed or updated before use
                raise RuntimeError("the cache layer holds no buffers yet")
            return self.buf_k, self.buf_v

        def _view(self) -> tuple[torch.Tensor, torch.Tensor]:
            buf_k, buf_v = self._buffers()
            self.keys = keys = buf_k[:, :, : self.length, :]
            self.values = values = buf_v[:, :, : self.length, :]
            return keys, values

        def _reserve(self, needed: int, like_k: torch.Tensor, like_v: torch.Tensor, batch: int) -> None:
            if self.buf_k is not None and self.buf_k.shape[2] >= needed:
                return
            capacity = needed + CACHE_CHUNK
            k = like_k.new_zeros((batch, like_k.shape[1], capacity, like_k.shape[3]))
            v = like_v.new_zeros((batch, like_v.shape[1], capacity, like_v.shape[3]))
            if self.length:
                old_k, old_v = self._buffers()
                k[:, :, : self.length].copy_(old_k[:, :, : self.length])
                v[:, :, : self.length].copy_(old_v[:, :, : self.length])
            self.buf_k, self.buf_v = k, v

        def update(
            self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
        ) -> tuple[torch.Tensor, torch.Tensor]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            n = key_states.shape[2]
            self._reserve(self.length + n, key_states, value_states, key_states.shape[0])
            buf_k, buf_v = self._buffers()
            buf_k[:, :, self.length : self.length + n].copy_(key_states)
            buf_v[:, :, self.length : self.length + n].copy_(value_states)
            self.length += n
            return self._view()

        def place(self, row: int, batch: int, width: int, keys: torch.Tensor, values: torch.Tensor) -> None:
            """Put one prompt's own cache (1, heads, L, dim) into row `row`, right-aligned at `width` (left padding).

            `width` is the cache's length once it holds tokens (a row refilled in a running batch).
            """
            if not self.is_initialized:
                self.lazy_initialization(keys, values)
                self._reserve(width, keys, values, batch)  # zeros: padding never holds garbage such as NaN
                self.length = width
            n = keys.shape[2]
            buf_k, buf_v = self._buffers()
            if n < width:  # a refilled row: nothing of the slot's previous prompt stays in its padding
                buf_k[row : row + 1, :, : width - n].zero_()
                buf_v[row : row + 1, :, : width - n].zero_()
            buf_k[row : row + 1, :, width - n : width].copy_(keys)
            buf_v[row : row + 1, :, width - n : width].copy_(values)
            self._view()

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            if self.buf_k is None or self.buf_v is None:
                return
            self.buf_k = self.buf_k[:, :, : self.length + CACHE_CHUNK // 4].index_select(
                0, indices.to(self.buf_k.device)
            )
            self.buf_v = self.buf_v[:, :, : self.length + CACHE_CHUNK // 4].index_select(
                0, indices.to(self.buf_v.device)
            )
            self._view()

        def reset(self) -> None:
            self.buf_k = self.buf_v = None
            self.length = 0
            super().reset()

    return GrowingLayer


_GROWING: type[DynamicLayer] | None = None


def new_cache(model: Any) -> tuple[DynamicCache, bool]:
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
