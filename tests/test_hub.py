"""Downloads through the real huggingface_hub client against a Hub look-alike on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes import RecordingState
from hubserver import MODEL, TOKEN, Repo, repo_from_folder

from gpi_desktop.core.hub import cache, download, model_files, plain_errors
from gpi_desktop.core.vocabulary.errors import AccessError, Cancelled, DiskFullError, ModelError
from gpi_desktop.core.vocabulary.progress import ProgressKind


@pytest.fixture
def tiny_repo(fake_hub, tiny_llama) -> Repo:
    return fake_hub.add(repo_from_folder(MODEL, tiny_llama))


def _cache() -> Path:
    return cache.hub_cache_dir()


def _weights(repo: Repo) -> bytes:
    return repo.files["model.safetensors"]


def test_download_fetches_the_model_files_into_the_standard_cache_and_reports_full_progress(tiny_repo, tiny_llama):
    tiny_repo.files["README.md"] = b"# card"
    tiny_repo.files["original/consolidated.00.pth"] = b"x" * 1000  # never needed by transformers
    state = RecordingState()

    folder = download.download_model(MODEL, state=state)

    assert folder == _cache() / "models--tiny-org--tiny-llama" / "snapshots" / tiny_repo.commit
    names = sorted(p.name for p in folder.iterdir())
    assert "model.safetensors" in names and "config.json" in names and "tokenizer.json" in names
    assert "README.md" not in names and "original" not in names
    assert (folder / "model.safetensors").read_bytes() == (tiny_llama / "model.safetensors").read_bytes()
    last = state.progress[-1]
    assert last.done == last.total == sum(len(tiny_repo.files[n]) for n in names)
    assert last.fraction == 1.0
    assert "of" in last.message and "B" in last.message
    assert {p.kind for p in state.progress} == {ProgressKind.BYTES}  # bytes, not prompts: the window tells them apart
    dones = [p.done for p in state.progress]
    assert dones == sorted(dones)  # never goes backwards
    # transformers finds it as a hub id, offline, in the same cache.
    assert (_cache() / "models--tiny-org--tiny-llama" / "refs" / "main").read_text() == tiny_repo.commit


def test_downloaded_model_loads_in_offline_mode_without_the_network(tiny_repo, fake_hub, monkeypatch):
    from huggingface_hub import constants

    first = download.download_model(MODEL)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    fake_hub.requests.clear()

    again = download.download_model(MODEL)

    assert again == first
    assert fake_hub.requests == []
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(again).hidden_size == 64


def test_offline_mode_with_nothing_cached_says_so_plainly(tiny_repo, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(AccessError) as info:
        download.download_model(MODEL)
    assert info.value.kind == "offline"
    assert "HF_HUB_OFFLINE" in str(info.value) and f"https://huggingface.co/{MODEL}" in str(info.value)


def test_second_download_fetches_nothing_again(tiny_repo, fake_hub):
    download.download_model(MODEL)
    sent = dict(fake_hub.bytes_sent)
    state = RecordingState()
    download.download_model(MODEL, state=state)
    assert fake_hub.bytes_sent == sent
    assert state.progress[-1].done == state.progress[-1].total


def test_connection_dropped_halfway_resumes_from_where_it_stopped(tiny_repo, fake_hub):
    size = len(_weights(tiny_repo))
    fake_hub.drop_once["model.safetensors"] = size // 2

    folder = download.download_model(MODEL)

    assert (folder / "model.safetensors").read_bytes() == _weights(tiny_repo)
    ranges = fake_hub.ranges_for("model.safetensors")
    assert ranges[0] is None and ranges[-1] is not None and ranges[-1].startswith("bytes=")
    resumed_from = int(ranges[-1].split("=")[1].rstrip("-"))
    assert resumed_from > 0
    assert fake_hub.bytes_sent["model.safetensors"] < size * 1.5


class _CancelAfterBytes(RecordingState):
    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def set_progress(self, progress) -> None:
        super().set_progress(progress)
        if progress.done >= self.limit:
            self.cancel_requested = True


def test_cancel_stops_the_download_and_the_next_run_continues_it(tiny_repo, fake_hub):
    size = len(_weights(tiny_repo))
    fake_hub.slow["model.safetensors"] = 0.02
    small = sum(len(v) for k, v in tiny_repo.files.items() if k != "model.safetensors")
    state = _CancelAfterBytes(small + size // 3)

    with pytest.raises(Cancelled):
        download.download_model(MODEL, state=state, max_workers=1)

    partial = list((_cache() / "models--tiny-org--tiny-llama" / "blobs").glob("*.incomplete"))
    assert len(partial) == 1 and 0 < partial[0].stat().st_size < size
    assert any("/s" in p.message and "left" in p.message for p in state.progress)  # speed and time left
    kept = partial[0].stat().st_size
    fake_hub.slow.clear()

    folder = download.download_model(MODEL)

    assert (folder / "model.safetensors").read_bytes() == _weights(tiny_repo)
    assert fake_hub.ranges_for("model.safetensors")[-1] == f"bytes={kept}-"
    assert not list((_cache() / "models--tiny-org--tiny-llama" / "blobs").glob("*.incomplete"))


def test_a_server_that_ignores_the_range_restarts_the_file_and_progress_stays_right(tiny_repo, fake_hub):
    size = len(_weights(tiny_repo))
    fake_hub.slow["model.safetensors"] = 0.02
    small = sum(len(v) for k, v in tiny_repo.files.items() if k != "model.safetensors")
    with pytest.raises(Cancelled):
        download.download_model(MODEL, state=_CancelAfterBytes(small + size // 3), max_workers=1)
    fake_hub.slow.clear()
    fake_hub.ignore_range = True
    state = RecordingState()

    folder = download.download_model(MODEL, state=state)

    assert (folder / "model.safetensors").read_bytes() == _weights(tiny_repo)
    assert state.progress[-1].done == state.progress[-1].total
    assert max(p.done for p in state.progress) <= state.progress[-1].total


def test_download_refused_when_the_disk_is_too_small(tiny_repo, monkeypatch, fake_hub):
    monkeypatch.setattr(download, "_free_bytes", lambda folder: 1000)
    with pytest.raises(DiskFullError) as info:
        download.download_model(MODEL)
    message = str(info.value)
    assert "needs" in message and "free" in message and str(_cache()) in message
    assert not fake_hub.bytes_sent.get("model.safetensors")


def test_pickle_only_repository_is_refused_unless_allowed(fake_hub, tiny_llama):
    files = {p.name: p.read_bytes() for p in tiny_llama.iterdir() if p.name != "model.safetensors"}
    files["pytorch_model.bin"] = b"\x80\x02pickled weights"
    fake_hub.add(Repo("old/pickled", files))
    with pytest.raises(ModelError, match="pickle"):
        download.download_model("old/pickled")
    assert "pytorch_model.bin" not in fake_hub.bytes_sent

    folder = download.download_model("old/pickled", allow_pickle=True)
    assert (folder / "pytorch_model.bin").read_bytes() == files["pytorch_model.bin"]


def test_model_that_needs_remote_code_is_refused_before_the_weights_are_fetched(fake_hub, tiny_llama):
    files = {p.name: p.read_bytes() for p in tiny_llama.iterdir()}
    config = json.loads(files["config.json"])
    config.update(model_type="my_custom_arch", auto_map={"AutoModelForCausalLM": "modeling_x.MyModel"})
    files["config.json"] = json.dumps(config).encode()
    files["modeling_x.py"] = b"import os"
    fake_hub.add(Repo("someone/custom-code", files))
    with pytest.raises(ModelError, match="program code"):
        download.download_model("someone/custom-code")
    assert "model.safetensors" not in fake_hub.bytes_sent


def test_sharded_weights_follow_the_index_and_skip_a_consolidated_copy(fake_hub, tiny_llama):
    files = {p.name: p.read_bytes() for p in tiny_llama.iterdir() if p.name != "model.safetensors"}
    weights = (tiny_llama / "model.safetensors").read_bytes()
    files["model-00001-of-00001.safetensors"] = weights
    files["consolidated.safetensors"] = weights
    files["model.safetensors.index.json"] = json.dumps(
        {"metadata": {}, "weight_map": {"model.norm.weight": "model-00001-of-00001.safetensors"}}
    ).encode()
    fake_hub.add(Repo("org/sharded", files))
    folder = download.download_model("org/sharded")
    assert (folder / "model-00001-of-00001.safetensors").exists()
    assert not (folder / "consolidated.safetensors").exists()
    assert "consolidated.safetensors" not in fake_hub.bytes_sent


# --- access errors, as the Hub sends them ------------------------------------------------------------


def test_gated_model_without_a_token_asks_for_one(fake_hub, tiny_llama):
    fake_hub.add(repo_from_folder("meta-llama/Gated", tiny_llama, access="gated"))
    with pytest.raises(AccessError) as info:
        download.download_model("meta-llama/Gated", token=None)
    assert info.value.kind == "no-token"
    assert "token" in str(info.value) and "https://huggingface.co/meta-llama/Gated" in str(info.value)


def test_gated_model_whose_licence_is_not_accepted_says_to_accept_it(fake_hub, tiny_llama):
    fake_hub.add(repo_from_folder("meta-llama/Gated", tiny_llama, access="gated"))
    with pytest.raises(AccessError) as info:
        download.download_model("meta-llama/Gated", token=TOKEN)
    assert info.value.kind == "gated"
    assert "licence" in str(info.value) and "https://huggingface.co/meta-llama/Gated" in str(info.value)
    assert TOKEN not in str(info.value)


def test_gated_model_with_an_approved_token_downloads(fake_hub, tiny_llama):
    fake_hub.add(repo_from_folder("meta-llama/Gated", tiny_llama, access="gated", approved_tokens={TOKEN}))
    folder = download.download_model("meta-llama/Gated", token=TOKEN)
    assert (folder / "model.safetensors").exists()


def test_token_without_permission_is_told_apart_from_licence(fake_hub, tiny_llama):
    fake_hub.add(repo_from_folder("meta-llama/Gated", tiny_llama, access="gated"))
    fake_hub.read_only_tokens.add(TOKEN)
    with pytest.raises(AccessError) as info:
        download.download_model("meta-llama/Gated", token=TOKEN)
    assert info.value.kind == "forbidden"
    assert "permission" in str(info.value) and "https://huggingface.co/meta-llama/Gated" in str(info.value)


def test_invalid_token_is_reported_as_refused(fake_hub, tiny_repo):
    with pytest.raises(AccessError) as info:
        download.download_model(MODEL, token="hf_" + "Z" * 34)
    assert info.value.kind == "invalid-token"
    assert "settings/tokens" in str(info.value) and f"https://huggingface.co/{MODEL}" in str(info.value)
    assert "hf_ZZZZ" not in str(info.value)


def test_missing_or_private_repository_says_check_the_spelling(fake_hub):
    with pytest.raises(AccessError) as info:
        download.download_model("nobody/no-such-model")
    assert info.value.kind == "not-found"
    assert "spelling" in str(info.value) and "https://huggingface.co/nobody/no-such-model" in str(info.value)


def test_private_repository_with_a_token_that_cannot_see_it(fake_hub, tiny_llama):
    fake_hub.add(repo_from_folder("lab/private", tiny_llama, access="private"))
    with pytest.raises(AccessError) as info:
        download.download_model("lab/private", token=TOKEN)
    assert info.value.kind == "not-found" and "private" in str(info.value)


def test_unknown_revision_is_named(tiny_repo):
    with pytest.raises(ModelError, match="no revision 'v9'"):
        download.download_model(MODEL, revision="v9")


def test_no_network_says_check_the_connection(monkeypatch, fake_hub):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(AccessError) as info:
        download.download_model(MODEL)
    assert info.value.kind == "offline" and "internet connection" in str(info.value)


@pytest.mark.parametrize("fetch", [download.fetch_config, download.download_model], ids=["config", "download"])
def test_a_hub_that_answers_500_is_reported_as_the_hubs_error_not_the_connection(
    fetch, tiny_repo, fake_hub, monkeypatch
):
    import huggingface_hub.utils._http as hf_http

    monkeypatch.setattr(hf_http.time, "sleep", lambda seconds: None)  # the client retries a 500 for ~20 s
    fake_hub.fail_status = 500
    with pytest.raises(AccessError) as info:
        fetch(MODEL)
    message = str(info.value)
    assert info.value.kind == "server"
    assert "answered with an error" in message and "try again" in message
    assert "internet connection" not in message


def test_a_complete_cached_model_is_used_when_the_hub_cannot_be_reached(tiny_repo, monkeypatch):
    from huggingface_hub import constants

    folder = download.download_model(MODEL)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    state = RecordingState()
    assert download.download_model(MODEL, state=state) == folder
    assert "could not be reached" in state.statuses[-1]


def test_invalid_model_id_is_a_plain_error(fake_hub):
    with pytest.raises(ModelError, match="owner/name"):
        download.download_model("not a/valid//id")


def test_out_of_disk_while_writing_is_a_plain_error():
    import errno

    error = plain_errors.plain_hub_error(OSError(errno.ENOSPC, "No space left on device"), MODEL)
    assert isinstance(error, DiskFullError) and "full" in str(error)


def test_an_unrelated_exception_is_not_dressed_up_as_a_hub_error():
    assert plain_errors.plain_hub_error(KeyError("bug"), MODEL) is None


# --- cache listing and remote-code check ----------------------------------------------------------


def test_cached_models_lists_downloaded_models_with_their_size(tiny_repo):
    assert cache.cached_models() == []
    folder = download.download_model(MODEL)
    models = cache.cached_models()
    assert [m.model_id for m in models] == [MODEL]
    assert models[0].path == folder
    on_disk = sum(p.stat().st_size for p in (_cache() / "models--tiny-org--tiny-llama" / "blobs").iterdir())
    assert models[0].size_bytes == on_disk
    assert MODEL in models[0].describe()


def test_remote_code_is_detected_only_for_architectures_transformers_does_not_have():
    assert model_files.model_needs_remote_code({"model_type": "weird", "auto_map": {"AutoConfig": "c.C"}})
    # Shipped code, but transformers has its own class: loads without running the repository's code.
    assert not model_files.model_needs_remote_code({"model_type": "phi3", "auto_map": {"AutoConfig": "c.C"}})
    assert not model_files.model_needs_remote_code({"model_type": "llama"})
    # A tokenizer that exists only as code in the repository.
    assert model_files.model_needs_remote_code(
        {"model_type": "llama"}, {"auto_map": {"AutoTokenizer": ["t.T", None]}, "tokenizer_class": "MyOwnTokenizer"}
    )
    assert not model_files.model_needs_remote_code(
        {"model_type": "llama"}, {"auto_map": {"AutoTokenizer": ["t.T", None]}, "tokenizer_class": "LlamaTokenizerFast"}
    )
    with pytest.raises(ModelError, match="does not know the model type"):
        model_files.check_model_config({"model_type": "weird"}, "x/y")


def test_hub_id_parameters_come_from_safetensors_metadata(tiny_repo, tiny_llama):
    from gpi_desktop.core.model.memory import count_parameters

    local = count_parameters(tiny_llama)
    assert download.fetch_config(MODEL)["hidden_size"] == 64  # before any download: only config.json comes
    assert count_parameters(MODEL) == local
    assert local == _sum_parameters(tiny_llama)


def _sum_parameters(folder: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        return sum(f.get_tensor(k).numel() for k in f.keys())  # noqa: SIM118 - safetensors' safe_open is no dict


def test_a_hub_answer_that_names_no_commit_is_refused_in_plain_words(tiny_repo, monkeypatch):
    from huggingface_hub import HfApi

    real = HfApi.model_info

    def without_commit(self, *args, **kwargs):
        info = real(self, *args, **kwargs)
        info.sha = None
        return info

    monkeypatch.setattr(HfApi, "model_info", without_commit)
    # Found by mypy: the plan held commit None, and the files were then fetched from whatever "main" was.
    with pytest.raises(ModelError, match="did not say which version"):
        download.plan_download(MODEL)
