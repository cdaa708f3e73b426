"""The machine a measurement ran on: CPU, memory, GPU, library versions, git commit."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

#: Distributions whose versions go into every record (those not installed are left out).
LIBRARIES = ("ptybench", "numpy", "scipy", "numba", "torch", "cupy-cuda12x", "mpi4py", "h5py", "pandas")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def git_commit() -> str | None:
    """The commit of the ptybench checkout in use (None for an installed wheel or no git)."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def describe_machine(backend_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Plain-JSON facts about this machine; ``backend_info`` (Backend.describe) adds the GPU."""
    import psutil

    info: dict[str, Any] = {
        "hostname": platform.node(),
        "cpu": cpu_model(),
        "cores_logical": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "platform": platform.platform(),
        "python_executable": sys.executable,
        "versions": library_versions(),
        "git_commit": git_commit(),
    }
    if backend_info:
        for key in ("gpu", "gpu_memory_bytes"):
            if key in backend_info:
                info[key] = backend_info[key]
    return info
