"""Task -> instruction, chat messages, and the rendered prompt tokens (gpi_pack contract, points 1-2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpi_desktop.core.errors import ModelError

CREATE_INSTRUCTION = "You are a text generator who always produces the texts suggested by the prompts."
REPEAT_INSTRUCTION = "You are a text generator who just repeats the input text."


def instruction_for(task: str) -> str:
    if task == "create":
        return CREATE_INSTRUCTION
    if task == "repeat":
        return REPEAT_INSTRUCTION
    return task


def messages_for(instruction: str, prompt: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": instruction}, {"role": "user", "content": prompt}]


def merged_messages_for(instruction: str, prompt: str) -> list[dict[str, str]]:
    """The fallback for templates without a system role: one user message holding both."""
    return [{"role": "user", "content": f"{instruction}\n\n{prompt}"}]


@dataclass(frozen=True)
class Renderer:
    """Turns a prompt into the token ids the model sees, exactly as gpi_pack renders them."""

    tokenizer: Any
    instruction: str
    add_generation_prompt: bool
    template_options: dict
    system_role: bool

    def encode(self, prompt: str) -> list[int]:
        build = messages_for if self.system_role else merged_messages_for
        return _apply(self.tokenizer, build(self.instruction, prompt), self.add_generation_prompt, self.template_options)


def _apply(tokenizer, messages, add_generation_prompt: bool, options: dict) -> list[int]:
    # Tokenized by the template call itself (as gpi_pack does), so special tokens such as
    # BOS come from the template text and are not added a second time.
    enc = tokenizer.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=add_generation_prompt, return_dict=True, **options
    )
    ids = enc["input_ids"]
    if ids and isinstance(ids[0], list):
        ids = ids[0]
    return list(ids)


def make_renderer(tokenizer, task: str, template_style: str, template_options: dict | None = None) -> Renderer:
    """Probe the chat template once: a template that rejects the system role gets the fallback."""
    options = dict(template_options or {})
    if not getattr(tokenizer, "chat_template", None):
        raise ModelError(
            "This model has no chat template, so prompts cannot be formatted as gpi_pack does; "
            "choose an instruction-tuned (chat) model."
        )
    instruction = instruction_for(task)
    add_gen = template_style == "model-card"
    try:
        _apply(tokenizer, messages_for(instruction, "probe"), add_gen, options)
        system_role = True
    except Exception as exc:  # jinja raises TemplateError (or others) for a rejected system role
        if "system" not in str(exc).lower():
            raise ModelError(f"The model's chat template failed on a test prompt: {exc}") from exc
        system_role = False
        _apply(tokenizer, merged_messages_for(instruction, "probe"), add_gen, options)
    return Renderer(tokenizer, instruction, add_gen, options, system_role)
