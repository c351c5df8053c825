"""What an estimate reads and refuses: export folders, the data file, matching rows, treatment, outcome, arms."""

from __future__ import annotations

import json

import numpy as np
import pytest
from estimate_folders import study_table, write_gpi_pack_folder, write_our_export
from estimate_sim import simulate, small_settings
from fakes import RecordingState

from gpi_desktop.core.estimate.pipeline import prepare
from gpi_desktop.core.estimate.settings import EstimateRequest
from gpi_desktop.core.vocabulary.errors import EstimateInputError, GpiError, Remedy


@pytest.fixture(scope="module")
def study():
    return simulate(120, 8, seed=5)


@pytest.fixture
def export(study, tmp_path):
    return write_our_export(study, tmp_path / "export", tmp_path / "prompts.csv")


def request(vectors, **changes):
    fields = {
        "vectors": vectors,
        "treatment": "group",
        "outcome": "score",
        "treated": "short",
        "settings": small_settings(),
    }
    return EstimateRequest(**{**fields, **changes})


def test_the_data_defaults_to_the_prompts_file_the_export_names(study, export, tmp_path):
    prepared = prepare(request(export), RecordingState())
    assert prepared.data.path == tmp_path / "prompts.csv"
    assert prepared.data.matched == "the file the export was made from, row by row"
    assert np.array_equal(prepared.design.r, study.r) and np.array_equal(prepared.design.t, study.t)
    assert prepared.design.treated_value == "short" and prepared.design.control_value == "long"


def test_without_the_prompts_file_its_columns_come_from_the_exports_table(study, export, tmp_path):
    (tmp_path / "prompts.csv").write_text("changed\n1\n", encoding="utf-8")  # same name, other contents: not it
    prepared = prepare(request(export), RecordingState())
    assert prepared.data.path == export / "generated_texts.csv"
    assert np.allclose(prepared.design.y, study.y)


def test_a_gpi_pack_folder_needs_the_data_file(study, tmp_path):
    folder = write_gpi_pack_folder(study, tmp_path / "hidden")
    with pytest.raises(EstimateInputError) as error:
        prepare(request(folder), RecordingState())
    assert error.value.remedy is Remedy.GIVE_DATA_FILE
    study_table(study).to_csv(tmp_path / "data.csv", index=False)
    prepared = prepare(request(folder, data=tmp_path / "data.csv"), RecordingState())
    assert np.allclose(prepared.design.r, study.r)
    assert (
        prepared.vectors.kind == "gpi_pack"
        and prepared.vectors.sha256
        == prepare(request(folder, data=tmp_path / "data.csv"), RecordingState()).vectors.sha256
    )


def test_a_gap_in_gpi_pack_s_files_is_named(study, tmp_path):
    folder = write_gpi_pack_folder(study, tmp_path / "hidden")
    (folder / "hidden_7.pt").unlink()
    with pytest.raises(GpiError, match="lacks the vector files of rows 7"):
        prepare(request(folder, data=tmp_path / "x.csv"), RecordingState())


def test_another_count_of_rows_is_refused_and_ids_are_offered(study, export, tmp_path):
    study_table(study).iloc[:-1].to_csv(tmp_path / "fewer.csv", index=False)
    with pytest.raises(EstimateInputError, match="has 119 data rows but the export has 120 vectors") as error:
        prepare(request(export, data=tmp_path / "fewer.csv"), RecordingState())
    assert error.value.remedy is Remedy.MATCH_BY_ID


def test_rows_in_another_order_are_refused_when_the_prompts_show_it(study, export, tmp_path):
    study_table(study).iloc[::-1].to_csv(tmp_path / "reversed.csv", index=False)
    with pytest.raises(EstimateInputError, match="not the export's prompts in the same order"):
        prepare(request(export, data=tmp_path / "reversed.csv"), RecordingState())


def test_an_id_column_pairs_shuffled_rows_with_their_vectors(study, export, tmp_path):
    shuffled = study_table(study).sample(frac=1.0, random_state=0).drop(columns="prompt")
    shuffled.to_csv(tmp_path / "shuffled.csv", index=False)
    prepared = prepare(request(export, data=tmp_path / "shuffled.csv", id_column="id"), RecordingState())
    order = shuffled.index.to_numpy()
    assert np.array_equal(prepared.data.vector_rows, order)
    assert np.array_equal(prepared.design.r, study.r[order]) and np.allclose(prepared.design.y, study.y[order])


def test_unknown_and_repeated_ids_are_refused(study, export, tmp_path):
    frame = study_table(study)
    frame.loc[3, "id"] = "nobody"
    frame.to_csv(tmp_path / "unknown.csv", index=False)
    with pytest.raises(EstimateInputError, match="'nobody'"):
        prepare(request(export, data=tmp_path / "unknown.csv", id_column="id"), RecordingState())
    frame.loc[3, "id"] = frame.loc[4, "id"]
    frame.to_csv(tmp_path / "twice.csv", index=False)
    with pytest.raises(EstimateInputError, match="appears twice"):
        prepare(request(export, data=tmp_path / "twice.csv", id_column="id"), RecordingState())


def test_treatment_values_other_than_0_and_1_ask_which_is_treated(export):
    with pytest.raises(EstimateInputError) as error:
        prepare(request(export, treated=None), RecordingState())
    assert error.value.remedy is Remedy.PICK_TREATED and "'short'" in str(error.value)
    prepared = prepare(request(export, treated="long"), RecordingState())
    assert prepared.design.treated_value == "long" and prepared.design.arm_sizes[0] == int(np.sum(prepared.design.t))


def test_0_and_1_need_no_choice_and_1_is_treated(study, export, tmp_path):
    frame = study_table(study).assign(group=study.t)
    frame.to_csv(tmp_path / "prompts.csv", index=False)  # another file now: paired by its prompts
    prepared = prepare(request(export, data=tmp_path / "prompts.csv", treated=None), RecordingState())
    assert prepared.design.treated_value == "1" and np.array_equal(prepared.design.t, study.t)


def test_a_treatment_with_three_values_is_refused(study, export, tmp_path):
    with pytest.raises(EstimateInputError, match="has 3 values .*needs exactly two"):
        prepare(
            request(export, treatment="region", data=_with(study, tmp_path, region=["a", "b", "c"] * 40)),
            RecordingState(),
        )


def _with(study, tmp_path, **columns):
    frame = study_table(study)
    for name, values in columns.items():
        frame[name] = values
    path = tmp_path / "edited.csv"
    frame.to_csv(path, index=False)
    return path


def test_a_text_outcome_is_refused_naming_its_rows(study, export, tmp_path):
    scores = [str(v) for v in study.y]
    scores[4] = "high"
    with pytest.raises(EstimateInputError, match=r"must hold numbers, but 1 cells do not: row 4 \('high'\)"):
        prepare(request(export, data=_with(study, tmp_path, score=scores)), RecordingState())


def test_rows_with_missing_values_are_left_out_and_counted(study, export, tmp_path):
    groups = list(np.where(study.t == 1, "short", "long"))
    scores = [str(v) for v in study.y]
    groups[0], scores[1], scores[2] = "", "NA", ""
    regions = ["north", "south"] * 60
    regions[3] = ""
    path = _with(study, tmp_path, group=groups, score=scores, region=regions)
    prepared = prepare(request(export, data=path, cluster="region"), RecordingState())
    left = prepared.design.left_out
    assert (left.treatment, left.outcome, left.cluster, left.rows) == (1, 2, 1, 4)
    assert prepared.design.n == 116 and list(prepared.design.data_rows[:2]) == [4, 5]


def test_an_arm_too_small_for_the_folds_is_refused_and_a_small_one_warned_about(study, export, tmp_path):
    groups = ["long"] * 120
    groups[:3] = ["short"] * 3
    with pytest.raises(EstimateInputError, match="Only 3 rows are treated .*2 folds need at least 4"):
        prepare(request(export, data=_with(study, tmp_path, group=groups)), RecordingState())
    prepared = prepare(request(export), RecordingState())
    assert any("fewer than about 50 rows per group" in w for w in prepared.warnings) == (
        min(prepared.design.arm_sizes) < 50
    )


def test_confounders_join_as_numbers_and_text_as_indicators(export):
    prepared = prepare(request(export, confounders=("region",)), RecordingState())
    assert prepared.design.confounder_names == ("region=south",)
    assert prepared.design.c.shape == (120, 1) and set(np.unique(prepared.design.c)) == {0.0, 1.0}


def test_a_changed_vector_matrix_is_refused(export):
    manifest = json.loads((export / "manifest.json").read_text())
    np.save(export / "hidden_states.npy", np.zeros((120, 8), np.float32))
    assert manifest["sha256"]["hidden_states.npy"]
    with pytest.raises(GpiError, match="not the file the export wrote"):
        prepare(request(export), RecordingState())


def test_a_missing_column_names_the_columns_there_are(export):
    with pytest.raises(EstimateInputError, match="has no column 'outcome' \\(it has 'id', 'prompt'"):
        prepare(request(export, outcome="outcome"), RecordingState())
