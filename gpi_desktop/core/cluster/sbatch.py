"""The job folder "Prepare for a cluster" writes: the prompts, job.json, a SLURM array script and plain instructions.

    <job folder>/input/<prompts file>   a byte copy (same sha256, same name in the manifest)
    <job folder>/job.json               the JobSpec (core/cluster/shards.py job file)
    <job folder>/run.sbatch             #SBATCH --array=1-N; task I runs shard I/N into shards/I
    <job folder>/README.txt             how to copy, submit, check and merge, in plain words
    <job folder>/logs/                  each task's messages (SLURM does not create this folder itself)

Only standard sbatch options are used, so the script runs on any SLURM site;
site-specific ones (partition, account, qos, the GPU request) are fields the
user fills in, and the script's comments say which lines to adjust.

Run directly (`job/run.sbatch`, from any folder) the script submits itself
with the job folder's absolute path as working folder and log folder, so the
logs land in job/logs/ wherever the user stands; a plain `sbatch run.sbatch`
works too, and a task still finds its job folder when sbatch was started
elsewhere (its log is then in the folder sbatch was started in).
"""

from __future__ import annotations

import re
import shutil
import textwrap
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from gpi_desktop.core.cluster.review import JobReview, review_job
from gpi_desktop.core.cluster.shards import JOB_FILE_NAME, SHARD_MANIFEST, write_job_file
from gpi_desktop.core.files.runstore import RUN_DIR_NAME
from gpi_desktop.core.vocabulary.errors import SettingsError

if TYPE_CHECKING:
    from gpi_desktop.core.job.job import JobSpec

SCRIPT_NAME = "run.sbatch"
README_NAME = "README.txt"
INPUT_DIR = "input"
LOGS_DIR = "logs"
SHARDS_DIR = "shards"
# The options the script may use: all documented sbatch options (https://slurm.schedmd.com/sbatch.html).
STANDARD_OPTIONS = frozenset({
    "job-name", "array", "gres", "gpus", "time", "mem", "cpus-per-task", "output", "open-mode", "requeue",
    "partition", "account", "qos", "chdir",
})  # fmt: skip
# The script's line that gives every task's run more options; a task that the memory estimate stops names it.
RUN_OPTIONS_VARIABLE = "RUN_OPTIONS"
RUN_OPTIONS_LINE_INSIST = f'{RUN_OPTIONS_VARIABLE}="--ignore-memory-check"'

# SLURM's default MaxArraySize: task numbers must stay below it unless the site raised it.
DEFAULT_MAX_ARRAY_SIZE = 1001
GPU_OPTIONS = ("gres", "gpus")
# %x job name, %A the array's job id (one per submission), %a the task: two submissions never share a log.
LOG_PATTERN = "%x-%A_%a.log"

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
    qos: str = ""
    gpu_type: str = ""  # e.g. a100: asks for --gres=gpu:a100:1 (or --gpus=a100:1); empty: any GPU
    gpu_option: str = "gres"  # "gres" (--gres=gpu:N, the most common) or "gpus" (--gpus=N, newer sites)
    array_throttle: int = 0  # at most this many tasks at once (--array=1-N%K); 0: as many as SLURM allows
    job_name: str = "gpi-desktop"
    command: str = "gpi-desktop"  # how the cluster starts the program, e.g. "python -m gpi_desktop"
    setup: str = ""  # shell lines run first, e.g. "module load cuda" or "source ~/gpi/bin/activate"

    def validate(self) -> ClusterSettings:
        if not isinstance(self.shards, int) or self.shards < 1:
            raise SettingsError("The number of tasks must be a whole number of at least 1.")
        if not isinstance(self.gpus_per_task, int) or self.gpus_per_task < 0:
            raise SettingsError("GPUs per task must be a whole number (0 runs on the CPU only).")
        if not isinstance(self.array_throttle, int) or self.array_throttle < 0:
            raise SettingsError("Tasks at once must be a whole number (0 lets SLURM run as many as it can).")
        if self.gpu_option not in GPU_OPTIONS:
            raise SettingsError(f"The GPU request must be one of {', '.join(GPU_OPTIONS)}; '{self.gpu_option}' is not.")
        if not isinstance(self.cpus_per_task, int) or self.cpus_per_task < 1:
            raise SettingsError("CPU cores per task must be a whole number of at least 1.")
        if not _TIME.match(self.time.strip()):
            raise SettingsError(
                f"The time limit '{self.time}' is not in SLURM's form: write hours like 08:00:00, "
                "or days like 2-00:00:00."
            )
        if not _MEMORY.match(self.memory.strip()):
            raise SettingsError(
                f"The memory '{self.memory}' is not in SLURM's form: write a number with G or M, like 64G."
            )
        for label, value in (
            ("partition", self.partition),
            ("account", self.account),
            ("QOS", self.qos),
            ("GPU type", self.gpu_type),
            ("job name", self.job_name),
        ):
            if not _NAME.match(value.strip()):
                raise SettingsError(f"The {label} '{value}' may hold only letters, digits, '.', '_', ',' and '-'.")
        for label, value in (("model cache path", self.model_cache), ("program command", self.command)):
            if _UNSAFE_IN_QUOTES.search(value):
                raise SettingsError(f"The {label} may not contain quotes, backslashes or line breaks.")
        if not self.command.strip():
            raise SettingsError(
                "The program command is empty: write how the cluster starts GPI Desktop, usually gpi-desktop."
            )
        return self

    @property
    def gpu_request(self) -> str:
        """The #SBATCH option that asks for the GPUs ("" for a CPU job)."""
        if self.gpus_per_task <= 0:
            return ""
        kind = f"{self.gpu_type.strip()}:" if self.gpu_type.strip() else ""
        if self.gpu_option == "gpus":
            return f"--gpus={kind}{self.gpus_per_task}"
        return f"--gres=gpu:{kind}{self.gpus_per_task}"

    def warnings(self) -> list[str]:
        """What will not stop the folder being written but may stop SLURM taking the job."""
        out = []
        if self.shards >= DEFAULT_MAX_ARRAY_SIZE:
            out.append(
                f"{self.shards} tasks are more than SLURM allows by default (MaxArraySize={DEFAULT_MAX_ARRAY_SIZE}"
                f": task numbers up to {DEFAULT_MAX_ARRAY_SIZE - 1}), and sbatch may refuse the job with "
                '"Invalid job array specification": check your cluster\'s limit with '
                "'scontrol show config | grep MaxArraySize', or use fewer tasks (each takes more prompts)."
            )
        return out


@dataclass(frozen=True)
class JobFolder:
    folder: Path
    script: Path
    job_file: Path
    readme: Path
    prompts: Path
    revision: str | None = None  # the model commit every task uses (None: a model folder, or not pinnable)
    review: JobReview | None = None  # how the prompts go to the tasks, and the warnings


def cluster_spec(spec: JobSpec, cluster: ClusterSettings) -> JobSpec:
    """The job as the cluster runs it: on its GPUs when it asks for any (never silently on the CPU), else the CPU."""
    from gpi_desktop.core.job.job import with_settings

    return with_settings(spec, device="cuda" if cluster.gpus_per_task > 0 else "cpu")


def pinned_spec(spec: JobSpec, token: str | None = None) -> tuple[JobSpec, str | None]:
    """The job with its hub model's revision pinned to one commit, so every task runs the same files.

    Returns (spec, commit); commit is None for a model folder, or when neither
    this computer's cache nor the Hub can say which commit the revision is.
    """
    from gpi_desktop.core.hub.download import pin_revision
    from gpi_desktop.core.job.job import with_settings
    from gpi_desktop.core.model.models import resolve_source

    source = resolve_source(spec.settings.model)
    if source.is_local:
        return spec, None
    commit = pin_revision(source.name, spec.settings.revision, token=token)
    return (with_settings(spec, revision=commit) if commit else spec), commit


def write_job_folder(
    folder: Path | str, spec: JobSpec, cluster: ClusterSettings, *, token: str | None = None, pin: bool = True
) -> JobFolder:
    """Write a job folder for `spec` into an empty (or new) `folder`; checks everything first (`review_job`).

    What the window's "Prepare for a cluster" and `gpi-desktop prepare` both call.
    With `pin` (the default) a hub model's revision is resolved to a commit now
    (from the cache, else the Hub; `token` for a gated model), which may use the network.
    """
    from gpi_desktop.core.job.job import load_prompts
    from gpi_desktop.core.output.export import check_output_folder

    folder = Path(folder)
    cluster.validate()
    spec = cluster_spec(spec, cluster).validate()
    commit = None
    if pin:
        spec, commit = pinned_spec(spec, token)
    table = load_prompts(spec)  # refuses a bad prompts file before anything is written
    review = review_job(len(table), cluster, spec.settings)  # and a task that would get no prompts
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
    readme.write_text(readme_text(cluster, spec, review, folder.name), encoding="utf-8", newline="\n")
    (folder / LOGS_DIR / "about.txt").write_text(
        f"SLURM writes each task's messages here, as {cluster.job_name.strip() or 'gpi-desktop'}-<job id>_<task "
        "number>.log (one file per submission and task).\n",
        encoding="utf-8",
        newline="\n",
    )
    return JobFolder(folder, script, folder / JOB_FILE_NAME, readme, prompts, commit, review)


def sbatch_script(cluster: ClusterSettings) -> str:
    """run.sbatch: its #SBATCH header, self-submission, finding the job folder, then one shard's run."""
    c = cluster.validate()
    lines = [*_script_header(c), *_submit_or_find_the_job(c.shards), *_environment(c), *_run_the_shard(c)]
    return "\n".join(lines)


def _sbatch_options(c: ClusterSettings) -> list[str]:
    throttle = f"%{c.array_throttle}" if c.array_throttle else ""
    return [
        f"--job-name={c.job_name.strip() or 'gpi-desktop'}",
        f"--array=1-{c.shards}{throttle}",
        *([c.gpu_request] if c.gpu_request else []),
        f"--cpus-per-task={c.cpus_per_task}",
        f"--mem={c.memory.strip().upper()}",
        f"--time={c.time.strip()}",
        # Relative to the folder sbatch is started in, which always exists; run directly, the script
        # submits itself with logs/ under the job folder's absolute path instead.
        f"--output={LOG_PATTERN}",
        "--open-mode=append",
        "--requeue",
        *([f"--partition={c.partition.strip()}"] if c.partition.strip() else []),
        *([f"--account={c.account.strip()}"] if c.account.strip() else []),
        *([f"--qos={c.qos.strip()}"] if c.qos.strip() else []),
    ]


def _script_header(c: ClusterSettings) -> list[str]:
    """The comment a user reads first (how to submit, what to adjust) and the #SBATCH lines."""
    n = c.shards
    return [
        "#!/bin/bash",
        f"# GPI Desktop: one job in {n} tasks (a SLURM array job); task I runs shard I/N into {SHARDS_DIR}/I.",
        f"# Submit it from any folder by running this file: path/to/job/{SCRIPT_NAME} (logs go to its {LOGS_DIR}/),",
        f"# or from inside the job folder: sbatch {SCRIPT_NAME}. Options after it go to sbatch, e.g. --array=3.",
        "#",
        "# Adjust the #SBATCH lines below to your cluster before submitting (README.txt, step 3):",
        "#   --partition / --account / --qos  as your cluster's help pages name them (sinfo lists partitions)",
        "#   the GPU line                     --gres=gpu:1, or with a type --gres=gpu:a100:1, or --gpus=1",
        "#                                    (a CPU-only partition needs a folder prepared with 0 GPUs)",
        "#   --mem, --cpus-per-task, --time   within the partition's limits (scontrol show partition NAME)",
        "#   --array=1-N%K                    %K runs at most K tasks at once",
        *(f"# Note: {warning}" for warning in c.warnings()),
        *(f"#SBATCH {option}" for option in _sbatch_options(c)),
        "",
    ]


def _submit_or_find_the_job(n: int) -> list[str]:
    """Started directly, the script submits itself; inside a task, it finds the job folder and its shard."""
    return [
        "set -eu",
        f"N={n}",
        f"SCRIPT={SCRIPT_NAME}",
        "",
        'if [ -z "${SLURM_ARRAY_TASK_ID:-}" ]; then',
        "  # Started directly, not by SLURM: submit this job with its folder's absolute path, so that it works",
        "  # from any folder and the logs land in the job folder.",
        '  HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)',
        f'  if [ ! -f "$HERE/{JOB_FILE_NAME}" ]; then',
        f'    echo "{JOB_FILE_NAME} is not next to $SCRIPT in $HERE: copy the whole job folder to the cluster." >&2',
        "    exit 2",
        "  fi",
        "  if ! command -v sbatch >/dev/null 2>&1; then",
        '    echo "sbatch is not available here: run $SCRIPT on the cluster\'s login machine." >&2',
        "    exit 2",
        "  fi",
        f'  mkdir -p "$HERE/{LOGS_DIR}"',
        f'  exec sbatch --chdir="$HERE" --output="$HERE/{LOGS_DIR}/{LOG_PATTERN}" "$@" "$HERE/$SCRIPT"',
        "fi",
        "",
        "# Inside a task: the job folder is the working folder, the folder sbatch was started in, or the",
        "# folder this script was submitted from (sbatch path/to/job/run.sbatch from elsewhere).",
        'JOB=""',
        'for CANDIDATE in "$PWD" "${SLURM_SUBMIT_DIR:-}"; do',
        f'  if [ -n "$CANDIDATE" ] && [ -f "$CANDIDATE/{JOB_FILE_NAME}" ]; then',
        '    JOB="$CANDIDATE"',
        "    break",
        "  fi",
        "done",
        'if [ -z "$JOB" ] && command -v scontrol >/dev/null 2>&1; then',
        '  SUBMITTED=$(scontrol show job "${SLURM_JOB_ID:-none}" 2>/dev/null | sed -n "s/^ *Command=//p" | head -n 1)',
        '  CANDIDATE=$(dirname "${SUBMITTED:-.}")',
        f'  if [ -f "$CANDIDATE/{JOB_FILE_NAME}" ]; then JOB="$CANDIDATE"; fi',
        "fi",
        'if [ -z "$JOB" ]; then',
        f'  echo "{JOB_FILE_NAME} was not found in $PWD or ${{SLURM_SUBMIT_DIR:-}}: submit with path/to/job/$SCRIPT, '
        'or go into the job folder (cd) and run: sbatch $SCRIPT" >&2',
        "  exit 2",
        "fi",
        'cd "$JOB"',
        'I="$SLURM_ARRAY_TASK_ID"',
        f'OUT="{SHARDS_DIR}/$I"',
        'echo "GPI Desktop: task $I of $N on $(hostname) in $JOB (SLURM job ${SLURM_JOB_ID:-?}, '
        'restart ${SLURM_RESTART_COUNT:-0})"',
    ]


def _environment(c: ClusterSettings) -> list[str]:
    """The model cache, offline hub, GPU check and the user's setup commands."""
    lines = ["export TOKENIZERS_PARALLELISM=false"]
    cache = _shell_path(c.model_cache.strip())
    if cache:
        lines.append(f'export HF_HOME="{cache}"')
    lines += [
        "# Tasks use only the model files downloaded before submitting (README.txt step 2), at the commit",
        f"# {JOB_FILE_NAME} names: no task fetches a newer version, and a fully downloaded gated model needs no token.",
        'export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"',
    ]
    if c.gpus_per_task > 0:
        lines += [
            "# This job asks for a GPU: the program stops (rather than run on the CPU) when none is usable.",
            "if command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi -L || true; fi",
        ]
    if c.setup.strip():
        # Module and activate scripts often read unset variables; -u must not stop them.
        lines += [
            "",
            "# Your setup commands (the files they source are yours, not checked here):",
            "set +u",
            "# shellcheck disable=SC1090,SC1091",
            "{",
            *c.setup.strip().splitlines(),
            "}",
            "set -u",
            "",
        ]
    return lines


def _run_the_shard(c: ClusterSettings) -> list[str]:
    """Skip a finished shard, else run it; say in SLURM's words what a kill (no message of the program's) means.

    The program itself decides, under its hold on the shard's folder, whether it starts, continues an
    interrupted run, or leaves the shard to a copy already running it: a check here would race a second copy.
    """
    return [
        f'GPI_DESKTOP="${{GPI_DESKTOP:-{c.command.strip()}}}"',
        "# Options for every task's run. The memory estimate stops a task that it says will not fit this",
        f"# node's memory; to run anyway (it may then run out of memory), write {RUN_OPTIONS_LINE_INSIST}",
        f'{RUN_OPTIONS_VARIABLE}=""',
        "",
        "# A finished shard is not run again (a requeued or resubmitted task).",
        f'if [ -f "$OUT/{SHARD_MANIFEST}" ] && [ ! -d "$OUT/{RUN_DIR_NAME}" ]; then',
        '  echo "Shard $I of $N is already finished."',
        "  exit 0",
        "fi",
        f"mkdir -p {SHARDS_DIR}",
        "# $GPI_DESKTOP may be several words (python -m gpi_desktop), $RUN_OPTIONS empty or several: they split on",
        "# purpose. --resume continues an interrupted run of this shard, and starts one where there is none.",
        "STATUS=0",
        "# SLURM's SIGTERM (scancel, time limit, requeue) reaches this shell too: without a trap it would end at once",
        "# and leave the program's last words unsaid; with one it waits for the program, which stops cleanly.",
        "trap ':' TERM",
        "# shellcheck disable=SC2086",
        f'$GPI_DESKTOP run --job {JOB_FILE_NAME} --shard "$I/$N" --out "$OUT" --resume ${RUN_OPTIONS_VARIABLE} '
        "|| STATUS=$?",
        'if [ "$STATUS" -eq 137 ]; then',
        '  echo "GPI Desktop: task $I was killed (SIGKILL), so it could not say why: by the out-of-memory killer when it '
        "used more than its #SBATCH --mem (raise it in $JOB/$SCRIPT), by SLURM when it did not stop in time after a "
        "cancel or time limit, or by hand. Its finished prompts are kept: submit it again, and it continues where it "
        'stopped: bash $JOB/$SCRIPT --array=$I" >&2',
        "fi",
        'exit "$STATUS"',
        "",
    ]


def _is_model_folder(model: str) -> bool:
    from gpi_desktop.core.model.models import resolve_source

    try:
        return resolve_source(model).is_local
    except Exception:
        return False


def _shell_path(path: str) -> str:
    """A path for inside double quotes: ~ would not expand there, so it becomes $HOME."""
    if path == "~":
        return "$HOME"
    if path.startswith("~/"):
        return "$HOME/" + path[2:]
    return path


def readme_text(cluster: ClusterSettings, spec: JobSpec, review: JobReview, folder_name: str) -> str:
    """README.txt of a job folder.

    Longer than our functions usually are on purpose: it is one text that the user reads top to bottom, step by
    step, and it stays readable as a text only in one piece, in the order of its steps.
    """
    c = cluster
    model = spec.settings.model
    revision = spec.settings.revision
    cache = c.model_cache.strip()
    gpus = f"{c.gpus_per_task} GPU{'s' if c.gpus_per_task != 1 else ''}" if c.gpus_per_task else "no GPU (CPU only)"
    if _is_model_folder(model):
        model_step = (
            f"The job uses the model folder {model}. The same path must hold the model on\n"
            '   the cluster: copy the model folder there, or change "model" in job.json to\n'
            "   where it is on the cluster (before any task starts; every task must use the same)."
        )
    else:
        home = f"export HF_HOME={cache}\n       " if cache else ""
        pinned = (
            f"   job.json pins the model's version to commit {revision}:\n"
            "   every task runs exactly those files, even if the model changes on the Hub.\n"
            if revision
            else "   The model's version could not be pinned when this folder was written (no\n"
            "   connection to the Hub): the tasks use the version you download now.\n"
        )
        model_step = (
            "Download the model once on the login machine, before you submit: the tasks\n"
            "   run offline and use only what is in the model cache. In one terminal:\n"
            f"       {home}hf auth login      # only for a model that needs permission, e.g. Llama\n"
            f"       hf download {model}{f' --revision {revision}' if revision else ''}\n"
            f"{pinned}"
            f"   The tasks look for the model in {cache or 'the default cache (~/.cache/huggingface)'}"
            f"{' (run.sbatch sets HF_HOME to it)' if cache else ''}; never write your token into this folder."
        )
    unit = textwrap.fill(review.unit_sentence, 80)
    warnings = "".join(f"\nWarning: {w}\n" for w in c.warnings())
    gpu_line = c.gpu_request or "(none: a CPU job)"
    return f"""GPI Desktop job for a SLURM cluster
===================================

This folder holds one GPI job: {review.rows} prompts, the model {model}, and its settings
(job.json). The work is split into {c.shards} tasks; each task runs on its own
machine with {gpus}, at most {c.time} of time (#SBATCH --time) and {c.memory.upper()} of memory.
{unit}
{warnings}
1. Copy this whole folder to the cluster, for example:
       scp -r {folder_name} you@cluster.example.edu:
   GPI Desktop must be installed there, so that the command "{c.command}" works
   (ask your cluster's help desk if it is not; see also the setup lines in {SCRIPT_NAME}).

2. {model_step}

3. Check the #SBATCH lines at the top of {SCRIPT_NAME} against your cluster's
   limits (its help pages, sinfo, scontrol show partition NAME), and edit them:
   - --partition, --account, --qos: many clusters require one or more of these.
   - the GPU line, now {gpu_line}: some clusters want a GPU type
     (--gres=gpu:a100:1) or --gpus=1 instead. A job that asks for a GPU stops
     with a plain message if its machine has none usable: it never silently
     runs on the CPU. For a CPU-only partition, prepare the folder with 0 GPUs.
   - --mem, --cpus-per-task, --time: within what the partition allows (a job
     asking for more is refused, or waits forever with "PartitionConfig").
   - --array=1-{c.shards}: add %K (e.g. --array=1-{c.shards}%10) to run at most K tasks at once.

4. Submit the job, from any folder, by running the script itself:
       bash {folder_name}/{SCRIPT_NAME}
   It calls sbatch with the folder's full path, so each task's messages go to
   {folder_name}/{LOGS_DIR}/<job name>-<job id>_<task number>.log. (From inside the folder,
   "sbatch {SCRIPT_NAME}" works too; its logs are then in the folder itself.)

5. Check on it:
       squeue --me
   Each task writes its results to {folder_name}/shards/<task number>, and a stopped
   task keeps its finished prompts. SLURM itself restarts a task only after a
   preemption, a machine failure or "scontrol requeue"; such a task waits about
   2 minutes as pending (squeue shows the reason BeginTime), then continues where
   it stopped. After "scancel" or its time limit (squeue: CANCELLED, TIMEOUT) SLURM
   never restarts it: submit that task again, for example task 3, with more time
   if it ran out:
       bash {folder_name}/{SCRIPT_NAME} --array=3 --time={longer_time(c.time)}
   A finished task is never run twice; a task whose shard another copy is still
   running says "already running elsewhere, nothing to do" and exits.

   Who may read the results and logs: the tasks create files with the umask of
   the shell you submit from (umask 022: everyone may read them; 077: only you).
   Type "umask 022" before step 4 if colleagues must read them.

6. Merge the results into one export folder, when every task has finished,
   from the same folder as step 4:
   - on the cluster:   {c.command} merge {folder_name} --out {folder_name}-export
   - or copy this folder (at least its shards folder) back to your computer and, in
     the GPI Desktop window, choose Cluster > "Merge cluster results…" and pick it.
   The merge checks that every prompt is there exactly once and that all tasks ran
   the same job (same model version, settings and prompts file) on the same kind of
   device and precision, and tells you which task is missing or different.
   The export folder is the same as a run on one machine writes: hidden/,
   generated_texts.pkl and .csv, hidden_states.npy and manifest.json, ready for gpi_pack.

About "the same": the files, their row numbers and their order are those of one
machine. When the batch size is a fixed number (or prompts run one at a time),
every prompt runs in the same batch as on one machine, so on the same kind of
GPU the texts and numbers are the same too. With the automatic batch size each
task picks its own batches, so the hidden-state numbers agree with a single run
only up to rounding in the last digits (as any two batched runs do), and in rare
near-ties a generated word could differ. Choose a fixed batch size when results
must be identical bit for bit.
"""


def longer_time(limit: str) -> str:
    """An example of a longer --time than `limit` (twice as long), in SLURM's D-HH:MM:SS form."""
    seconds = time_limit_seconds(limit) * 2
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    clock = f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    return f"{days}-{clock}" if days else clock


def time_limit_seconds(limit: str) -> int:
    """SLURM's --time forms (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S) in seconds."""
    text = limit.strip()
    days = 0
    if "-" in text:
        day_text, text = text.split("-", 1)
        days = int(day_text)
        parts = [int(p) for p in text.split(":")] + [0] * (3 - len(text.split(":")))  # D-H, D-H:M, D-H:M:S
        hours, minutes, seconds = parts[:3]
    else:
        parts = [int(p) for p in text.split(":")]
        hours, minutes, seconds = {1: (0, parts[0], 0), 2: (0, *parts), 3: tuple(parts)}[len(parts)]
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds
