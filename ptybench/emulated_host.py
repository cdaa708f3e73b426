"""A smaller host, emulated: the measuring child runs in a memory cgroup of its own with a hard limit.

Why a cgroup and not ``--memory-limit``: an address-space limit caps what the process maps, but the
machine's page cache still holds every file it reads and writes, so data "larger than memory" is served
from RAM and the disk is never the bottleneck it would be on the smaller host. A memory cgroup counts the
page cache too: past the limit the kernel drops the group's file pages and the next read goes to disk,
as on a machine of that size. It is also how batch systems and containers limit a job (Slurm's cgroup
plugin, Docker, Kubernetes), and the engines size their placement by it (ptybench.engines.host_memory).

Making a cgroup needs root on cgroup v1, or a delegated cgroup v2 subtree with the memory controller; where
neither is available the run is refused with the reason, before anything is measured."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ptybench.engines.errors import InputError
from ptybench.engines.host_memory import memory_cgroup_folders
from ptybench.isolation import oom_kill_count


def _parent() -> tuple[Path, str]:
    """The folder to make the child cgroup in and the limit file's name ("memory.limit_in_bytes" on v1,
    "memory.max" on v2)."""
    for folder in memory_cgroup_folders():
        if (folder / "memory.limit_in_bytes").exists():
            return folder, "memory.limit_in_bytes"
        controllers = folder / "cgroup.subtree_control"
        if controllers.exists() and "memory" in controllers.read_text().split():
            return folder, "memory.max"
    raise InputError("host_memory: expected a memory cgroup this process can make a child in (root on cgroup v1, "
                     "or a cgroup v2 subtree delegated with the memory controller), found none; on a systemd "
                     "machine run the sweep under `systemd-run --scope -p MemoryMax=SIZE` instead")


def problem() -> str | None:
    """Why an emulated host cannot be made here, or None."""
    try:
        parent, _ = _parent()
    except InputError as error:
        return str(error)
    return None if os.access(parent, os.W_OK) else f"host_memory: {parent} is not writable by this user"


@dataclass(frozen=True)
class EmulatedHost:
    folder: Path

    @property
    def procs(self) -> Path:
        """The file a child writes its PID into before it starts (ptybench.isolation.run_child)."""
        return self.folder / "cgroup.procs"

    def oom_kills(self) -> int | None:
        """Processes the kernel's out-of-memory killer ended in this host (its own count: v1 does not add a
        child cgroup's kills to its parent's)."""
        return oom_kill_count([self.folder])


@contextlib.contextmanager
def emulated_host(memory_bytes: int) -> Iterator[EmulatedHost]:
    """A fresh memory cgroup limited to ``memory_bytes`` (page cache included, no swap). Removed when the
    block ends; its processes must have ended by then (run_child waits for them)."""
    parent, limit_name = _parent()
    folder = parent / f"ptybench-host-{uuid.uuid4().hex[:12]}"
    try:
        folder.mkdir()
    except OSError as error:
        raise InputError(f"host_memory: cannot make a memory cgroup in {parent} ({error.strerror})") from None
    try:
        (folder / limit_name).write_text(str(int(memory_bytes)))
        for swap in ("memory.memsw.limit_in_bytes", "memory.swap.max"):  # a host of that size does not swap here
            with contextlib.suppress(OSError):
                (folder / swap).write_text(str(int(memory_bytes)) if "memsw" in swap else "0")
        yield EmulatedHost(folder)
    finally:
        _remove(folder)


def _remove(folder: Path, attempts: int = 50) -> None:
    """rmdir fails while the kernel still counts a process that just ended in the group: retry briefly."""
    for _ in range(attempts):
        try:
            folder.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)
