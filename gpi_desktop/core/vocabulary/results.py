"""What a run produces for each prompt."""

from __future__ import annotations

from dataclasses import dataclass

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
