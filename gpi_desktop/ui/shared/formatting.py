"""Plain-words lines for the window (progress, figures, links); sizes and durations are core.vocabulary.formatting's."""

from __future__ import annotations

import html
import re

from gpi_desktop.core.vocabulary.formatting import human_duration, progress_parts
from gpi_desktop.core.vocabulary.progress import Progress

_URL = re.compile(r"https?://[^\s,;()<>\"']+")


def progress_line(p: Progress) -> str:
    """'12 of 100 prompts · 3,400 of at most 9,000 tokens · 35.2 tokens per second · at most 4 min 10 s left'."""
    return " \u00b7 ".join(progress_parts(p))


def job_figures_line(rows: int, tokens: int, seconds: float) -> str:
    """A finished job's figures, every session of it counted: '200 of 200 prompts · took 29 s · 558 tokens per second'."""
    parts = [f"{rows:,} of {rows:,} prompts", f"took {human_duration(seconds)}"]
    if seconds > 0 and tokens:
        parts.append(f"{tokens / seconds:,.1f} tokens per second")
    return " \u00b7 ".join(parts)


def linkify(text: str) -> str:
    """Plain text as HTML with its web addresses clickable (a hub error's model page, the tokens page)."""
    out, last = [], 0
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(".")
        out.append(html.escape(text[last : match.start()], quote=False))
        out.append(f'<a href="{html.escape(url)}">{html.escape(url, quote=False)}</a>')
        last = match.start() + len(url)
    out.append(html.escape(text[last:], quote=False))
    return "".join(out).replace("\n", "<br>")


def settings_words(run) -> str:
    """The settings that shape the texts (`core.vocabulary.settings.RunSettings`), in one line of plain words."""
    task = run.task if run.task in ("create", "repeat") else "your own instruction"
    style = "gpi_pack-compatible" if run.template == "gpi_pack" else "model-card"
    return f"task {task}, pooling {run.pooling}, at most {run.max_new_tokens:,} new tokens, {style} chat formatting"
