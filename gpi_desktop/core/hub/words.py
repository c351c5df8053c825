"""The Hub's pages, as the hub part links to them (sizes and durations: core.vocabulary.formatting)."""

from __future__ import annotations

HUB_PAGE = "https://huggingface.co"
TOKENS_PAGE = "https://huggingface.co/settings/tokens"


def model_page(model_id: str | None) -> str:
    return f"{HUB_PAGE}/{model_id}" if model_id else HUB_PAGE
