"""Small random-weight chat models built offline.

Used for the bundled demo model, for the tests and for the CPU benchmark: a
real Hugging Face model folder (config, safetensors weights, a tokenizer
trained here with `tokenizers`, a chat template), loaded through the same
`from_pretrained` path as a downloaded model. Its texts are gibberish; its
numbers follow exactly the same code path as a real model's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

_CORPUS = """
The committee met on Tuesday to discuss the new budget for schools and hospitals.
Voters in rural districts care about jobs, roads and the price of fuel.
A candidate who promises lower taxes and better services must explain how to pay for them.
Immigration, climate policy and health care dominate the campaign in many countries.
The senator argued that the bill would help families with young children.
Researchers asked participants to read a short text and rate the speaker's competence.
Please write a short speech about education. Repeat the following text exactly.
Economic growth slowed in the third quarter while unemployment remained low.
Citizens expect transparency from their government and honest answers from politicians.
The mayor announced a plan to build affordable housing near the new train station.
"""

LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

# Gemma-style: a template that refuses the system role, as several real models do.
NO_SYSTEM_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{{ '<start_of_turn>' + message['role'] + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


@dataclass(frozen=True)
class TinySpec:
    architecture: str = "llama"  # "llama" or "qwen2"
    hidden_size: int = 64
    intermediate_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    vocab_size: int = 400
    seed: int = 0
    # Scales the end-of-sequence rows of the output layer so that some prompts
    # stop early and others run to the token limit (a batch that finishes
    # unevenly is what the engine must get right).
    eos_boost: float = 0.0
    chat_template: str | None = None  # None: the architecture's template above
    max_positions: int = 4096  # max_position_embeddings: a small one makes prompts too long for the context
    # The output layer's rows (None: the tokenizer's size). Rows beyond the tokenizer's tokens are zero, so the
    # model never picks a token the tokenizer cannot decode, while every step still reads the whole layer.
    model_vocab_size: int | None = None
    extra_config: tuple[tuple[str, Any], ...] = ()  # more config.json items (rope, norm epsilon)
    # Where the random weights are drawn and in what precision: a full-size model is built on the GPU in
    # bfloat16, never as float32 in the computer's memory.
    device: str = "cpu"
    dtype: str = "float32"


# Llama-3.1-8B(-Instruct)'s config.json, less its token ids and what only loading needs.
LLAMA_31_8B_CONFIG: dict[str, Any] = {
    "vocab_size": 128256,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5,
    "hidden_act": "silu",
    "rope_theta": 500000.0,
    "tie_word_embeddings": False,
    "rope_scaling": {
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
}


def llama_31_8b_spec(**changes: Any) -> TinySpec:
    """Llama-3.1-8B's exact shape (every weight matrix, the 128256-row output layer) with a small tokenizer."""
    c = LLAMA_31_8B_CONFIG
    shaped = {
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "max_position_embeddings",
    }
    spec = TinySpec(
        architecture="llama",
        hidden_size=c["hidden_size"],
        intermediate_size=c["intermediate_size"],
        num_layers=c["num_hidden_layers"],
        num_heads=c["num_attention_heads"],
        num_kv_heads=c["num_key_value_heads"],
        max_positions=c["max_position_embeddings"],
        model_vocab_size=c["vocab_size"],
        extra_config=tuple((k, v) for k, v in c.items() if k not in shaped),
    )
    return replace(spec, **changes)


def _train_tokenizer(vocab_size: int, specials: list[str], bos: str, eos: str, pad: str) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS.strip().splitlines() * 4, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad)


def build_tiny_model(folder: str | Path, spec: TinySpec = TinySpec()) -> Path:
    """Write a random-weight chat model to `folder` and return the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model, tokenizer = tiny_model(spec)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_model(spec: TinySpec = TinySpec()) -> tuple[Any, Any]:
    """The random-weight model (on spec.device, in spec.dtype) and its tokenizer, in memory."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig, LlamaConfig, Qwen2Config

    config_class: type[LlamaConfig] | type[Qwen2Config]

    if spec.architecture == "llama":
        specials = [
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|eot_id|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|finetune_right_pad_id|>",
        ]
        tokenizer = _train_tokenizer(
            spec.vocab_size, specials, "<|begin_of_text|>", "<|eot_id|>", "<|finetune_right_pad_id|>"
        )
        tokenizer.chat_template = spec.chat_template or LLAMA3_TEMPLATE
        eos_tokens = ["<|end_of_text|>", "<|eot_id|>"]
        config_class = LlamaConfig
        extra: dict[str, Any] = {}
    elif spec.architecture == "qwen2":
        specials = ["<bos>", "<eos>", "<end_of_turn>", "<start_of_turn>", "<pad>"]
        tokenizer = _train_tokenizer(spec.vocab_size, specials, "<bos>", "<end_of_turn>", "<pad>")
        tokenizer.chat_template = spec.chat_template or NO_SYSTEM_TEMPLATE
        eos_tokens = ["<eos>", "<end_of_turn>"]
        config_class = Qwen2Config
        extra = {"tie_word_embeddings": False}
    else:
        raise ValueError(f"unknown tiny architecture {spec.architecture!r}")

    eos_ids = cast("list[int]", tokenizer.convert_tokens_to_ids(eos_tokens))  # a list of tokens gives a list
    if spec.model_vocab_size is not None and spec.model_vocab_size < len(tokenizer):
        raise ValueError(f"model_vocab_size {spec.model_vocab_size} is below the tokenizer's {len(tokenizer)} tokens")
    config = config_class(
        vocab_size=spec.model_vocab_size or len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        max_position_embeddings=spec.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=eos_ids,
        pad_token_id=tokenizer.pad_token_id,
        **{**extra, **dict(spec.extra_config)},
    )
    torch.manual_seed(spec.seed)
    with torch.device(spec.device):
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, spec.dtype))
    with torch.no_grad():
        head = model.get_output_embeddings().weight
        head[len(tokenizer) :] = 0
        for i in eos_ids if spec.eos_boost else ():
            head[i] *= spec.eos_boost
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=eos_ids, pad_token_id=tokenizer.pad_token_id
    )
    return model, tokenizer
