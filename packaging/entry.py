"""Entry point of the frozen app (PyInstaller runs this file, not gpi_desktop.cli:main directly)."""

import multiprocessing
import sys

# On Windows, Qt's DLLs loaded first make torch's c10/libiomp DLLs fail to
# initialise ("DLL initialization routine failed"); importing torch before
# anything touches PySide6 avoids it. Done on every OS so that the order the
# Linux CI verifies is the order Windows gets. PyTorch reads its MPS fallback
# setting only when it is loaded, so that comes first (devices imports neither
# torch nor Qt).
from gpi_desktop.core.model.devices import enable_mps_fallback

enable_mps_fallback()
import torch  # noqa: E402,F401

from gpi_desktop.cli import main  # noqa: E402 - after the MPS fallback is set, as torch is

if __name__ == "__main__":
    # A frozen program that spawns a process (tokenizers, torch, pandas may)
    # would otherwise start a second copy of the whole app.
    multiprocessing.freeze_support()
    sys.exit(main())
