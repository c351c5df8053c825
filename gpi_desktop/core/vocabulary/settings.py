"""Typed settings of a run, with gpi_pack's defaults, and their validation."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from gpi_desktop.core.vocabulary.errors import SettingsError

DEFAULT_MODEL = "meta-llama/Llama-3.1-8B-Instruct"
POOLINGS = ("last", "mean", "max")
DTYPES = ("auto", "bfloat16", "float16", "float32")
DEVICES = ("auto", "cuda", "mps", "cpu")
TEMPLATE_STYLES = ("gpi_pack", "model-card")
STRATEGIES = ("batched", "one-at-a-time")


@dataclass(frozen=True)
class RunSettings:
    """Everything that decides the numbers of a run (and so goes in the manifest)."""

    model: str = DEFAULT_MODEL
    task: str = "create"  # "create", "repeat" or an instruction used verbatim
    pooling: str = "last"
    max_new_tokens: int = 1000
    dtype: str = "auto"
    device: str = "auto"
    template: str = "gpi_pack"  # gpi_pack: add_generation_prompt=False; model-card: True
    batch_size: int | str = "auto"  # a number, or "auto"
    strategy: str = "batched"  # "one-at-a-time" is gpi_pack's own generate() loop
    revision: str | None = None
    quantization: str | None = None  # None, "8bit" or "4bit" (bitsandbytes, CUDA only); changes the numbers
    # Pickle checkpoints (.bin/.pt) can run code when loaded: refused unless the user says they trust the source.
    allow_pickle_weights: bool = False
    template_options: dict[str, Any] = field(default_factory=dict)
    generation_options: dict[str, Any] = field(default_factory=dict)
    # The date the chat template sees (YYYY-MM-DD); None: the day the job is created (core/vocabulary/template_date.py).
    template_date: str | None = None

    def validate(self) -> RunSettings:
        if self.pooling not in POOLINGS:
            raise SettingsError(f"Pooling must be one of {', '.join(POOLINGS)}; '{self.pooling}' is not.")
        if not isinstance(self.max_new_tokens, int) or isinstance(self.max_new_tokens, bool) or self.max_new_tokens < 1:
            raise SettingsError("The maximum number of new tokens must be a whole number of at least 1.")
        if self.dtype not in DTYPES:
            raise SettingsError(f"Precision must be one of {', '.join(DTYPES)}; '{self.dtype}' is not.")
        if self.device not in DEVICES:
            raise SettingsError(f"Device must be one of {', '.join(DEVICES)}; '{self.device}' is not.")
        if self.template not in TEMPLATE_STYLES:
            raise SettingsError(f"Chat formatting must be 'gpi_pack' or 'model-card'; '{self.template}' is not.")
        if self.strategy not in STRATEGIES:
            raise SettingsError(f"Strategy must be 'batched' or 'one-at-a-time'; '{self.strategy}' is not.")
        parse_batch_size(self.batch_size)
        if self.quantization not in (None, "8bit", "4bit"):
            raise SettingsError(f"Quantization must be 8bit, 4bit or none; '{self.quantization}' is not.")
        if not str(self.task).strip():
            raise SettingsError("The task is empty: choose create, repeat, or write your own instruction.")
        if not str(self.model).strip():
            raise SettingsError("No model is given: enter a Hugging Face model id or choose a model folder.")
        if self.template_date is not None:
            from gpi_desktop.core.vocabulary.template_date import parse_template_date

            parse_template_date(self.template_date)
        from gpi_desktop.core.vocabulary.options import check_generation_options, check_template_options

        check_template_options(self.template_options)
        check_generation_options(self.generation_options)
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def numbers_key(self) -> dict[str, Any]:
        """The settings that change the results (batch size and strategy do not, by contract)."""
        d = self.to_dict()
        d.pop("batch_size")
        d.pop("strategy")
        d.pop("allow_pickle_weights")
        if d["template_date"] is None:  # the date the job got is in its journal; keys of earlier jobs stay as they were
            d.pop("template_date")
        return d


def parse_batch_size(value: int | str) -> int | str:
    if isinstance(value, str):
        v = value.strip().lower()
        if v == "auto":
            return "auto"
        try:
            value = int(v)
        except ValueError:
            raise SettingsError(f"Batch size must be a whole number or 'auto'; '{value}' is not.") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SettingsError("Batch size must be a whole number of at least 1, or 'auto'.")
    return value


@dataclass(frozen=True)
class ExportSettings:
    prefix: str = "hidden_"
    save_name: str = "generated_texts"

    def validate(self) -> ExportSettings:
        for label, value in (("file prefix", self.prefix), ("texts file name", self.save_name)):
            if any(c in value for c in '/\\:*?"<>|') or value in (".", ".."):
                raise SettingsError(
                    f"The {label} '{value}' cannot be used in a file name; use letters, digits, - and _."
                )
        if not self.save_name:
            raise SettingsError("The texts file name is empty; the gpi_pack default is 'generated_texts'.")
        return self


def stable_hash(obj: Any) -> str:
    """sha256 of a JSON rendering that does not depend on dict order."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()
