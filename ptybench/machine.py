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

#: A name for this machine in comparisons (``ptybench procure --label``); default: the host name.
LABEL_VARIABLE = "PTYBENCH_MACHINE_LABEL"
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


def interconnect() -> dict[str, Any]:
    """What this node can talk over, where Linux shows it: InfiniBand/RoCE adapters (/sys/class/infiniband)
    and the network interfaces that are up with their speed in Mb/s (unknown speeds left out)."""
    info: dict[str, Any] = {}
    adapters = Path("/sys/class/infiniband")
    if adapters.is_dir():
        info["infiniband"] = sorted(path.name for path in adapters.iterdir())
    interfaces = {}
    for path in sorted(Path("/sys/class/net").glob("*")):
        if path.name == "lo":
            continue
        try:
            if (path / "operstate").read_text().strip() != "up":
                continue
            speed = int((path / "speed").read_text().strip())
        except (OSError, ValueError):
            continue
        if speed > 0:
            interfaces[path.name] = speed
    if interfaces:
        info["ethernet_mbps"] = interfaces
    return info


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

    from ptybench.engines.host_memory import host_total_bytes

    info: dict[str, Any] = {
        "label": os.environ.get(LABEL_VARIABLE) or platform.node(),
        "hostname": platform.node(),
        "cpu": cpu_model(),
        "cores_logical": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "memory_limit_bytes": host_total_bytes(),
        "platform": platform.platform(),
        "python_executable": sys.executable,
        "versions": library_versions(),
        "git_commit": git_commit(),
        "interconnect": interconnect(),
    }
    if backend_info:
        for key in ("gpu", "gpu_memory_bytes"):
            if key in backend_info:
                info[key] = backend_info[key]
    return info


def machine_fingerprint(machine: dict[str, Any] | None) -> str:
    """A short hash of what makes two machines different for a benchmark: label, host, CPU, cores
    available, memory and GPU. Records with the same fingerprint were measured on the same machine."""
    import hashlib
    import json

    machine = machine or {}
    facts = {key: machine.get(key) for key in ("label", "hostname", "cpu", "cores_available", "memory_bytes", "gpu")}
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()[:8]


def machine_name(machine: dict[str, Any] | None) -> str:
    """The readable name of a record's machine in tables and reports: its label (or host name)."""
    machine = machine or {}
    return str(machine.get("label") or machine.get("hostname") or "unknown")
