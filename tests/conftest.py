"""Shared fixtures: tiny random-weight models built offline, loaded like real ones."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from gpi_desktop.core.model.tinymodel import TinySpec, build_tiny_model  # noqa: E402

# Prompts of very different lengths; on the tiny models below they stop at
# different steps (some after one token, some at the limit).
PROMPTS = [
    "Write a speech about taxes",
    "hello",
    "The committee met on Tuesday to discuss the budget of the city and more things",
    "Voters",
    "Repeat: the mayor announced a plan",
    "Citizens expect transparency from their government and honest answers from politicians and the press alike every day",
    "a",
    "Economic growth slowed",
]

# Seeds and boosts chosen so that generation lengths vary widely within 40 tokens.
LLAMA_SPEC = TinySpec(architecture="llama", seed=1, eos_boost=2.0)
QWEN_SPEC = TinySpec(architecture="qwen2", seed=2, eos_boost=2.0)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    """A Llama-architecture model whose chat template accepts a system message."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"), LLAMA_SPEC)


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory) -> Path:
    """A Qwen2-architecture model whose chat template rejects the system role."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen"), QWEN_SPEC)


@pytest.fixture(scope="session", params=["llama", "qwen2"])
def tiny_model(request, tiny_llama, tiny_qwen) -> Path:
    return tiny_llama if request.param == "llama" else tiny_qwen


@pytest.fixture
def prompts_csv(tmp_path) -> Path:
    import pandas as pd

    path = tmp_path / "prompts.csv"
    pd.DataFrame({"id": range(len(PROMPTS)), "text": PROMPTS}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def loaded(tiny_model):
    """The tiny model (each architecture in turn) loaded on the CPU, as a run loads it."""
    from gpi_desktop.core.model.models import load_model
    from gpi_desktop.core.vocabulary.settings import RunSettings

    return load_model(RunSettings(model=str(tiny_model), device="cpu"))


@pytest.fixture(scope="module")
def encoded(loaded):
    """PROMPTS rendered with the create instruction, gpi_pack-style."""
    from gpi_desktop.core.generation.engine import EncodedPrompt
    from gpi_desktop.core.generation.instructions import make_renderer

    renderer = make_renderer(loaded.tokenizer, "create", "gpi_pack")
    return [EncodedPrompt(i, tuple(renderer.encode(p))) for i, p in enumerate(PROMPTS)]


# Written for these tests in the style of Llama 3.2's template: today's date goes into the system turn
# through strftime_now unless the caller passes date_string.
DATED_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if not date_string is defined %}{%- if strftime_now is defined %}"
    "{%- set date_string = strftime_now('%d %b %Y') %}{%- else %}{%- set date_string = '26 Jul 2024' %}{%- endif %}"
    "{%- endif %}"
    "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content'] | trim %}"
    "{%- set messages = messages[1:] %}{%- else %}{%- set system_message = '' %}{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\n\n' }}"
    "{{- 'Cutting Knowledge Date: December 2023\n' }}"
    "{{- 'Today Date: ' + date_string + '\n\n' }}"
    "{{- system_message + '<|eot_id|>' }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif %}"
)


@pytest.fixture(scope="session")
def tiny_dated(tmp_path_factory) -> Path:
    """The tiny Llama with a Llama-3.2-style template that writes today's date into every prompt."""
    from dataclasses import replace

    return build_tiny_model(tmp_path_factory.mktemp("tiny-dated"), replace(LLAMA_SPEC, chat_template=DATED_TEMPLATE))


class FakeClock:
    """Today, as the program and transformers' chat templates see it; tests move it instead of sleeping."""

    def __init__(self, day) -> None:
        self.day = day


@pytest.fixture
def clock(monkeypatch):
    """Fakes the local date for GPI Desktop (a new job's date) and for transformers' `strftime_now`."""
    import datetime as dt

    from transformers.utils import chat_template_utils

    from gpi_desktop.core.vocabulary import template_date

    fake = FakeClock(dt.date(2026, 3, 30))

    class FakeDatetime(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return dt.datetime(fake.day.year, fake.day.month, fake.day.day, 23, 59, tzinfo=tz)

    monkeypatch.setattr(template_date, "local_today", lambda: fake.day)
    monkeypatch.setattr(template_date, "_outer_clock", template_date._outer_clock)  # put back what it wraps
    monkeypatch.setattr(chat_template_utils, "datetime", FakeDatetime)
    return fake
