"""What a run produces for each prompt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

STOP_EOS = "end of text"
STOP_LENGTH = "token limit"


@dataclass(frozen=True)
class PromptResult:
    """One finished prompt. `row` is the zero-based data row of the input file."""

    row: int
    text: str
    vector: np.ndarray  # float32, shape (H,)
    n_tokens: int  # generated tokens, end-of-sequence token included when it came
    stop_reason: str  # STOP_EOS or STOP_LENGTH
    pooled_from_step0: bool = False  # n == 1 with mean/max: pooled from the prompt's pass (flagged)
    prompt_tokens: int = 0
    prompt_ids_sha256: str = ""  # instructions.token_ids_sha256 of the prompt's token ids ("" where not known)

    @property
    def hit_limit(self) -> bool:
        return self.stop_reason == STOP_LENGTH

    def to_record(self, *, prompt_ids: bool = True) -> dict[str, Any]:
        """Every field but the vector, as plain JSON values (a journal or shard record).

        prompt_ids=False leaves out prompt_ids_sha256: the journal's records never held it (the job
        recomputes it from the prompts), and its record format is fixed.
        """
        record: dict[str, Any] = {
            "row": int(self.row),
            "text": self.text,
            "n_tokens": int(self.n_tokens),
            "stop_reason": self.stop_reason,
            "pooled_from_step0": bool(self.pooled_from_step0),
            "prompt_tokens": int(self.prompt_tokens),
        }
        if prompt_ids:
            record["prompt_ids_sha256"] = self.prompt_ids_sha256
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any], vector: np.ndarray) -> PromptResult:
        """The result `to_record` wrote, with its vector; extra keys (offsets, input cells) are ignored."""
        return cls(
            row=record["row"],
            text=record["text"],
            vector=vector,
            n_tokens=record["n_tokens"],
            stop_reason=record["stop_reason"],
            pooled_from_step0=record["pooled_from_step0"],
            prompt_tokens=record["prompt_tokens"],
            prompt_ids_sha256=record.get("prompt_ids_sha256", ""),  # journals and older shards lack it
        )
