"""Prompts against the model's context: which rows are too long with the token limit, in plain words."""

from __future__ import annotations

import pytest

from gpi_desktop.core.model.context import check_prompt_lengths, context_length, describe_too_long, too_long_prompts
from gpi_desktop.core.vocabulary.errors import SettingsError


def test_context_length_is_read_from_the_usual_keys_and_a_multimodal_text_part():
    assert context_length({"max_position_embeddings": 4096}) == 4096
    assert context_length({"n_positions": 1024}) == 1024
    assert context_length({"text_config": {"max_position_embeddings": 8192}}) == 8192
    assert context_length({"hidden_size": 64}) is None


def test_a_prompt_is_too_long_only_when_the_token_limit_no_longer_fits_after_it():
    lengths = [(0, 48), (1, 49), (2, 10)]
    assert [p.row for p in too_long_prompts(lengths, 64, 16)] == [1]
    assert too_long_prompts(lengths, None, 16) == []  # a config that does not say: nothing is refused


def test_the_message_names_rows_and_lengths_and_says_what_to_change():
    with pytest.raises(SettingsError) as info:
        check_prompt_lengths([(0, 5), (7, 35_000), (9, 70)], 64, 16)
    message = str(info.value)
    assert "rows 7 (35,000 tokens), 9 (70 tokens)" in message
    assert "at most 64 tokens" in message and "at most 48" in message
    assert "shorten them or lower the maximum new tokens" in message


def test_a_token_limit_that_fills_the_context_alone_is_said_so():
    message = describe_too_long(too_long_prompts([(3, 10)], 64, 100), 64, 100)
    assert "row 3 (10 tokens" in message and "alone fills" in message


def test_the_message_can_list_fewer_rows_and_count_the_others():
    too_long = too_long_prompts([(row, 100) for row in range(9)], 64, 16)
    message = describe_too_long(too_long, 64, 16, listed=5)
    assert "rows 0 (100 tokens), 1 (100 tokens), 2 (100 tokens), 3 (100 tokens), 4 (100 tokens) and 4 more" in message
