"""The job folder "Prepare for a cluster" writes: the prompts, job.json, a SLURM array script and plain instructions.

    <job folder>/input/<prompts file>   a byte copy (same sha256, same name in the manifest)
    <job folder>/job.json               the JobSpec (core/shards.py job file)
    <job folder>/run.sbatch             #SBATCH --array=1-N; task I runs shard I/N into shards/I
    <job folder>/README.txt             how to copy, submit, check and merge, in plain words
    <job folder>/logs/                  each task's messages (SLURM does not create this folder itself)

Only standard sbatch options are used, so the script runs on any SLURM site;
site-specific ones (partition, account) are fields the user fills in.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from gpi_desktop.core.errors import SettingsError
from gpi_desktop.core.shards import JOB_FILE_NAME, SHARD_MANIFEST, write_job_file

SCRIPT_NAME = "run.sbatch"
README_NAME = "README.txt"
INPUT_DIR = "input"
LOGS_DIR = "logs"
SHARDS_DIR = "shards"
# The options the script may use: all documented sbatch options (https://slurm.schedmd.com/sbatch.html).
STANDARD_OPTIONS = frozenset({
    "job-name", "array", "gres", "time", "mem", "cpus-per-task", "output", "open-mode", "requeue",
    "partition", "account",
})  # fmt: skip

_TIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")
_MEMORY = re.compile(r"^\d+[KMGT]?$", re.IGNORECASE)
_NAME = re.compile(r"^[A-Za-z0-9_.,+-]*$")
_UNSAFE_IN_QUOTES = re.compile(r'["`\\\n\r]')


@dataclass(frozen=True)
class ClusterSettings:
    """The fields of "Prepare for a cluster" (defaults suit one 7-8B model per GPU)."""

    shards: int = 4
    gpus_per_task: int = 1
    time: str = "08:00:00"  # SLURM's forms: minutes, HH:MM:SS, D-HH:MM:SS, ...
    memory: str = "64G"
    cpus_per_task: int = 8
    model_cache: str = ""  # HF_HOME on the cluster; empty keeps the cluster's default (~/.cache/huggingface)
    partition: str = ""
    account: str = ""
    job_name: str = "gpi-desktop"
    command: str = "gpi-desktop"  # how the cluster starts the program, e.g. "python -m gpi_desktop"
    setup: str = ""  # shell lines run first, e.g. "module load cuda" or "source ~/gpi/bin/activate"

    def validate(self) -> "ClusterSettings":
        if not isinstance(self.shards, int) or self.shards < 1:
            raise SettingsError("The number of tasks must be a whole number of at least 1.")
        if not isinstance(self.gpus_per_task, int) or self.gpus_per_task < 0:
            raise SettingsError("GPUs per task must be a whole number (0 runs on the CPU only).")
        if not isinstance(self.cpus_per_task, int) or self.cpus_per_task < 1:
            raise SettingsError("CPU cores per task must be a whole number of at least 1.")
        if not _TIME.match(self.time.strip()):
            raise SettingsError(f"The time limit '{self.time}' is not in SLURM's form: write hours like 08:00:00, "
                                "or days like 2-00:00:00.")
        if not _MEMORY.match(self.memory.strip()):
            raise SettingsError(f"The memory '{self.memory}' is not in SLURM's form: write a number with G or M, "
                                "like 64G.")
        for label, value in (("partition", self.partition), ("account", self.account), ("job name", self.job_name)):
            if not _NAME.match(value.strip()):
                raise SettingsError(f"The {label} '{value}' may hold only letters, digits, '.', '_', ',' and '-'.")
        for label, value in (("model cache path", self.model_cache), ("program command", self.command)):
            if _UNSAFE_IN_QUOTES.search(value):
                raise SettingsError(f"The {label} may not contain quotes, backslashes or line breaks.")
        if not self.command.strip():
            raise SettingsError("The program command is empty: write how the cluster starts GPI Desktop, "
                                "usually gpi-desktop.")
        return self


@dataclass(frozen=True)
class JobFolder:
    folder: Path
    script: Path
    job_file: Path
    readme: Path
    prompts: Path


def cluster_spec(spec, cluster: ClusterSettings):
    """The job as the cluster runs it: on its GPUs (or its CPUs when no GPU is asked for)."""
    from gpi_desktop.core.job import with_settings

    return with_settings(spec, device="auto" if cluster.gpus_per_task > 0 else "cpu")


def write_job_folder(folder: Path | str, spec, cluster: ClusterSettings) -> JobFolder:
    """Write a job folder for `spec` into an empty (or new) `folder`; checks everything first."""
    from gpi_desktop.core.export import check_output_folder
    from gpi_desktop.core.job import load_prompts

    folder = Path(folder)
    cluster.validate()
    spec = cluster_spec(spec, cluster).validate()
    table = load_prompts(spec)  # refuses a bad prompts file before anything is written
    check_output_folder(folder, overwrite=False)
    source = Path(spec.prompts_path)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / INPUT_DIR).mkdir(exist_ok=True)
    (folder / LOGS_DIR).mkdir(exist_ok=True)
    (folder / SHARDS_DIR).mkdir(exist_ok=True)
    # Same file name: the merged manifest names the input file as a single run on the original does.
    prompts = folder / INPUT_DIR / source.name
    shutil.copyfile(source, prompts)
    relative = f"{INPUT_DIR}/{source.name}"
    job_spec = replace(spec, prompts_path=Path(relative), column=table.column)
    write_job_file(folder / JOB_FILE_NAME, job_spec, relative, cluster.shards)
    script = folder / SCRIPT_NAME
    script.write_text(sbatch_script(cluster), encoding="utf-8", newline="\n")
    script.chmod(0o755)
    readme = folder / README_NAME
    readme.write_text(readme_text(cluster, spec, len(table), folder.name), encoding="utf-8", newline="\n")
    (folder / LOGS_DIR / "about.txt").write_text(
        "SLURM writes each task's messages here, as shard-<task number>.log.\n", encoding="utf-8", newline="\n")
    return JobFolder(folder, script, folder / JOB_FILE_NAME, readme, prompts)


def sbatch_script(cluster: ClusterSettings) -> str:
    c = cluster.validate()
    n = c.shards
    options = [
        f"--job-name={c.job_name.strip() or 'gpi-desktop'}",
        f"--array=1-{n}",
        *([f"--gres=gpu:{c.gpus_per_task}"] if c.gpus_per_task > 0 else []),
        f"--cpus-per-task={c.cpus_per_task}",
        f"--mem={c.memory.strip().upper()}",
        f"--time={c.time.strip()}",
        f"--output={LOGS_DIR}/shard-%a.log",
        "--open-mode=append",
        "--requeue",
        *([f"--partition={c.partition.strip()}"] if c.partition.strip() else []),
        *([f"--account={c.account.strip()}"] if c.account.strip() else []),
    ]
    lines = [
        "#!/bin/bash",
        f"# GPI Desktop: one job in {n} tasks (a SLURM array job). From inside this folder: sbatch {SCRIPT_NAME}",
        *(f"#SBATCH {option}" for option in options),
        "",
        "set -eu",
        'cd "${SLURM_SUBMIT_DIR:-.}"',
        f"if [ ! -f {JOB_FILE_NAME} ]; then",
        f'  echo "{JOB_FILE_NAME} is not in $(pwd): go into the job folder (cd), then run: sbatch {SCRIPT_NAME}" >&2',
        "  exit 2",
        "fi",
        f"N={n}",
        f'I="${{SLURM_ARRAY_TASK_ID:?this is an array job: submit it with sbatch {SCRIPT_NAME}}}"',
        f'OUT="{SHARDS_DIR}/$I"',
        "export TOKENIZERS_PARALLELISM=false",
    ]
    cache = _shell_path(c.model_cache.strip())
    if cache:
        lines.append(f'export HF_HOME="{cache}"')
    if c.setup.strip():
        lines += ["", "# Your setup commands:", *c.setup.strip().splitlines(), ""]
    lines += [
        f'GPI_DESKTOP="${{GPI_DESKTOP:-{c.command.strip()}}}"',
        "",
        "# A finished shard is not run again (a requeued or resubmitted task); an interrupted one continues.",
        f'if [ -f "$OUT/{SHARD_MANIFEST}" ] && [ ! -d "$OUT/.gpi-run" ]; then',
        '  echo "Shard $I of $N is already finished."',
        "  exit 0",
        "fi",
        'if [ -d "$OUT/.gpi-run" ]; then',
        '  echo "Shard $I of $N continues where it stopped."',
        '  RESUME="--resume"',
        "else",
        '  RESUME=""',
        "fi",
        f"mkdir -p {SHARDS_DIR}",
        f'$GPI_DESKTOP run --job {JOB_FILE_NAME} --shard "$I/$N" --out "$OUT" $RESUME',
        "",
    ]
    return "\n".join(lines)


def _is_model_folder(model: str) -> bool:
    from gpi_desktop.core.models import resolve_source

    try:
        return resolve_source(model).is_local
    except Exception:  # noqa: BLE001 - an unusable name is not a folder; the run reports it in plain words
        return False


def _shell_path(path: str) -> str:
    """A path for inside double quotes: ~ would not expand there, so it becomes $HOME."""
    if path == "~":
        return "$HOME"
    if path.startswith("~/"):
        return "$HOME/" + path[2:]
    return path


def readme_text(cluster: ClusterSettings, spec, rows: int, folder_name: str) -> str:
    c = cluster
    model = spec.settings.model
    cache = c.model_cache.strip()
    cache_line = (f"HF_HOME={cache} " if cache else "")
    gpus = (f"{c.gpus_per_task} GPU{'s' if c.gpus_per_task != 1 else ''}" if c.gpus_per_task else "no GPU (CPU only)")
    if _is_model_folder(model):
        model_step = (f"The job uses the model folder {model}. The same path must hold the model on\n"
                      "   the cluster: copy the model folder there, or change \"model\" in job.json to\n"
                      "   where it is on the cluster (before any task starts; every task must use the same).")
    else:
        model_step = (
            "Make the model available. Compute machines often have no internet, so download\n"
            "   the model once on the login machine before you submit:\n"
            f"       {cache_line}hf download {model}\n"
            "   If the model needs permission on Hugging Face (for example Llama), log in first\n"
            "   with: hf auth login   (never write your token into this folder).\n"
            f"   The tasks look for the model in {cache or 'the default cache (~/.cache/huggingface)'}.")
    empty = ""
    if c.shards > rows:
        empty = (f"\nThere are more tasks ({c.shards}) than prompts ({rows}), so some tasks will have no prompts; "
                 "that is allowed but wastes their wait in the queue.\n")
    return f"""GPI Desktop job for a SLURM cluster
===================================

This folder holds one GPI job: {rows} prompts, the model {model}, and its settings
(job.json). The work is split into {c.shards} tasks; each task runs on its own
machine with {gpus}, at most {c.time} (hours:minutes:seconds) and {c.memory.upper()} of memory.
{empty}
1. Copy this whole folder to the cluster, for example:
       scp -r {folder_name} you@cluster.example.edu:
   GPI Desktop must be installed there, so that the command "{c.command}" works
   (ask your cluster's help desk if it is not; see also the setup lines in {SCRIPT_NAME}).

2. {model_step}

3. Submit the job from inside the folder:
       cd {folder_name}
       sbatch {SCRIPT_NAME}
   Partition or account required by your cluster: fill them in when preparing
   the folder, or add them to {SCRIPT_NAME} (lines starting with #SBATCH).

4. Check on it:
       squeue --me
   Each task writes its messages to logs/shard-<task number>.log and its results
   to shards/<task number>. A task that was stopped (preempted, out of time, or a
   machine failure) keeps its finished prompts: it continues where it stopped when
   SLURM restarts it, or when you submit that task again, for example task 3:
       sbatch --array=3 {SCRIPT_NAME}
   A finished task is never run twice.

5. Merge the results into one export folder, when every task has finished:
   - on the cluster:   {c.command} merge shards/* --out export
   - or copy this folder (at least its shards folder) back to your computer and, in
     the GPI Desktop window, choose Cluster > "Merge cluster results…" and pick it.
   The merge checks that every prompt is there exactly once and that all tasks ran
   the same job (same model version, settings and prompts file), and tells you which
   task is missing or different. The export folder is the same as a run on one
   machine writes: hidden/, generated_texts.pkl and .csv, hidden_states.npy and
   manifest.json, ready for gpi_pack.

About "the same": the files, their row numbers and their order are those of one
machine. When the batch size is a fixed number (or prompts run one at a time),
every prompt runs in the same batch as on one machine, so on the same kind of
GPU the texts and numbers are the same too. With the automatic batch size each
task picks its own batches, so the hidden-state numbers agree with a single run
only up to rounding in the last digits (as any two batched runs do), and in rare
near-ties a generated word could differ. Choose a fixed batch size when results
must be identical bit for bit.
"""
