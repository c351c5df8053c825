"""The project's own exception types.

A `GpiError` is a problem the user can act on: its message is one plain
sentence that says what to do, shown as it is (no traceback). Anything else
that escapes is our bug and goes to the log with its traceback.

Where what to do is done differently in each front end (a flag on the command
line, a button in the window), the error says what happened and carries the
`Remedy`; each front end words the remedy its own way (`sentence(words)`), and
`str(error)` uses the words both share.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_CANCELLED = 130


class Remedy(Enum):
    """What the user can do about an error that each front end does its own way; the value is the shared wording."""

    RESUME_OR_START_OVER = "continue it, or start it over"
    RESUME_OR_ANOTHER_FOLDER = "continue it, or start over in another folder"
    START_OVER = "start it over"
    FREE_SPACE_AND_RESUME = "free some space, then continue the run; finished prompts are kept"
    MERGE_MIXED_DEVICES = (
        "run that shard again on the same kind of machine, or merge the shards anyway; the manifest "
        "then records each shard's device"
    )
    TOKEN_FOR_THIS_SESSION = (
        "set the HF_TOKEN environment variable, log in with 'hf auth login', or give the token for this session only"
    )
    RUN_ANYWAY = "run anyway, if you know it fits"
    PICK_COLUMN = "pick the text column"
    PICK_DUPLICATE_COLUMN = "pick the one that holds the prompts, or rename one in the file"
    EMPTY_FOLDER_OR_REPLACE = "choose an empty folder, or allow replacing an earlier export"
    PICK_TREATED = "say which of the two values means treated"
    GIVE_DATA_FILE = "give the data file (CSV, TSV or Excel) with one row per vector"
    MATCH_BY_ID = "match the rows by an ID column"
    EMPTY_REPORT_FOLDER_OR_REPLACE = "choose an empty folder for the report, or allow replacing an earlier report"
    WAIT_FOR_OTHER_RUN = "wait for it to finish, or stop it first"
    SAFETENSORS_OR_ALLOW_PICKLE = (
        "use a copy with .safetensors weights, or allow pickle weights only if you trust where the model came from"
    )


RemedyWords = Mapping[Remedy, str]  # a front end's own wording of each remedy


class GpiError(Exception):
    """A user-actionable problem; str(error) is the plain sentence to show.

    `remedy`: what to do, when each front end does it its own way; the message then says only what happened.
    """

    exit_code = EXIT_FAILURE

    def __init__(self, message: str = "", *, remedy: Remedy | None = None) -> None:
        super().__init__(message)
        self.what = str(message)
        self.remedy = remedy

    def sentence(self, words: RemedyWords | None = None) -> str:
        """What happened, then the remedy in `words` (a front end's own; the shared wording by default)."""
        if self.remedy is None:
            return self.what
        clause = words[self.remedy] if words is not None else self.remedy.value
        if self.what.endswith((".", "!", "?")):  # a whole sentence already: the remedy is the next one
            return f"{self.what} {clause[:1].upper()}{clause[1:]}."
        return f"{self.what}: {clause}."

    def __str__(self) -> str:
        return self.sentence()


class InputError(GpiError):
    """Bad input or settings: a missing file, an unknown column, a bad option."""

    exit_code = EXIT_BAD_INPUT


class PromptFileError(InputError):
    """The prompts file cannot be read or has no usable text column."""


class SettingsError(InputError):
    """A setting is out of range or would break the gpi_pack contract."""


class MemoryFitError(SettingsError):
    """The memory estimate says the run will not fit; the user may insist (Remedy.RUN_ANYWAY)."""

    def __init__(self, message: str, *, verdict: str = "", remedy: Remedy | None = None) -> None:
        super().__init__(message, remedy=remedy)
        self.verdict = verdict or message  # the estimate and what to change, without how to insist


class EstimateInputError(InputError):
    """The data or the vectors cannot be used for an estimate (a column, a value, the rows' order or number)."""


class OutputFolderError(InputError):
    """The export/output folder cannot be used (not writable, not empty, ...)."""


class ModelError(InputError):
    """The model cannot be found or loaded (not a model folder, unsupported, ...)."""


class DeviceError(InputError):
    """The chosen device cannot run this model (an operation the Apple GPU lacks, ...); another device can."""


class AccessError(ModelError):
    """The hub refused access: no token, licence not accepted, token lacks rights."""

    def __init__(self, message: str, *, kind: str = "", url: str = "") -> None:
        super().__init__(message)
        self.kind = kind  # "no-token" | "invalid-token" | "gated" | "forbidden" | "not-found" | "offline"
        self.url = url


class ResumeError(InputError):
    """--resume was asked for a folder that holds another job, or nothing to resume."""


class NoResultsFolderError(InputError):
    """A folder given to merge holds no shard results: a job folder whose tasks have not written any, or another folder."""

    def __init__(self, message: str, *, folder: str = "", job_folder: bool = False) -> None:
        super().__init__(message)
        self.folder = folder
        self.job_folder = job_folder


class RunBusyError(ResumeError):
    """Another process holds the run's journal right now (a second submission of the same cluster task)."""


class KeyringUnavailableError(GpiError):
    """This machine has no OS keyring backend."""

    exit_code = EXIT_BAD_INPUT


class DisplayError(GpiError):
    """The window cannot open on this computer (a system library Qt needs is missing)."""

    exit_code = EXIT_BAD_INPUT


class DiskFullError(GpiError):
    """Writing failed because the disk is full; finished work is kept. The user's to fix: free space."""

    exit_code = EXIT_BAD_INPUT


class Cancelled(Exception):
    """The user asked to stop. Not an error: finished work is kept."""

    exit_code = EXIT_CANCELLED
