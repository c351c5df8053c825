"""Pieces shared by the CPU and GPU benchmarks.

The baseline is gpi_pack's own procedure (gpi_pack.llm.generate_text): one
prompt at a time through transformers' `generate(output_hidden_states=True,
return_dict_in_generate=True)`, the last layer's states of the generated
steps pooled afterwards. Prompts arrive already tokenized on both sides, so
chat-template rendering is not part of either timing.
"""

from __future__ import annotations

import math
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python benchmarks/x.py` from a checkout
    sys.path.insert(0, str(ROOT))

from gpi_desktop.core.generation.engine import EncodedPrompt, EngineConfig, run_engine  # noqa: E402
from gpi_desktop.core.model.models import LoadedModel  # noqa: E402
from gpi_desktop.core.vocabulary.progress import NullState  # noqa: E402
from gpi_desktop.core.vocabulary.results import PromptResult  # noqa: E402


@dataclass
class Timing:
    label: str
    prompts: int
    tokens: int
    seconds: float
    peak_bytes: int | None = None
    batch_size: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def prompts_per_s(self) -> float:
        return self.prompts / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def rss_peak_bytes() -> int:
    """This process's resident-set high-water mark (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def sync(device: torch.device | str) -> None:
    kind = torch.device(device).type
    if kind == "cuda":
        torch.cuda.synchronize()
    elif kind == "mps":
        torch.mps.synchronize()


def gpi_pack_loop(
    loaded: LoadedModel, prompts: Sequence[EncodedPrompt], max_new_tokens: int, pooling: str = "mean"
) -> list[PromptResult]:
    """gpi_pack.llm.generate_text's loop, minus its file writes: generate() per prompt, pool the last layer."""
    model, tok = loaded.model, loaded.tokenizer
    device = model.get_input_embeddings().weight.device
    config = dict(
        max_new_tokens=max_new_tokens,
        output_hidden_states=True,
        return_dict_in_generate=True,
        do_sample=False,
        pad_token_id=tok.eos_token_id,
        temperature=None,
        top_p=None,
    )
    results = []
    for p in prompts:
        input_ids = torch.tensor([p.ids], dtype=torch.long, device=device)
        with torch.inference_mode():
            out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), **config)
        if pooling == "last":
            vector = out.hidden_states[-1][-1][0, -1, :]
        else:  # gpi_pack's mean: steps 1..n-1 (step 0 is the prompt pass)
            steps = out.hidden_states[1:] or out.hidden_states[:1]
            vector = torch.stack([h[-1][0, -1, :] for h in steps]).float().mean(0)
        new = out.sequences[0, input_ids.shape[1] :].tolist()
        results.append(
            PromptResult(
                row=p.row,
                text=tok.decode(new, skip_special_tokens=True),
                vector=vector.float().cpu().numpy(),
                n_tokens=len(new),
                stop_reason="length",
                pooled_from_step0=False,
                prompt_tokens=len(p.ids),
            )
        )
    return results


def run_engine_collect(
    loaded: LoadedModel,
    prompts: Sequence[EncodedPrompt],
    max_new_tokens: int,
    batch_size: int,
    pooling: str = "mean",
    state=None,
    **config,
) -> list[PromptResult]:
    results: list[PromptResult] = []
    run_engine(
        loaded,
        prompts,
        EngineConfig(pooling, max_new_tokens, batch_size, **config),
        state or NullState(),
        on_result=results.append,
    )
    return sorted(results, key=lambda r: r.row)


def timed(label: str, fn, device, prompts: int) -> tuple[Timing, list[PromptResult]]:
    sync(device)
    start = time.perf_counter()
    results = fn()
    sync(device)
    seconds = time.perf_counter() - start
    return Timing(label, prompts, sum(r.n_tokens for r in results), seconds), results


@dataclass
class Agreement:
    identical_share: float
    median_first_difference: float | None  # token position, over the texts that differ
    differing: int
    min_cosine: float
    median_cosine: float
    max_abs_difference: float


def first_difference(a: Sequence[int], b: Sequence[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def compare(
    reference: Sequence[PromptResult],
    other: Sequence[PromptResult],
    token_ids: dict[int, tuple[Sequence[int], Sequence[int]]] | None = None,
) -> Agreement:
    """How far `other` is from `reference` (same rows): identical texts, where they part, vector cosines.

    `token_ids` (row -> (reference ids, other ids)) gives the first differing
    token position; without it the position is counted in characters.
    """
    ref = {r.row: r for r in reference}
    same, positions, cosines, max_abs = 0, [], [], 0.0
    for r in other:
        a = ref[r.row]
        if a.text == r.text:
            same += 1
        else:
            if token_ids is not None:
                pos = first_difference(*token_ids[r.row])
            else:
                pos = first_difference(a.text, r.text)
            positions.append(pos if pos is not None else 0)
        va, vb = a.vector.astype(np.float64), r.vector.astype(np.float64)
        denom = np.linalg.norm(va) * np.linalg.norm(vb)
        cosines.append(float(va @ vb / denom) if denom else 1.0)
        max_abs = max(max_abs, float(np.max(np.abs(va - vb))))
    n = len(other)
    return Agreement(
        identical_share=same / n if n else 1.0,
        median_first_difference=statistics.median(positions) if positions else None,
        differing=n - same,
        min_cosine=min(cosines) if cosines else 1.0,
        median_cosine=statistics.median(cosines) if cosines else 1.0,
        max_abs_difference=max_abs,
    )


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    if n >= 1 << 30:
        return f"{n / (1 << 30):.2f} GiB"
    return f"{n / (1 << 20):.0f} MiB"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (pastes into benchmarks/README.md as printed)."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda items: "| " + " | ".join(s.ljust(w) for s, w in zip(items, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells)])


def mixed_lengths(n: int, low: int, high: int, seed: int = 0) -> list[int]:
    """n prompt lengths spread evenly (log scale) over [low, high], shuffled so input order is not sorted."""
    rng = np.random.default_rng(seed)
    if n == 1:
        return [high]
    lengths = [int(round(math.exp(math.log(low) + (math.log(high) - math.log(low)) * i / (n - 1)))) for i in range(n)]
    rng.shuffle(lengths)
    return lengths
