"""What every batch of one engine run shares: the model, the settings, where results go (`Job`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from gpi_desktop.core.generation.cache import new_cache
from gpi_desktop.core.generation.config import EngineConfig, resolve_prefill
from gpi_desktop.core.generation.exact import key_lengths
from gpi_desktop.core.generation.forward import LastStateHook, cache_argument, input_device, pad_id
from gpi_desktop.core.generation.meter import Meter
from gpi_desktop.core.generation.prefix import SharedPrefix, shared_prefix
from gpi_desktop.core.model.models import LoadedModel
from gpi_desktop.core.vocabulary.progress import TaskState
from gpi_desktop.core.vocabulary.results import PromptResult

if TYPE_CHECKING:
    from transformers import DynamicCache

    from gpi_desktop.core.generation.plan import EncodedPrompt


@dataclass
class Job:
    """What every batch of one `run_engine` call shares: the model, the settings, where results go."""

    loaded: LoadedModel
    config: EngineConfig
    options: dict[str, Any]
    state: TaskState
    hook: LastStateHook
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
    exact: bool  # the row-exact kernels are on (exact.py): attention is told each row's keys
    done: set[int] = field(default_factory=set)  # rows finished in this call

    @classmethod
    def open(
        cls,
        loaded: LoadedModel,
        config: EngineConfig,
        options: dict[str, Any],
        state: TaskState,
        finished: set[int],
        on_result: Callable[[PromptResult], None],
        meter: Meter,
        prompts: Sequence[EncodedPrompt],
        exact: bool,
    ) -> Job:
        model = loaded.model
        growing = new_cache(model)[1]
        prefill = resolve_prefill(config, growing)
        # Only where each row's cache can be built from a copy (plain full attention).
        prefix = SharedPrefix(())
        if growing:
            prefix = shared_prefix(prompts) if config.shared_prefix is None else SharedPrefix(config.shared_prefix)
        device = input_device(model)
        return cls(
            loaded,
            config,
            options,
            state,
            LastStateHook(model.base_model),
            prefix,
            finished,
            on_result,
            meter,
            growing,
            prefill,
            device,
            torch.tensor(loaded.info.eos_token_ids, device=device),
            pad_id(loaded),
            cache_argument(model),
            exact,
        )

    @property
    def model(self) -> Any:  # LoadedModel.model
        return self.loaded.model

    def deliver(self, result: PromptResult) -> None:
        self.done.add(result.row)
        if result.row not in self.finished:
            self.on_result(result)

    def forward(
        self, input_ids: torch.Tensor, mask: torch.Tensor | None, positions: torch.Tensor, cache: DynamicCache
    ) -> tuple[torch.Tensor, torch.Tensor]:
        extra = key_lengths(mask) if self.exact else {}
        out = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{self.cache_arg: cache},
            **extra,
        )
        # Under a multi-GPU device map the last layers (and so states and logits) sit on another GPU.
        return self.hook.take().to(self.device), out.logits[:, -1, :].float().to(self.device)
