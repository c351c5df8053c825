"""How the Hub part says things: the Hub's pages, and sizes and durations as people read them."""

from __future__ import annotations

HUB_PAGE = "https://huggingface.co"
TOKENS_PAGE = "https://huggingface.co/settings/tokens"


def model_page(model_id: str | None) -> str:
    return f"{HUB_PAGE}/{model_id}" if model_id else HUB_PAGE


def human_bytes(n: float) -> str:
    """1.2 GB style sizes (decimal units, as the Hub and file managers show them)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit in ("B", "KB") else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover - loop always returns


def human_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    if seconds < 3600:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"
