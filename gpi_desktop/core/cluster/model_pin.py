"""Every task of a job runs the same model files, checked when a task starts, before the model loads.

A job folder pins a Hub model's commit in job.json when it is prepared. Where it could not (prepared offline
with no cache: "revision": null) and for a model folder (whose files can change between tasks), the first task
to start pins what it found in `model-pin.json` of the job folder, and every later task must run the same:

- a Hub model runs the pinned commit (a task whose cache lacks it says to download it, as README.txt step 2);
- a model folder must still have the pinned fingerprint (`models.local_model_revision`), else the task stops
  before loading, instead of the merge refusing its shard hours later.

The pin file is made with a hard link from a complete temporary file, so two tasks starting at once cannot
both pin: the second finds the first's and follows it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gpi_desktop.core.files.fileio import TEMP_PREFIX
from gpi_desktop.core.vocabulary.errors import SettingsError

if TYPE_CHECKING:
    from gpi_desktop.core.cluster.shards import Shard
    from gpi_desktop.core.job.job import JobSpec

PIN_FILE = "model-pin.json"


@dataclass(frozen=True)
class ModelPin:
    model: str
    revision: str  # a Hub commit, or a model folder's fingerprint ("sha256:...")
    task: str  # the shard (I/N) that pinned it

    def to_json(self) -> str:
        return json.dumps({"model": self.model, "revision": self.revision, "task": self.task}, indent=1) + "\n"


def task_model_revision(spec: JobSpec) -> str | None:
    """The commit or fingerprint this task would load now, without loading it (None: not downloaded here)."""
    from gpi_desktop.core.hub.download import pin_revision
    from gpi_desktop.core.model.models import local_model_revision, resolve_source

    source = resolve_source(spec.settings.model)
    if source.local_path is not None:
        return local_model_revision(source.local_path)
    return pin_revision(source.name, spec.settings.revision)


def read_pin(path: Path) -> ModelPin | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return ModelPin(str(data["model"]), str(data["revision"]), str(data["task"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        raise SettingsError(
            f"'{path}' is damaged: delete it only if no task of this job has run yet (it says "
            "which model version the first task used), then submit again."
        ) from None


def pin_first(path: Path, pin: ModelPin) -> ModelPin:
    """Write `pin` unless a task pinned first; returns the job's pin either way."""
    existing = read_pin(path)
    if existing is not None:
        return existing
    temp = path.parent / f"{TEMP_PREFIX}{os.getpid()}-{path.name}"
    temp.write_text(pin.to_json(), encoding="utf-8")
    try:
        os.link(temp, path)  # fails where another task's pin appeared meanwhile
    except FileExistsError:
        pass
    finally:
        temp.unlink(missing_ok=True)
    return read_pin(path) or pin


def check_task_model(job_folder: Path, spec: JobSpec, shard: Shard) -> JobSpec:
    """The job to run in this task: its model pinned to the job's one version; SettingsError if it cannot be."""
    from gpi_desktop.core.hub.download import is_commit
    from gpi_desktop.core.job.job import with_settings
    from gpi_desktop.core.model.models import resolve_source

    if is_commit(spec.settings.revision):
        return spec  # pinned in job.json when the folder was prepared; the load uses exactly that commit
    revision = task_model_revision(spec)
    if revision is None:
        return spec  # not downloaded here: the load says to download it (README.txt step 2)
    path = Path(job_folder) / PIN_FILE
    pin = pin_first(path, ModelPin(spec.settings.model, revision, shard.label))
    if resolve_source(spec.settings.model).is_local:
        if pin.revision != revision:
            raise SettingsError(
                f"The model folder {spec.settings.model} changed since task {pin.task} of this job started (its "
                f"files differ from the ones recorded in {path}), so this task would not run the same model: put "
                "the folder back as it was for every task, or prepare the job again and run all its tasks anew."
            )
        return spec
    return with_settings(spec, revision=pin.revision)
