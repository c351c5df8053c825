"""What "Prepare for a cluster" checks and says before it writes a job folder: one function for the window and `prepare`.

    review = review_job(rows, cluster, spec.settings)   # raises SettingsError for what must change
    review.warnings                                       # what may stop SLURM taking the job
    review.unit_sentence                                  # how the prompts go to the tasks

The unit is the real one the run cuts by (`core.job.job.shard_unit`): with a
fixed batch size a whole wave of batches, so that each prompt runs in the very
batch it would on one machine; with `auto` (or one at a time) one prompt.
A job folder never holds a task that would get no prompts: it would wait in
the queue and load the model for nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gpi_desktop.core.cluster.shards import tasks_with_rows
from gpi_desktop.core.vocabulary.errors import SettingsError
from gpi_desktop.core.vocabulary.settings import RunSettings

if TYPE_CHECKING:
    from gpi_desktop.core.cluster.sbatch import ClusterSettings


@dataclass(frozen=True)
class JobReview:
    """The checks of a job folder that may be written: how the prompts are shared out, and the warnings."""

    rows: int
    tasks: int
    unit: int | None  # prompts that go to a task together; None: any single prompt
    warnings: tuple[str, ...]

    @property
    def unit_sentence(self) -> str:
        per_task = -(-self.rows // max(1, self.tasks))
        if self.unit is None:
            return (
                f"The {self.rows:,} prompts go to the {self.tasks} tasks one by one, balanced by length: at most "
                f"about {per_task:,} each."
            )
        batches = self.unit // _wave_batches()
        return (
            f"The {self.rows:,} prompts go to the {self.tasks} tasks in whole waves of {self.unit:,} ({_wave_batches()} "
            f"batches of {batches}, so that every prompt runs in the batch it would run in on one machine), "
            f"balanced by length: {_plural(_wave_count(self.rows, self.unit), 'wave')} for {_plural(self.tasks, 'task')}."
        )


def most_useful_tasks(rows: int, wanted: int, settings: RunSettings) -> int:
    """The number of tasks to offer: `wanted`, or fewer when only that many would get prompts (at least 1)."""
    from gpi_desktop.core.job.job import shard_unit

    return max(1, tasks_with_rows(rows, wanted, shard_unit(settings)))


def idle_tasks_sentence(rows: int, tasks: int, settings: RunSettings) -> str | None:
    """Why some of `tasks` would get no prompts and what to choose instead; None when every task gets some."""
    from gpi_desktop.core.job.job import shard_unit

    unit = shard_unit(settings)
    busy = tasks_with_rows(rows, tasks, unit)
    if busy >= tasks:
        return None
    if unit is None:
        return (
            f"Only {busy} of the {tasks} tasks would get prompts ({rows:,} prompts, one each at most): choose at "
            f"most {_plural(busy, 'task')}."
        )
    return (
        f"Only {busy} of the {tasks} tasks would get prompts: with batch size {settings.batch_size} the "
        f"{rows:,} prompts go to the tasks in whole waves of {unit:,} ({_wave_batches()} batches of "
        f"{settings.batch_size}, so that the results are those of one machine), which makes "
        f"{_plural(_wave_count(rows, unit), 'wave')}: choose at most {_plural(busy, 'task')}, or a smaller batch size "
        "(or auto)."
    )


def review_job(rows: int, cluster: ClusterSettings, settings: RunSettings) -> JobReview:
    """Check the cluster fields and the split of `rows` prompts; SettingsError names what to change."""
    from gpi_desktop.core.job.job import shard_unit

    cluster.validate()
    if rows < 1:
        raise SettingsError("The prompts file has no prompts: there is nothing to run on the cluster.")
    idle = idle_tasks_sentence(rows, cluster.shards, settings)
    if idle is not None:
        raise SettingsError(idle)
    return JobReview(rows, cluster.shards, shard_unit(settings), tuple(cluster.warnings()))


def _wave_batches() -> int:
    from gpi_desktop.core.generation.engine import WAVE_BATCHES

    return WAVE_BATCHES


def _wave_count(rows: int, unit: int) -> int:
    return -(-rows // max(1, unit))


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"
