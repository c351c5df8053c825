"""The flags that say which job to run, shared by `run` and `prepare`: the prompts, the model, every setting, --out."""

from __future__ import annotations

import argparse
from pathlib import Path

from gpi_desktop.core.vocabulary.errors import OutputFolderError
from gpi_desktop.core.vocabulary.settings import DEVICES, DTYPES, POOLINGS, TEMPLATE_STYLES


def add_job_arguments(
    run: argparse.ArgumentParser, *, out_help: str = "folder for the export (and the run's journal while it runs)"
) -> None:
    """The flags that say what to run (the ones a job file holds instead, run.JOB_DEFINED_FLAGS), and --out."""
    run.add_argument(
        "--model",
        required=False,
        default=None,
        help="Hugging Face model id or model folder (default meta-llama/Llama-3.1-8B-Instruct)",
    )
    run.add_argument("--prompts", required=False, help="CSV, TSV or XLSX file with one prompt per row")
    run.add_argument("--out", required=False, help=out_help)
    run.add_argument("--column", help="the column holding the prompts (default: the only or obvious text column)")
    run.add_argument("--sheet", help="the sheet of an Excel workbook holding the prompts (default: the first)")
    run.add_argument("--task", default="create", help="create, repeat, or your own instruction text")
    run.add_argument("--pooling", default="last", choices=list(POOLINGS))
    run.add_argument("--max-new-tokens", type=int, default=1000)
    run.add_argument("--prefix", default="hidden_")
    run.add_argument("--save-name", default="generated_texts")
    run.add_argument("--batch-size", default="auto", help="a number, or auto")
    run.add_argument("--dtype", default="auto", choices=list(DTYPES))
    run.add_argument(
        "--device",
        default="auto",
        choices=list(DEVICES),
        help="auto: an NVIDIA GPU (cuda, also AMD through ROCm), else the Apple GPU (mps), else the CPU",
    )
    run.add_argument("--template", default="gpi_pack", choices=list(TEMPLATE_STYLES))
    run.add_argument(
        "--quantization",
        choices=["none", "8bit", "4bit"],
        default="none",
        help="load the model in 8-bit or 4-bit (NVIDIA GPU and gpi-desktop[quantization]); changes the numbers",
    )
    run.add_argument(
        "--one-at-a-time",
        action="store_true",
        help="gpi_pack's exact procedure: transformers' generate() on one prompt at a time (slow)",
    )
    run.add_argument("--revision", help="a hub revision (branch, tag or commit) of the model")
    run.add_argument(
        "--allow-pickle-weights",
        action="store_true",
        help="accept a model that has only pickle weights (.bin), which can run code: only if you trust it",
    )
    run.add_argument(
        "--template-date",
        metavar="YYYY-MM-DD",
        help="the date the chat template sees (default: today, fixed for the whole job, resume included); "
        "give an earlier study's date to repeat it exactly",
    )
    run.add_argument(
        "--template-option",
        action="append",
        metavar="KEY=VALUE",
        default=[],
        help="extra keyword for the chat template (value parsed as JSON where it parses); repeatable",
    )
    run.add_argument(
        "--generation-option",
        action="append",
        metavar="KEY=VALUE",
        default=[],
        help="extra keyword for generation, e.g. repetition_penalty=1.1; repeatable",
    )


def spec_from_args(args):
    from gpi_desktop.core.job.job import JobSpec
    from gpi_desktop.core.vocabulary.options import parse_options
    from gpi_desktop.core.vocabulary.settings import DEFAULT_MODEL, ExportSettings, RunSettings

    if not args.prompts:
        raise OutputFolderError("Give the prompts file with --prompts FILE (a CSV, TSV or XLSX file).")
    if not args.out:
        raise OutputFolderError("Give the output folder with --out FOLDER.")
    settings = RunSettings(
        model=DEFAULT_MODEL if args.model is None else args.model,
        task=args.task,
        pooling=args.pooling,
        max_new_tokens=args.max_new_tokens,
        dtype=args.dtype,
        device=args.device,
        template=args.template,
        batch_size=args.batch_size,
        strategy="one-at-a-time" if args.one_at_a_time else "batched",
        revision=args.revision,
        quantization=None if args.quantization == "none" else args.quantization,
        allow_pickle_weights=args.allow_pickle_weights,
        template_options=parse_options(args.template_option),
        generation_options=parse_options(args.generation_option),
        template_date=args.template_date or None,
    )
    return JobSpec(
        Path(args.prompts), args.column, settings, ExportSettings(args.prefix, args.save_name), args.sheet
    ).validate()
