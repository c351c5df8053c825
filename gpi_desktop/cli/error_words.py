"""How the command line words what to do about an error: its flags, where the window has buttons."""

from __future__ import annotations

from gpi_desktop.core.vocabulary.errors import GpiError, Remedy

REMEDY_WORDS = {
    Remedy.RESUME_OR_START_OVER: "continue it with --resume or start over with --overwrite",
    Remedy.RESUME_OR_ANOTHER_FOLDER: "continue it with --resume, or start over in another folder",
    Remedy.START_OVER: "start over with --overwrite",
    Remedy.FREE_SPACE_AND_RESUME: "free some space, then run again with --resume; finished prompts are kept",
    Remedy.MERGE_MIXED_DEVICES: (
        "run that shard again on the same kind of machine, or merge anyway with "
        "--allow-mixed-devices; the manifest then records each shard's device"
    ),
    Remedy.TOKEN_FOR_THIS_SESSION: (
        "set the HF_TOKEN environment variable, log in with 'hf auth login', or enter the "
        "token in the window for this session only"
    ),
    Remedy.RUN_ANYWAY: "to run anyway, give --ignore-memory-check",
    Remedy.PICK_COLUMN: "pick the text column with --column",
    Remedy.PICK_DUPLICATE_COLUMN: "pick the one that holds the prompts with --column, or rename one in the file",
    Remedy.EMPTY_FOLDER_OR_REPLACE: "choose an empty folder, or replace the earlier export with --overwrite",
    Remedy.PICK_TREATED: "say which one means treated with --treated VALUE",
    Remedy.GIVE_DATA_FILE: "give the data file with --data FILE (CSV, TSV or Excel, one row per vector)",
    Remedy.MATCH_BY_ID: "match the rows by an ID column with --id COLUMN",
    Remedy.EMPTY_REPORT_FOLDER_OR_REPLACE: "choose an empty folder for --out, or replace the earlier report with "
    "--overwrite",
    Remedy.WAIT_FOR_OTHER_RUN: "wait for it to finish, or stop it first (Ctrl-C where it runs)",
    Remedy.SAFETENSORS_OR_ALLOW_PICKLE: (
        "use a copy with .safetensors weights, or allow them (--allow-pickle-weights) "
        "only if you trust where the model came from"
    ),
}


def cli_sentence(error: GpiError) -> str:
    """The one plain sentence the command line prints for `error`."""
    return error.sentence(REMEDY_WORDS)
