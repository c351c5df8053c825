"""gpi_pack's own procedure, one prompt at a time, for the options the batched engine does not implement."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gpi_desktop.core.generation.config import EngineConfig
from gpi_desktop.core.generation.forward import input_device, pad_id
from gpi_desktop.core.generation.meter import Meter
from gpi_desktop.core.generation.plan import EncodedPrompt
from gpi_desktop.core.generation.pooling import pool_steps
from gpi_desktop.core.model.models import LoadedModel
from gpi_desktop.core.vocabulary.results import STOP_EOS, STOP_LENGTH, PromptResult


def reference_one(
    loaded: LoadedModel, prompt: EncodedPrompt, config: EngineConfig, options: dict[str, Any], meter: Meter
) -> PromptResult:
    """gpi_pack's own procedure: transformers' generate() with every hidden state kept, one prompt at a time."""
    model, tok = loaded.model, loaded.tokenizer
    device = input_device(model)
    input_ids = torch.tensor([prompt.ids], dtype=torch.long, device=device)
    kwargs = dict(options)
    streamed = int(options.get("num_beams", 1)) == 1  # generate() streams no beam search
    if streamed:
        kwargs["streamer"] = meter.streamer(prompt.row)
    kwargs.update(
        max_new_tokens=config.max_new_tokens,
        output_hidden_states=True,
        return_dict_in_generate=True,
        do_sample=False,
        pad_token_id=tok.eos_token_id if tok.eos_token_id is not None else pad_id(loaded),
        temperature=None,
        top_p=None,
        top_k=None,
    )
    with torch.inference_mode():
        out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), **kwargs)
    beams = getattr(out, "beam_indices", None)
    steps = []
    for s, layers in enumerate(out.hidden_states):
        beam = 0
        if beams is not None and s < beams.shape[1] and beams[0, s] >= 0:
            beam = int(beams[0, s])
        steps.append(layers[-1][beam, -1, :])
    new = out.sequences[0, input_ids.shape[1] :].tolist()
    if not streamed:
        meter.step(len(new))
    # generate() pads a finished sequence only in batches; alone, it ends at the end-of-sequence token.
    vector, from_step0 = pool_steps(steps[: len(new)], config.pooling)
    return PromptResult(
        row=prompt.row,
        text=tok.decode(new, skip_special_tokens=True),
        vector=vector.cpu().numpy().astype(np.float32, copy=True),
        n_tokens=len(new),
        stop_reason=STOP_EOS if new and new[-1] in loaded.info.eos_token_ids else STOP_LENGTH,
        pooled_from_step0=from_step0,
        prompt_tokens=len(prompt.ids),
    )
