"""What the command-line tests do again and again: run `gpi-desktop run`, digest a folder, wait for a journal."""

from __future__ import annotations

import hashlib
import subprocess
import time
from pathlib import Path

import pytest

from gpi_desktop.cli import main

MAX_NEW = "16"


def run_cli(*args: str) -> int:
    return main(["run", *args])


def base_args(model: Path, prompts: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--model",
        str(model),
        "--prompts",
        str(prompts),
        "--out",
        str(out),
        "--max-new-tokens",
        MAX_NEW,
        "--device",
        "cpu",
        "--quiet",
        *extra,
    ]


def folder_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def wait_for_journal_rows(out: Path, proc: subprocess.Popen, at_least: int, timeout: float = 120) -> None:
    records = out / ".gpi-run" / "records.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if records.exists() and records.read_bytes().count(b"\n") >= at_least:
            return
        if proc.poll() is not None:
            pytest.fail(f"run ended before it could be interrupted: {proc.stderr.read().decode()}")
        time.sleep(0.02)
    pytest.fail("the run journaled nothing in time")
