"""Which device a run uses (an NVIDIA/AMD GPU, the Apple GPU, or the CPU), its precision, and its name in words.

torch is imported inside the functions: `enable_mps_fallback` must run
before torch is imported at all, and the window imports this module
without ever touching torch itself.
"""

from __future__ import annotations

import functools
import logging
import os
import platform
import subprocess
import sys
from collections.abc import MutableMapping
from typing import TYPE_CHECKING

from gpi_desktop.core.model import host
from gpi_desktop.core.vocabulary.errors import DeviceError, SettingsError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# PyTorch reads it once, when torch is loaded: an operation the Apple GPU lacks then runs on the CPU
# (slower, same numbers) instead of stopping the run.
MPS_FALLBACK_VARIABLE = "PYTORCH_ENABLE_MPS_FALLBACK"


def enable_mps_fallback(environ: MutableMapping[str, str] | None = None) -> None:
    """Let operations the Apple GPU lacks run on the CPU; a user who set the variable keeps their choice.

    Called at program start, before anything imports torch (the CLI's main and
    the frozen app's entry script, which imports torch first).
    """
    environ = os.environ if environ is None else environ
    environ.setdefault(MPS_FALLBACK_VARIABLE, "1")


def mps_available() -> bool:
    """This torch was built with MPS and the Mac has a Metal GPU (macOS 12.3+)."""
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def is_apple_silicon() -> bool:
    return sys.platform == "darwin" and platform.machine() == "arm64"


def auto_uses_mps() -> bool:
    """'auto' means the Apple GPU on Apple silicon only: an Intel Mac's Metal GPU gets the CPU path."""
    return is_apple_silicon() and mps_available()


def pick_device(device: str) -> str:
    """'cuda', 'mps' or 'cpu' for a device setting; refuses in plain words a device this machine lacks.

    ROCm builds of torch drive AMD GPUs through the same torch.cuda API, so
    'cuda' covers them.
    """
    import torch

    if device == "cpu":
        return "cpu"
    has_cuda = torch.cuda.is_available()
    if device == "cuda":
        if not has_cuda:
            raise SettingsError("No NVIDIA GPU is usable on this machine; choose the device 'auto' or 'cpu'.")
        return "cuda"
    if device == "mps":
        if not mps_available():
            raise SettingsError(
                "No Apple GPU (MPS) is usable on this machine; it needs a Mac with Apple silicon "
                "and macOS 12.3 or newer. Choose the device 'auto' or 'cpu'."
            )
        return "mps"
    if has_cuda:
        return "cuda"
    return "mps" if auto_uses_mps() else "cpu"


def _bfloat16_works(device: str) -> bool:
    """Whether a small bfloat16 matrix product runs on `device` and gives the right number."""
    import torch

    try:
        x = torch.ones(4, 4, dtype=torch.bfloat16, device=device)
        return float((x @ x).sum().item()) == 64.0
    except (RuntimeError, TypeError, NotImplementedError) as exc:
        log.info("bfloat16 is not usable on %s (%s)", device, exc)
        return False


@functools.cache
def mps_supports_bfloat16() -> bool:
    """Asked of the Apple GPU by an operation, not guessed from versions (it needs macOS 14 and a recent torch)."""
    return _bfloat16_works("mps")


def pick_dtype(dtype: str, device: str) -> torch.dtype:
    """The torch dtype for a precision setting: 'auto' is bfloat16 where the GPU supports it, else float16; float32 on the CPU."""
    import torch

    if dtype == "auto":
        if device == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device == "mps":
            return torch.bfloat16 if mps_supports_bfloat16() else torch.float16
        return torch.float32
    if dtype == "bfloat16" and device == "mps" and not mps_supports_bfloat16():
        # Asked for by name: refused here in words, not by a TypeError in the middle of loading.
        raise SettingsError(
            "The GPU of this Mac cannot compute in bfloat16 (it needs macOS 14 or newer); "
            "choose float16 or automatic precision."
        )
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[dtype]


# --- the device in words -----------------------------------------------------------------------------


def _sysctl(name: str) -> str | None:
    try:
        out = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def apple_chip_name() -> str | None:
    """'Apple M2 Pro', as the Mac's 'About This Mac' says; None where the system does not say."""
    return _sysctl("machdep.cpu.brand_string")


def marketed_gigabytes(n_bytes: int) -> str:
    """'32 GB' for 32 GiB: Apple sells and shows a Mac's memory in binary gigabytes, rounded."""
    return f"{round(n_bytes / 2**30)} GB"


def mps_device_name() -> str:
    """'Apple M2 Pro GPU, 32 GB shared memory': the Apple GPU as its owner knows it."""

    chip = apple_chip_name()
    name = f"{chip} GPU" if chip and chip.startswith("Apple") else "Apple GPU"
    _free, total = host.machine_ram()
    return f"{name}, {marketed_gigabytes(total)} shared memory" if total else name


def device_description(device: str) -> str:
    """Where a run ran, for the manifest and the run summary: 'cuda (NVIDIA A100 x1)', 'mps (Apple M2 Pro GPU, ...)'."""
    import torch

    if device == "cuda":
        names = {torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())}
        return f"cuda ({', '.join(sorted(names))} x{torch.cuda.device_count()})"
    if device == "mps":
        return f"mps ({mps_device_name()})"
    return "cpu"


# --- what the Apple GPU cannot do --------------------------------------------------------------------


def unsupported_operation(exc: BaseException) -> DeviceError | None:
    """The plain sentence for an operation the Apple GPU does not implement; None for any other failure.

    Only reached when the CPU fallback is off (a user who set
    PYTORCH_ENABLE_MPS_FALLBACK=0): with it on, PyTorch runs such an
    operation on the CPU instead.
    """
    text = str(exc)
    if not isinstance(exc, NotImplementedError) or "MPS" not in text:
        return None
    op = text.split("'")[1] if text.count("'") >= 2 else "one of its operations"
    return DeviceError(
        f"This model needs an operation the Apple GPU (MPS) does not have ({op}); choose the CPU as the device, "
        f"or start gpi-desktop without {MPS_FALLBACK_VARIABLE}=0 so that such operations run on the CPU."
    )
