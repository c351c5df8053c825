"""Advanced options: KEY=VALUE parsing, and the options the contract refuses in plain words."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpi_desktop.core.vocabulary.errors import SettingsError
from gpi_desktop.core.vocabulary.options import (
    check_generation_options,
    check_template_options,
    needs_one_at_a_time,
    parse_option,
    parse_options,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("repetition_penalty=1.1", ("repetition_penalty", 1.1)),
        ("num_beams=2", ("num_beams", 2)),
        ("enable_thinking=false", ("enable_thinking", False)),
        ("bad_words_ids=[[1, 2]]", ("bad_words_ids", [[1, 2]])),
        ('reasoning_effort="low"', ("reasoning_effort", "low")),
        ("reasoning_effort=low", ("reasoning_effort", "low")),  # not JSON: kept as the plain string
        (" custom = a=b", ("custom", " a=b")),  # the key is trimmed; the value is everything after the first '='
    ],
)
def test_parse_option_reads_json_values_else_the_plain_string(text, expected):
    assert parse_option(text) == expected


@pytest.mark.parametrize(
    "text, words",
    [
        ("repetition_penalty", "must be written KEY=VALUE"),
        ("2nd=1", "'2nd' is not a valid option name"),
        ("=1", "'' is not a valid option name"),
    ],
)
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


@pytest.mark.parametrize(
    "options, one_at_a_time",
    [
        ({}, False),
        ({"num_beams": 1}, False),  # one beam is greedy decoding: the batched engine does it
        ({"repetition_penalty": 1.1, "no_repeat_ngram_size": 3, "min_new_tokens": 2}, False),
        ({"num_beams": 2}, True),
        ({"length_penalty": 0.5}, True),
        ({"repetition_penalty": 1.1, "num_beams": 4}, True),
    ],
)
def test_only_options_the_batched_engine_cannot_apply_need_one_prompt_at_a_time(options, one_at_a_time):
    assert needs_one_at_a_time(options) is one_at_a_time


DEMO_MODEL = Path(__file__).resolve().parents[1] / "resources" / "demo-model"


@pytest.mark.parametrize(
    "options, words",
    [
        (
            {"unknown_kw": 1},
            "'unknown_kw' is neither a transformers generation setting nor an input of LlamaForCausalLM",
        ),
        ({"repetiton_penalty": 1.1}, "did you mean repetition_penalty?"),
        ({"repetition_penalty": -1}, "repetition_penalty=-1 cannot be used: repetition_penalty takes a number above 0"),
        ({"repetition_penalty": "strong"}, "repetition_penalty=strong cannot be used"),
        ({"no_repeat_ngram_size": -1}, "no_repeat_ngram_size=-1 cannot be used: no_repeat_ngram_size takes a whole"),
        ({"bad_words_ids": 3}, "bad_words_ids=3 cannot be used: bad_words_ids takes a list of lists of token ids"),
        (
            {"length_penalty": 2.0},
            "length_penalty=2.0 cannot be used: length_penalty takes a number, and only together",
        ),
        ({"early_stopping": "soon"}, "early_stopping=soon cannot be used"),
    ],
)
def test_an_option_the_model_would_not_accept_is_refused_from_its_config_files_naming_it(options, words):
    from gpi_desktop.core.generation.option_check import check_options_for_model

    with pytest.raises(SettingsError) as refused:
        check_options_for_model(DEMO_MODEL, options)
    assert words in str(refused.value)
    assert "\n" not in str(refused.value) and "`" not in str(refused.value)


def test_options_generation_and_the_model_accept_pass_the_model_check():
    from gpi_desktop.core.generation.option_check import check_options_for_model

    check_options_for_model(
        DEMO_MODEL,
        {
            "repetition_penalty": 1.1,
            "no_repeat_ngram_size": 3,
            "min_new_tokens": 2,
            "bad_words_ids": [[7]],
            "suppress_tokens": [9],
        },
    )
    check_options_for_model(DEMO_MODEL, {"num_beams": 2, "length_penalty": 0.5, "early_stopping": True})
    check_options_for_model(
        DEMO_MODEL, {"logits_to_keep": 1}
    )  # an input of the model's forward, as generate() passes it
    check_options_for_model(DEMO_MODEL, {})
