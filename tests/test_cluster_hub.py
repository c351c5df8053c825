"""A cluster job of a Hub model: the README's steps as written, a pinned commit, offline tasks, a moving main."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import PROMPTS
from hubserver import MODEL, TOKEN, FakeHub, repo_from_folder

from gpi_desktop.cli import main
from gpi_desktop.core.cluster.sbatch import ClusterSettings, write_job_folder
from gpi_desktop.core.cluster.shards import load_job_file
from gpi_desktop.core.hub.download import download_model
from gpi_desktop.core.job.job import JobSpec
from gpi_desktop.core.model.tinymodel import TinySpec, build_tiny_model
from gpi_desktop.core.vocabulary.settings import ExportSettings, RunSettings

REPO = Path(__file__).resolve().parents[1]
GATED = "tiny-org/gated-llama"


@pytest.fixture
def prompts(tmp_path) -> Path:
    path = tmp_path / "input" / "speeches.csv"
    path.parent.mkdir()
    pd.DataFrame({"text": PROMPTS}).to_csv(path, index=False)
    return path


def _spec(model: str, prompts: Path) -> JobSpec:
    # Batch size 1: waves of 4 of the 8 prompts, so each of two tasks gets some (never an idle task).
    return JobSpec(prompts, "text", RunSettings(model=model, max_new_tokens=4, batch_size="1"), ExportSettings())


def _step_two(readme: str) -> list[str]:
    """The command lines of the README's step 2 (download the model), exactly as printed."""
    step = readme.split("\n2. ", 1)[1].split("\n3. ", 1)[0]
    return [line.strip() for line in step.splitlines() if line.startswith("       ")]


def _clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "SLURM_"))}
    env.update(HOME=str(home), PATH=f"{Path(sys.executable).parent}:{env['PATH']}", PYTHONPATH=str(REPO))
    env.pop("XDG_CACHE_HOME", None)
    return env


def test_the_readmes_steps_as_written_download_a_gated_model_that_the_tasks_then_run_offline(
    tmp_path, prompts, tiny_llama
):
    scratch = tmp_path / "scratch" / "hf"
    home = tmp_path / "home"
    home.mkdir()
    with FakeHub() as hub:
        hub.valid_tokens.add(TOKEN)
        repo = hub.add(repo_from_folder(GATED, tiny_llama, access="gated", approved_tokens={TOKEN}))
        from huggingface_hub import constants

        saved = constants.ENDPOINT, constants.HF_HUB_OFFLINE
        constants.ENDPOINT, constants.HF_HUB_OFFLINE = hub.url, False
        try:  # the desktop writes the folder: the commit is pinned from the Hub, with the user's token
            cluster = ClusterSettings(
                shards=2, gpus_per_task=0, model_cache=str(scratch), command=f"{sys.executable} -m gpi_desktop"
            )
            job = write_job_folder(tmp_path / "job", _spec(GATED, prompts), cluster, token=TOKEN)
        finally:
            constants.ENDPOINT, constants.HF_HUB_OFFLINE = saved
        assert job.revision == repo.commit
        assert load_job_file(job.job_file).spec.settings.revision == repo.commit
        readme = job.readme.read_text()
        lines = _step_two(readme)
        assert lines == [
            f"export HF_HOME={scratch}",
            "hf auth login      # only for a model that needs permission, e.g. Llama",
            f"hf download {GATED} --revision {repo.commit}",
        ]
        # On the login machine, in one terminal, as written. The fake Hub has no browser sign-in, so the login
        # line gets the token the way `hf auth login` asks for it, as an option.
        script = "\n".join(line.replace("hf auth login", f"hf auth login --token {TOKEN}", 1) for line in lines)
        env = dict(_clean_env(home), HF_ENDPOINT=hub.url)
        done = subprocess.run(["bash", "-ec", script], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert (scratch / "token").read_text().strip() == TOKEN  # the login went where the download looked
    # The Hub is gone (compute machines have no internet) and so is the token: the tasks need neither.
    (scratch / "token").unlink()
    for task in (1, 2):
        env = dict(_clean_env(home), SLURM_ARRAY_TASK_ID=str(task), SLURM_JOB_ID="7", SLURM_SUBMIT_DIR=str(job.folder))
        done = subprocess.run(
            ["bash", str(job.script)], cwd=job.folder, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-3000:]
    assert main(["merge", str(job.folder), "--out", str(tmp_path / "export"), "--quiet"]) == 0
    model = json.loads((tmp_path / "export" / "manifest.json").read_text())["model"]
    assert (model["model_id"], model["revision"]) == (GATED, repo.commit)


def test_a_task_whose_model_is_not_downloaded_says_to_download_it_on_the_login_machine(tmp_path, prompts, tiny_llama):
    cluster = ClusterSettings(
        shards=1, gpus_per_task=0, model_cache=str(tmp_path / "empty-cache"), command=f"{sys.executable} -m gpi_desktop"
    )
    job = write_job_folder(tmp_path / "job", _spec(GATED, prompts), cluster)  # offline here: nothing to pin
    assert job.revision is None and "could not be pinned" in job.readme.read_text()
    env = dict(_clean_env(tmp_path), SLURM_ARRAY_TASK_ID="1", SLURM_JOB_ID="8", SLURM_SUBMIT_DIR=str(job.folder))
    done = subprocess.run(
        ["bash", str(job.script)], cwd=job.folder, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 2
    assert "download it on the login machine" in done.stderr and "README.txt" in done.stderr


def _publish_new_commit(repo, folder: Path) -> str:
    """The model's owners push other weights: main moves to a new commit."""
    repo.files["model.safetensors"] = (folder / "model.safetensors").read_bytes()
    repo.commit = "c" * 40
    return repo.commit


def test_a_new_commit_published_between_tasks_does_not_change_a_pinned_job(fake_hub, tiny_llama, prompts, tmp_path):
    other = build_tiny_model(tmp_path / "other", TinySpec(architecture="llama", seed=7))
    repo = fake_hub.add(repo_from_folder(MODEL, tiny_llama))
    first = repo.commit
    job = write_job_folder(tmp_path / "job", _spec(MODEL, prompts), ClusterSettings(shards=2, gpus_per_task=0))
    assert job.revision == first
    download_model(MODEL, revision=job.revision)  # README step 2
    shards = job.folder / "shards"
    assert main(["run", "--job", str(job.job_file), "--shard", "1/2", "--out", str(shards / "1"), "--quiet"]) == 0
    _publish_new_commit(repo, other)
    download_model(MODEL)  # someone fetches the newest version into the same cache: its main moves
    assert main(["run", "--job", str(job.job_file), "--shard", "2/2", "--out", str(shards / "2"), "--quiet"]) == 0
    assert main(["merge", str(job.folder), "--out", str(tmp_path / "export"), "--quiet"]) == 0
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    assert manifest["model"]["revision"] == first


def test_an_unpinned_job_runs_the_first_tasks_commit_in_every_task_and_the_merge_still_refuses_two(
    fake_hub, tiny_llama, prompts, tmp_path, capsys
):
    from gpi_desktop.core.cluster.model_pin import PIN_FILE

    other = build_tiny_model(tmp_path / "other", TinySpec(architecture="llama", seed=7))
    repo = fake_hub.add(repo_from_folder(MODEL, tiny_llama))
    first = repo.commit
    job = write_job_folder(
        tmp_path / "job", _spec(MODEL, prompts), ClusterSettings(shards=2, gpus_per_task=0), pin=False
    )  # prepared offline: "revision": null, each task would resolve main
    shards = job.folder / "shards"
    assert main(["run", "--job", str(job.job_file), "--shard", "1/2", "--out", str(shards / "1"), "--quiet"]) == 0
    assert json.loads((job.folder / PIN_FILE).read_text())["revision"] == first  # the first task pinned its commit
    second = _publish_new_commit(repo, other)
    assert main(["run", "--job", str(job.job_file), "--shard", "2/2", "--out", str(shards / "2"), "--quiet"]) == 0
    assert {json.loads((shards / i / "shard.json").read_text())["identity"]["model_revision"] for i in "12"} == {first}
    assert main(["merge", str(job.folder), "--out", str(tmp_path / "export"), "--quiet"]) == 0

    # Shards that still ran two commits (job.json edited between tasks): the merge refuses, naming both.
    data = json.loads(job.job_file.read_text())
    job.job_file.write_text(json.dumps({**data, "settings": {**data["settings"], "revision": second}}))
    shutil.rmtree(shards / "2")
    assert main(["run", "--job", str(job.job_file), "--shard", "2/2", "--out", str(shards / "2"), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["merge", str(job.folder), "--out", str(tmp_path / "export2")]) == 2
    err = capsys.readouterr().err
    assert re.search(f"model revision ({first} vs {second}|{second} vs {first})", err), err
