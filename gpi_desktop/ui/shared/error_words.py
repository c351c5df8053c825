"""What the window says when something fails: one place, one wording.

A `GpiError` is the user's to act on and says so in one plain sentence: what
happened, then what to do, with the window's own words for a remedy that the
command line words with its flags. Anything else is our bug: the window names
what could not be done and says that the details (the traceback) are in the log file.
"""

from __future__ import annotations

from gpi_desktop.core.vocabulary.errors import GpiError, Remedy

UNEXPECTED = "{failed}: something unexpected went wrong ({kind}); the details are in the log file."

REMEDY_WORDS = {
    Remedy.RESUME_OR_START_OVER: "press Run, then choose to continue it or to start again from the beginning",
    Remedy.RESUME_OR_ANOTHER_FOLDER: "press Run and choose \u201cContinue where it stopped\u201d",
    Remedy.START_OVER: "press Run and choose \u201cStart again from the beginning\u201d",
    Remedy.FREE_SPACE_AND_RESUME: "free some space, then press Run to continue; finished prompts are kept",
    Remedy.MERGE_MIXED_DEVICES: (
        "run that shard again on the same kind of machine, or tick \u201cMerge shards that "
        "ran on different devices or precisions\u201d; the manifest then records each "
        "shard's device"
    ),
    Remedy.TOKEN_FOR_THIS_SESSION: (
        "enter the token here to use it for this session only, set the HF_TOKEN "
        "environment variable, or log in with 'hf auth login'"
    ),
    Remedy.RUN_ANYWAY: "to run anyway, press Run and choose \u201cRun anyway\u201d",
    Remedy.PICK_COLUMN: "pick the text column in step 3",
    Remedy.PICK_DUPLICATE_COLUMN: "pick the one that holds the prompts under Text column in step 3, or rename one "
    "in the file",
    Remedy.EMPTY_FOLDER_OR_REPLACE: "choose an empty folder, or export again and choose to replace the earlier export",
    Remedy.PICK_TREATED: "choose which value means treated under Treated value",
    Remedy.GIVE_DATA_FILE: "choose the data file (CSV, TSV or Excel, one row per vector) under Data",
    Remedy.MATCH_BY_ID: "choose the ID column that matches the rows under ID column",
    Remedy.EMPTY_REPORT_FOLDER_OR_REPLACE: "choose an empty folder for the report, or press Estimate again and choose "
    "to replace the earlier report",
    Remedy.WAIT_FOR_OTHER_RUN: "wait for it to finish, or stop it in the window or terminal where it runs",
    # The window has no setting for it: a trust decision about one model, made on the command line for each run.
    Remedy.SAFETENSORS_OR_ALLOW_PICKLE: (
        "use a copy of the model with .safetensors weights; the window never loads pickle weights"
    ),
}


def window_sentence(error: GpiError) -> str:
    """The sentence the window shows for a user's error."""
    return error.sentence(REMEDY_WORDS)


def failure_sentence(error: BaseException, failed: str) -> str:
    """The sentence for `error`; `failed` says what could not be done ("The export could not be written")."""
    if isinstance(error, GpiError):
        return window_sentence(error)
    return UNEXPECTED.format(failed=failed, kind=type(error).__name__)
