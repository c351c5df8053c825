"""Shared fixtures: tiny random-weight models built offline, loaded like real ones."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from gpi_desktop.core.tinymodel import TinySpec, build_tiny_model  # noqa: E402

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
    from gpi_desktop.core.models import load_model
    from gpi_desktop.core.settings import RunSettings

    return load_model(RunSettings(model=str(tiny_model), device="cpu"))


@pytest.fixture(scope="module")
def encoded(loaded):
    """PROMPTS rendered with the create instruction, gpi_pack-style."""
    from gpi_desktop.core.engine import EncodedPrompt
    from gpi_desktop.core.instructions import make_renderer

    renderer = make_renderer(loaded.tokenizer, "create", "gpi_pack")
    return [EncodedPrompt(i, tuple(renderer.encode(p))) for i, p in enumerate(PROMPTS)]
