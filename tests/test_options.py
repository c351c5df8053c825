"""Advanced options: KEY=VALUE parsing, and the options the contract refuses in plain words."""

from __future__ import annotations

import pytest

from gpi_desktop.core.vocabulary.errors import SettingsError
from gpi_desktop.core.vocabulary.options import (
    check_generation_options,
    check_template_options,
    needs_one_at_a_time,
    parse_option,
    parse_options,
)


@pytest.mark.parametrize("text, expected", [
    ("repetition_penalty=1.1", ("repetition_penalty", 1.1)),
    ("num_beams=2", ("num_beams", 2)),
    ("enable_thinking=false", ("enable_thinking", False)),
    ("bad_words_ids=[[1, 2]]", ("bad_words_ids", [[1, 2]])),
    ('reasoning_effort="low"', ("reasoning_effort", "low")),
    ("reasoning_effort=low", ("reasoning_effort", "low")),  # not JSON: kept as the plain string
    (" custom = a=b", ("custom", " a=b")),  # the key is trimmed; the value is everything after the first '='
])
def test_parse_option_reads_json_values_else_the_plain_string(text, expected):
    assert parse_option(text) == expected


@pytest.mark.parametrize("text, words", [
    ("repetition_penalty", "must be written KEY=VALUE"),
    ("2nd=1", "'2nd' is not a valid option name"),
    ("=1", "'' is not a valid option name"),
])
def test_parse_option_refuses_what_is_not_key_equals_value(text, words):
    with pytest.raises(SettingsError, match=words):
        parse_option(text)


def test_parse_options_later_keys_win_and_none_is_empty():
    assert parse_options(["num_beams=2", "num_beams=3", "min_new_tokens=5"]) == {"num_beams": 3, "min_new_tokens": 5}
    assert parse_options(None) == {}
    assert parse_options([]) == {}


@pytest.mark.parametrize("key", ["do_sample", "temperature", "max_new_tokens", "num_return_sequences", "use_cache"])
def test_generation_options_that_break_the_contract_are_refused_naming_the_option(key):
    with pytest.raises(SettingsError, match=f"The generation option '{key}' cannot be used: "):
        check_generation_options({key: 1})


@pytest.mark.parametrize("beams", [0, -1, 1.5, "2", True])
def test_num_beams_must_be_a_whole_number_of_at_least_one(beams):
    with pytest.raises(SettingsError, match="num_beams must be a whole number of at least 1"):
        check_generation_options({"num_beams": beams})


def test_allowed_generation_options_pass():
    check_generation_options({"num_beams": 2, "repetition_penalty": 1.2, "length_penalty": 0.5})
    check_generation_options({})


@pytest.mark.parametrize("key", ["tokenize", "add_generation_prompt", "truncation", "conversation"])
def test_template_options_the_program_decides_are_refused(key):
    with pytest.raises(SettingsError, match=f"The template option '{key}' cannot be used: "):
        check_template_options({key: True})


def test_other_template_options_pass_through():
    check_template_options({"enable_thinking": False, "date_string": "26 Jul 2024"})


@pytest.mark.parametrize("options, one_at_a_time", [
    ({}, False),
    ({"num_beams": 1}, False),  # one beam is greedy decoding: the batched engine does it
    ({"repetition_penalty": 1.1, "no_repeat_ngram_size": 3, "min_new_tokens": 2}, False),
    ({"num_beams": 2}, True),
    ({"length_penalty": 0.5}, True),
    ({"repetition_penalty": 1.1, "num_beams": 4}, True),
])
def test_only_options_the_batched_engine_cannot_apply_need_one_prompt_at_a_time(options, one_at_a_time):
    assert needs_one_at_a_time(options) is one_at_a_time
