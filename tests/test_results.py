"""A PromptResult to and from its record: the one conversion the journal and the shard files share."""

from __future__ import annotations

import json

import numpy as np

from gpi_desktop.core.vocabulary.results import STOP_EOS, STOP_LENGTH, PromptResult

RESULT = PromptResult(
    row=3,
    text="Taxes, again.",
    vector=np.arange(4, dtype=np.float32),
    n_tokens=7,
    stop_reason=STOP_EOS,
    pooled_from_step0=True,
    prompt_tokens=21,
    prompt_ids_sha256="ab" * 32,
)


def test_a_record_round_trips_through_json_to_an_equal_result():
    record = json.loads(json.dumps(RESULT.to_record()))
    back = PromptResult.from_record(record, RESULT.vector)
    assert back == RESULT


def test_the_record_holds_every_field_but_the_vector_as_plain_json_values():
    result = PromptResult(
        row=np.int64(2),
        text="x",
        vector=np.zeros(2, np.float32),
        n_tokens=np.int64(5),
        stop_reason=STOP_LENGTH,
        pooled_from_step0=np.bool_(False),
        prompt_tokens=np.int64(9),
    )
    record = result.to_record()
    assert record == {
        "row": 2,
        "text": "x",
        "n_tokens": 5,
        "stop_reason": STOP_LENGTH,
        "pooled_from_step0": False,
        "prompt_tokens": 9,
        "prompt_ids_sha256": "",
    }
    assert [type(v) for v in record.values()] == [int, str, int, str, bool, int, str]


def test_the_journals_record_leaves_the_prompt_ids_out_and_reads_back_without_them():
    record = RESULT.to_record(prompt_ids=False)
    assert "prompt_ids_sha256" not in record
    assert PromptResult.from_record({**record, "offset": 0, "length": 4}, RESULT.vector).prompt_ids_sha256 == ""
