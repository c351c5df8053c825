"""Task -> instruction -> chat messages -> the token ids the model sees (gpi_pack contract, points 1-2)."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import pytest

from gpi_desktop.core.generation.instructions import (
    CREATE_INSTRUCTION,
    REPEAT_INSTRUCTION,
    instruction_for,
    make_renderer,
    merged_messages_for,
    messages_for,
    template_record,
    template_sha256,
    token_ids_sha256,
)
from gpi_desktop.core.vocabulary.errors import ModelError


@pytest.fixture(scope="module")
def llama_tokenizer(tiny_llama):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llama)


@pytest.fixture(scope="module")
def no_system_tokenizer(tiny_qwen):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_qwen)


def test_the_two_named_tasks_are_gpi_packs_instructions_and_any_other_text_is_its_own():
    assert (
        instruction_for("create") == "You are a text generator who always produces the texts suggested by the prompts."
    )
    assert instruction_for("repeat") == "You are a text generator who just repeats the input text."
    assert instruction_for("Summarise the speech.") == "Summarise the speech."


def test_messages_are_a_system_turn_with_the_instruction_then_the_prompt():
    assert messages_for(CREATE_INSTRUCTION, "Voters") == [
        {"role": "system", "content": CREATE_INSTRUCTION},
        {"role": "user", "content": "Voters"},
    ]


def test_without_a_system_role_one_user_turn_holds_instruction_blank_line_prompt():
    assert merged_messages_for(REPEAT_INSTRUCTION, "Voters") == [
        {"role": "user", "content": f"{REPEAT_INSTRUCTION}\n\nVoters"},
    ]


def test_a_template_with_a_system_role_renders_the_system_and_user_turns(llama_tokenizer):
    renderer = make_renderer(llama_tokenizer, "create", "gpi_pack")
    assert renderer.system_role
    assert renderer.messages("Voters") == messages_for(CREATE_INSTRUCTION, "Voters")
    text = renderer.render_text("Voters")
    assert text == (
        f"{llama_tokenizer.bos_token}<|start_header_id|>system<|end_header_id|>\n\n{CREATE_INSTRUCTION}"
        "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nVoters<|eot_id|>"
    )


def test_a_template_that_refuses_the_system_role_gets_the_merged_user_turn(no_system_tokenizer):
    renderer = make_renderer(no_system_tokenizer, "repeat", "gpi_pack")
    assert not renderer.system_role
    assert renderer.messages("Voters") == merged_messages_for(REPEAT_INSTRUCTION, "Voters")
    assert f"<start_of_turn>user\n{REPEAT_INSTRUCTION}\n\nVoters<end_of_turn>" in renderer.render_text("Voters")


def test_gpi_pack_style_adds_no_generation_prompt_and_model_card_style_does(llama_tokenizer):
    gpi_pack = make_renderer(llama_tokenizer, "create", "gpi_pack").render_text("hi")
    card = make_renderer(llama_tokenizer, "create", "model-card").render_text("hi")
    assert card == gpi_pack + "<|start_header_id|>assistant<|end_header_id|>\n\n"


def test_encode_is_the_template_tokenized_once_without_a_second_bos(llama_tokenizer):
    renderer = make_renderer(llama_tokenizer, "create", "gpi_pack")
    ids = renderer.encode("Voters")
    assert ids == llama_tokenizer.encode(renderer.render_text("Voters"), add_special_tokens=False)
    assert ids.count(llama_tokenizer.bos_token_id) == 1


def test_a_model_without_a_chat_template_is_refused_in_plain_words():
    with pytest.raises(ModelError, match="no chat template.*choose an instruction-tuned"):
        make_renderer(SimpleNamespace(chat_template=None), "create", "gpi_pack")


def test_a_template_failing_for_another_reason_than_the_system_role_says_so():
    class Broken:
        chat_template = "{{ raise_exception('bad') }}"

        def apply_chat_template(self, *args, **kwargs):
            raise ValueError("unexpected end of template")

    with pytest.raises(ModelError, match="failed on a test prompt: unexpected end of template"):
        make_renderer(Broken(), "create", "gpi_pack")


def test_token_ids_sha256_is_the_sha256_of_the_decimal_ids_joined_by_commas():
    assert token_ids_sha256([128000, 128006, 9125]) == hashlib.sha256(b"128000,128006,9125").hexdigest()
    assert token_ids_sha256(()) == hashlib.sha256(b"").hexdigest()


def test_the_template_record_names_the_example_row_its_text_and_ids(llama_tokenizer):
    renderer = make_renderer(llama_tokenizer, "create", "gpi_pack", {}, "2024-07-26")
    prompts = ["first", "second"]
    ids = [tuple(renderer.encode(p)) for p in prompts]
    record = template_record(renderer, prompts, ids, date_given=True, row=1)
    manifest = record.to_manifest()
    assert manifest["date"] == "2024-07-26" and manifest["date_source"] == "given with the job"
    assert manifest["date_used_by_template"] is False
    assert manifest["template_sha256"] == template_sha256(llama_tokenizer)
    assert manifest["example"] == {
        "row": 1,
        "rendered_text": renderer.render_text("second"),
        "token_ids": list(ids[1]),
        "tokens": len(ids[1]),
        "token_ids_sha256": token_ids_sha256(ids[1]),
    }
    assert template_record(renderer, [], [], date_given=False) is None
