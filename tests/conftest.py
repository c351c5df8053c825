"""Shared fixtures: tiny random-weight models built offline, loaded like real ones."""

from __future__ import annotations

import os
from pathlib import Path

import keyring
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from fakes import MemoryKeyring
from hubserver import TOKEN, FakeHub, point_client_at

from gpi_desktop.core.model.tinymodel import TinySpec, build_tiny_model

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


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """A running fake Hub, with huggingface_hub pointed at it and at an empty cache (online)."""
    from huggingface_hub import constants

    with FakeHub() as server:
        point_client_at(monkeypatch, server.url, tmp_path / "hf-home")
        # Small network chunks so that a tiny model's weights arrive in many pieces.
        monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 16 * 1024)
        server.valid_tokens.add(TOKEN)
        yield server


@pytest.fixture
def memory_keyring(monkeypatch):
    """The in-memory keyring as the OS keyring; no token in the environment or a hub login."""
    from gpi_desktop.core.hub import secrets

    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(secrets, "_from_hf_login", lambda: None)
    secrets.forget_session_token()
    yield backend
    secrets.forget_session_token()
    keyring.set_keyring(previous)


@pytest.fixture
def make_window(qtbot, tmp_path, memory_keyring):
    """Build real main windows with their own settings file, data folder and scripted answers."""
    from PySide6.QtCore import QSettings

    from gpi_desktop.ui.main_window import MainWindow
    from gpi_desktop.ui.shared.prompter import ScriptedPrompter

    windows = []

    def make(answers: dict[str, str] | None = None, settings_file: str = "prefs.ini", data_dir: str = "data", **kwargs):
        settings = QSettings(str(tmp_path / settings_file), QSettings.Format.IniFormat)
        window = MainWindow(
            settings, data_dir=tmp_path / data_dir, prompter=ScriptedPrompter(dict(answers or {})), **kwargs
        )
        window.show()
        windows.append(window)
        return window

    yield make
    for window in windows:
        # Never leave a worker running into the next test.
        window.runner.cancel()
        qtbot.waitUntil(lambda w=window: not w.runner.is_busy(), timeout=60_000)
        qtbot.waitUntil(lambda w=window: w.calls.pending == 0, timeout=60_000)
        window.close()
        window.runner.shutdown()
        window.deleteLater()


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a module's tests (with pytest.mark.usefixtures), then as it was."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
