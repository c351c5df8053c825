"""The project's own exception types.

A `GpiError` is a problem the user can act on: its message is one plain
sentence that says what to do, shown as it is (no traceback). Anything else
that escapes is our bug and goes to the log with its traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_CANCELLED = 130


class GpiError(Exception):
    """A user-actionable problem; str(error) is the plain sentence to show."""

    exit_code = EXIT_FAILURE


class InputError(GpiError):
    """Bad input or settings: a missing file, an unknown column, a bad option."""

    exit_code = EXIT_BAD_INPUT


class PromptFileError(InputError):
    """The prompts file cannot be read or has no usable text column."""


class SettingsError(InputError):
    """A setting is out of range or would break the gpi_pack contract."""


class MemoryFitError(SettingsError):
    """The memory estimate says the run will not fit; the user may insist (--ignore-memory-check, Run anyway)."""

    def __init__(self, message: str, *, verdict: str = "") -> None:
        super().__init__(message)
        self.verdict = verdict or message  # the estimate and what to change, without the command-line hint


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
