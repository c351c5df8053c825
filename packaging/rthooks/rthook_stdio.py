# PyInstaller runtime hook, run before the entry script.
#
# A windowed build (Windows without console, a macOS .app started from the
# Dock, a Linux menu entry with closed streams) starts with sys.stdout and
# sys.stderr set to None. transformers' logging handler, tqdm progress bars
# and warnings.showwarning then raise AttributeError on the first write, which
# kills the app. Point the missing streams at the null device instead; the
# app's own log file is where diagnostics go.
import os
import sys


def _null_stream(mode):
    return open(os.devnull, mode, encoding="utf-8", errors="replace")


if sys.stdout is None:
    sys.stdout = _null_stream("w")
if sys.stderr is None:
    sys.stderr = _null_stream("w")
if sys.stdin is None:
    sys.stdin = _null_stream("r")
