"""Loading a model the two ways users give one: a folder, and a hub id (through a local fake Hub)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hubserver import MODEL, TOKEN, Repo, repo_from_folder

from gpi_desktop.cli import main
from gpi_desktop.core.hub import download
from gpi_desktop.core.model.models import describe_target, folder_fingerprint, load_model, pick_dtype, resolve_source
from gpi_desktop.core.vocabulary.errors import AccessError, ModelError, Remedy, SettingsError
from gpi_desktop.core.vocabulary.settings import RunSettings


def test_folder_and_hub_id_give_the_same_results(fake_hub, tiny_llama, prompts_csv, tmp_path, monkeypatch):
    repo = fake_hub.add(repo_from_folder(MODEL, tiny_llama, access="gated"))
    repo.approved_tokens.add(TOKEN)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    common = ["--prompts", str(prompts_csv), "--max-new-tokens", "8", "--device", "cpu", "--quiet"]
    assert main(["run", "--model", str(tiny_llama), "--out", str(tmp_path / "folder"), *common]) == 0
    assert main(["run", "--model", MODEL, "--out", str(tmp_path / "hub"), *common]) == 0
    np.testing.assert_array_equal(
        np.load(tmp_path / "folder" / "hidden_states.npy"), np.load(tmp_path / "hub" / "hidden_states.npy")
    )
    manifest = json.loads((tmp_path / "hub" / "manifest.json").read_text())
    assert manifest["model"]["model_id"] == MODEL
    assert manifest["model"]["revision"] == repo.commit
    # The token is used, never written down.
    for path in (tmp_path / "hub").rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes()


def test_gated_hub_model_without_token_is_one_plain_sentence(
    fake_hub, tiny_llama, prompts_csv, tmp_path, capsys, monkeypatch
):
    fake_hub.add(repo_from_folder(MODEL, tiny_llama, access="gated"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(
        "gpi_desktop.core.hub.secrets.find_token",
        lambda: __import__("gpi_desktop.core.hub.secrets", fromlist=["TokenInfo"]).TokenInfo(None, "none"),
    )
    code = main(["run", "--model", MODEL, "--prompts", str(prompts_csv), "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert f"https://huggingface.co/{MODEL}" in err and "token" in err.lower()
    assert not (tmp_path / "o").exists()


def test_load_model_records_hidden_size_and_every_eos_id(tiny_qwen):
    loaded = load_model(RunSettings(model=str(tiny_qwen), device="cpu"))
    assert loaded.info.hidden_size == 64
    assert len(loaded.info.eos_token_ids) == 2
    assert loaded.info.dtype == "float32" and loaded.info.device == "cpu"
    assert loaded.info.revision == folder_fingerprint(tiny_qwen)


def test_auto_precision_is_float32_on_the_cpu():
    import torch

    assert pick_dtype("auto", "cpu") == torch.float32
    assert pick_dtype("bfloat16", "cpu") == torch.bfloat16


def test_cuda_asked_for_without_a_gpu_is_a_plain_error(tiny_llama):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SettingsError, match="GPU"):
        load_model(RunSettings(model=str(tiny_llama), device="cuda"))


@pytest.mark.parametrize("given", ["./no/such/folder", "~/missing-model", "not a model id", "a/b/c"])
def test_neither_folder_nor_hub_id_is_refused(given):
    with pytest.raises(ModelError):
        resolve_source(given)


def test_hub_ids_and_folders_are_told_apart(tiny_llama):
    assert not resolve_source("meta-llama/Llama-3.1-8B-Instruct").is_local
    assert resolve_source(str(tiny_llama)).is_local


def test_folder_fingerprint_changes_with_the_weights(tiny_llama, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_llama, copy)
    assert folder_fingerprint(copy) == folder_fingerprint(tiny_llama)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert folder_fingerprint(copy) != folder_fingerprint(tiny_llama)


def test_describe_target_warns_about_the_cpu_and_reads_the_width(tiny_llama):
    import torch

    info = describe_target(str(tiny_llama), "auto")
    assert info.hidden_size == 64
    if not torch.cuda.is_available():
        assert info.on_cpu and "CPU" in info.warning


def test_model_needing_remote_code_is_refused(tiny_llama, tmp_path):
    import shutil

    folder = tmp_path / "remote"
    shutil.copytree(tiny_llama, folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_x.XForCausalLM"}
    config["model_type"] = "x-custom"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="code"):
        load_model(RunSettings(model=str(folder), device="cpu"))


def test_access_errors_are_model_errors_with_exit_code_2():
    assert issubclass(AccessError, ModelError) and AccessError("x").exit_code == 2


def _pickle_only_copy(tiny_llama, tmp_path):
    import shutil

    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "pickle-only"
    shutil.copytree(tiny_llama, folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    return folder


def test_pickle_only_model_folder_is_refused_unless_allowed(tiny_llama, tmp_path):
    folder = _pickle_only_copy(tiny_llama, tmp_path)
    with pytest.raises(ModelError, match="pickle"):
        load_model(RunSettings(model=str(folder), device="cpu"))
    loaded = load_model(RunSettings(model=str(folder), device="cpu", allow_pickle_weights=True))
    assert loaded.info.hidden_size == 64


@pytest.mark.parametrize("name", ["model.ckpt", "weights.pkl"])
def test_a_folder_whose_only_weights_are_another_pickle_format_is_refused_as_pickle(tiny_llama, tmp_path, name):
    # The hub treats .ckpt and .pkl as pickle weights too: a local folder must be refused for the same reason.
    folder = _pickle_only_copy(tiny_llama, tmp_path)
    (folder / "pytorch_model.bin").rename(folder / name)
    with pytest.raises(ModelError, match="pickle weight files"):
        load_model(RunSettings(model=str(folder), device="cpu"))


def test_allowing_pickle_weights_does_not_change_the_job(tiny_llama):
    assert RunSettings(allow_pickle_weights=True).numbers_key() == RunSettings().numbers_key()


def test_a_model_folder_without_tokenizer_json_is_one_sentence_naming_the_file_and_what_to_do(
    tiny_llama, prompts_csv, tmp_path, capsys
):
    import shutil

    folder = tmp_path / "no-tokenizer"
    shutil.copytree(tiny_llama, folder)
    (folder / "tokenizer.json").unlink()
    code = main(
        [
            "run",
            "--model",
            str(folder),
            "--prompts",
            str(prompts_csv),
            "--out",
            str(tmp_path / "o"),
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == (
        f"gpi-desktop: The model folder '{folder}' has no tokenizer.json, so its prompts cannot be turned "
        "into tokens: copy tokenizer.json into it from where the model came from (its Hugging Face page, "
        "or the folder it was copied from)."
    )
    (folder / "tokenizer.model").write_bytes(b"")  # sentencepiece's file, which transformers could convert
    main(["run", "--model", str(folder), "--prompts", str(prompts_csv), "--out", str(tmp_path / "o"), "--quiet"])
    assert (
        "has no tokenizer.json (its tokenizer.model could be converted only with the sentencepiece or tiktoken "
        "package installed), so" in capsys.readouterr().err
    )


def test_a_hub_repository_and_a_folder_with_only_pickle_weights_are_refused_in_the_same_words(
    fake_hub, tiny_llama, tmp_path
):
    files = {p.name: p.read_bytes() for p in tiny_llama.iterdir() if p.name != "model.safetensors"}
    files["pytorch_model.bin"] = b"\x80\x02pickled weights"
    fake_hub.add(Repo("old/pickled", files))
    with pytest.raises(ModelError) as from_hub:
        download.download_model("old/pickled")
    folder = _pickle_only_copy(tiny_llama, tmp_path)
    with pytest.raises(ModelError) as from_folder:
        load_model(RunSettings(model=str(folder), device="cpu"))
    assert from_hub.value.remedy is from_folder.value.remedy is Remedy.SAFETENSORS_OR_ALLOW_PICKLE
    assert str(from_hub.value).replace("old/pickled", "M") == str(from_folder.value).replace(str(folder), "M")
