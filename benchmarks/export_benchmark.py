"""Time write_export with many rows, and how long it waits for the disk before the manifest.

    python benchmarks/export_benchmark.py ROWS WIDTH FOLDER MODES

MODES, comma-separated and run in turn in one process (the machine's load
changes less between them): "pool" is the export as it is (each file fsynced
by a few threads while the next are written); "sync" replaces that with one
os.sync() (the export before issue 16: every disk of the machine); "syncfs"
with Linux's syncfs() of the export's filesystem. FOLDER is deleted first.
"""

import ctypes
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from gpi_desktop.core.files import fileio
from gpi_desktop.core.files.prompts import PromptTable
from gpi_desktop.core.output import export as ex
from gpi_desktop.core.vocabulary.results import PromptResult
from gpi_desktop.core.vocabulary.settings import ExportSettings

libc = ctypes.CDLL(None, use_errno=True)


def syncfs(folder):
    fd = os.open(folder, os.O_RDONLY)
    libc.syncfs(fd)
    os.close(fd)


timing = {}


def timed(fn):
    def run(self):
        t = time.perf_counter()
        fn(self)
        timing["durable"] = time.perf_counter() - t

    return run


def main() -> None:
    n = int(sys.argv[1])
    width = int(sys.argv[2])
    base = Path(sys.argv[3])
    modes = sys.argv[4].split(",")
    vecs = np.random.default_rng(0).standard_normal((n, width)).astype(np.float32)
    results = [
        PromptResult(row=k, text=f"text {k}", vector=vecs[k], n_tokens=3, stop_reason="end of text") for k in range(n)
    ]
    table = PromptTable(
        path=Path("p.csv"),
        frame=pd.DataFrame({"text": [f"prompt {k}" for k in range(n)]}),
        column="text",
        sha256="0",
        encoding="utf-8",
    )
    real_add, real_durable = fileio.BackgroundFsync.add, ex._Writer.make_durable
    for mode in modes:
        if mode == "pool":
            fileio.BackgroundFsync.add = real_add
            ex._Writer.make_durable = timed(real_durable)
        else:
            fileio.BackgroundFsync.add = lambda self, path: None
            ex._Writer.make_durable = timed(
                lambda self: (
                    os.sync() if mode == "sync" else syncfs(self.folder),
                    fileio.fsync_folder(*self.dirs_to_sync),
                )
            )
        shutil.rmtree(base, ignore_errors=True)
        os.sync()
        l0 = os.getloadavg()[0]
        t = time.perf_counter()
        ex.write_export(base, results, table, ExportSettings(), {"model": "x"})
        total = time.perf_counter() - t
        print(
            f"{mode:6s} {n} rows: write_export {total:6.2f} s, durability wait {timing['durable']:5.2f} s; load {l0:.1f}->{os.getloadavg()[0]:.1f}",
            flush=True,
        )
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
