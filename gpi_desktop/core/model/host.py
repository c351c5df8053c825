"""This machine as a run sees it: its RAM, the memory and CPUs a cgroup or SLURM allocation gives this process.

Below `devices` (which names an Apple GPU by the machine's RAM) and `memory` (which plans
with what is free), so that neither has to import the other for it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gpi_desktop.core.vocabulary.formatting import human_bytes


@dataclass(frozen=True)
class DeviceMemory:
    name: str
    free_bytes: int
    total_bytes: int
    kind: str = "cpu"  # "cuda" | "mps" | "cpu"
    index: int | None = None
    limited_by: str = ""  # MemoryLimit.source where an allocation is smaller than the machine ("SLURM --mem")

    def describe(self) -> str:
        return f"{self.name}: {human_bytes(self.free_bytes)} free of {human_bytes(self.total_bytes)}"


SLURM_LIMIT = "SLURM --mem"
# A cgroup v1 "no limit" is the largest page-aligned 64-bit number; anything this large means unlimited.
_NO_LIMIT = 1 << 60


@dataclass(frozen=True)
class MemoryLimit:
    """What this process may use at most, when something smaller than the machine says so (a SLURM --mem)."""

    limit_bytes: int
    used_bytes: int  # already in use within that limit (the cgroup's usage, or this process when unknown)
    source: str  # in words, for the verdict

    @property
    def free_bytes(self) -> int:
        return max(0, self.limit_bytes - self.used_bytes)


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None  # cgroup v2 writes "max" for no limit


def _own_cgroups(proc: Path) -> dict[str, str]:
    """/proc/self/cgroup as {controller: path}; cgroup v2's single hierarchy is under the key ""."""
    out: dict[str, str] = {}
    try:
        lines = (proc / "self" / "cgroup").read_text(encoding="utf-8").splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(",") if parts[1] else [""]:
                out[controller] = parts[2]
    return out


def _levels(root: Path, path: str) -> list[Path]:
    """The cgroup's folder and its ancestors up to the mount; a limit anywhere above applies too.

    Inside a container the mount is the process's own cgroup while /proc/self/cgroup
    names the host's path, so folders that do not exist are skipped (the mount itself is kept).
    """
    parts = [p for p in path.strip("/").split("/") if p]
    levels = [root.joinpath(*parts[:n]) for n in range(len(parts), 0, -1)]
    return [level for level in levels if level.is_dir()] + [root]


def _cgroup_limit(proc: Path, cgroup_root: Path) -> MemoryLimit | None:
    groups = _own_cgroups(proc)
    found: list[tuple[int, int]] = []
    if "" in groups and (cgroup_root / "cgroup.controllers").exists():  # v2
        for level in _levels(cgroup_root, groups[""]):
            limit = _read_int(level / "memory.max")
            if limit is not None:
                found.append((limit, _read_int(level / "memory.current") or 0))
    if "memory" in groups:  # v1 (or the v1 part of a hybrid setup)
        root = cgroup_root / "memory"
        for level in _levels(root, groups["memory"]):
            limit = _read_int(level / "memory.limit_in_bytes")
            if limit is not None and limit < _NO_LIMIT:
                found.append((limit, _read_int(level / "memory.usage_in_bytes") or 0))
    if not found:
        return None
    limit, used = min(found)
    return MemoryLimit(limit, used, "cgroup limit")


def _process_rss(proc: Path) -> int:
    try:
        return int((proc / "self" / "statm").read_text(encoding="ascii").split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return 0


def _slurm_limit(environ: Mapping[str, str], proc: Path) -> MemoryLimit | None:
    """SLURM's --mem (SLURM_MEM_PER_NODE) or --mem-per-cpu (SLURM_MEM_PER_CPU x CPUs), both in megabytes."""

    def number(name: str) -> int | None:
        value = environ.get(name, "").strip()
        return int(value) if value.isdigit() else None

    per_node, per_cpu = number("SLURM_MEM_PER_NODE"), number("SLURM_MEM_PER_CPU")
    if per_node:
        limit = per_node << 20
    elif per_cpu:
        limit = (per_cpu << 20) * (number("SLURM_CPUS_PER_TASK") or number("SLURM_CPUS_ON_NODE") or 1)
    else:
        return None
    return MemoryLimit(limit, _process_rss(proc), SLURM_LIMIT)


def allocation_limit(
    environ: Mapping[str, str] | None = None, proc: Path | str = "/proc", cgroup_root: Path | str = "/sys/fs/cgroup"
) -> MemoryLimit | None:
    """The tighter of the cgroup memory limit (v1 or v2) and the SLURM allocation; None when neither limits us."""
    env = os.environ if environ is None else environ
    limits = [
        limit
        for limit in (_cgroup_limit(Path(proc), Path(cgroup_root)), _slurm_limit(env, Path(proc)))
        if limit is not None
    ]
    return min(limits, key=lambda limit: limit.free_bytes) if limits else None


def machine_ram() -> tuple[int, int]:
    """(available, total) bytes of the machine's RAM; (0, 0) when the system does not say."""
    free = total = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f if line.count(":") == 1}
        free, total = info.get("MemAvailable", info.get("MemFree")), info.get("MemTotal")
    except (OSError, ValueError, IndexError):
        pass
    if free is None:
        try:
            import psutil  # optional: present on many machines, not a dependency

            vm = psutil.virtual_memory()
            free, total = vm.available, vm.total
        except ImportError:
            pass
    if free is None and sys.platform == "win32":  # os.name == "nt", in words mypy knows
        import ctypes

        class _Status(ctypes.Structure):
            _fields_ = [
                ("dwLength", ctypes.c_ulong),
                ("dwMemoryLoad", ctypes.c_ulong),
                ("ullTotalPhys", ctypes.c_ulonglong),
                ("ullAvailPhys", ctypes.c_ulonglong),
                ("ullTotalPageFile", ctypes.c_ulonglong),
                ("ullAvailPageFile", ctypes.c_ulonglong),
                ("ullTotalVirtual", ctypes.c_ulonglong),
                ("ullAvailVirtual", ctypes.c_ulonglong),
                ("ullAvailExtendedVirtual", ctypes.c_ulonglong),
            ]

        status = _Status()
        status.dwLength = ctypes.sizeof(_Status)
        if ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):
            free, total = status.ullAvailPhys, status.ullTotalPhys
    if free is None:
        try:  # macOS and other Unixes: total only; assume half is free rather than claim it all
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
            free = total // 2
        except (ValueError, OSError, AttributeError):
            free = total = 0
    return int(free or 0), int(total or 0)  # a total that /proc/meminfo left out is not known: 0


def host_memory(limit: MemoryLimit | None = None) -> DeviceMemory:
    """The RAM this process may use: the machine's, or less where a cgroup or SLURM allocation says so.

    A cluster task sees the whole node in /proc/meminfo, but is killed at its
    own allocation; the verdict and the automatic batch size must use that.
    """
    free, total = machine_ram()
    limit = allocation_limit() if limit is None else limit
    if limit is not None and (not total or limit.limit_bytes < total):
        name = f"this task's memory allocation ({human_bytes(limit.limit_bytes)}, {limit.source})"
        return DeviceMemory(
            name,
            min(free, limit.free_bytes) if free else limit.free_bytes,
            limit.limit_bytes,
            "cpu",
            None,
            limit.source,
        )
    return DeviceMemory("this computer's memory (RAM)", free, total, "cpu", None)


def allocated_cpus(environ: Mapping[str, str] | None = None) -> int | None:
    """CPU cores this process was given: SLURM's --cpus-per-task, else the affinity mask; None when unknown."""
    env = os.environ if environ is None else environ
    value = env.get("SLURM_CPUS_PER_TASK", "").strip()
    counts = [int(value)] if value.isdigit() and int(value) > 0 else []
    if hasattr(os, "sched_getaffinity"):
        counts.append(len(os.sched_getaffinity(0)))
    return min(counts) if counts else None
