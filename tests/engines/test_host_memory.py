"""The host memory placement may fill: a memory cgroup's limit (what Slurm, containers and Kubernetes set)
counts, read from planted v1 and v2 trees and from a real cgroup where this machine lets us make one."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from ptybench.engines.host_memory import cgroup_memory, host_available_bytes


def plant(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_a_v1_limit_is_the_least_over_the_ancestors_and_the_page_cache_is_not_counted_as_taken(tmp_path):
    plant(tmp_path, {"proc": "9:pids:/\n4:memory:/slurm/job7\n0::/\n",
                     "cg/memory/slurm/memory.limit_in_bytes": str(3 * 10**9),
                     "cg/memory/slurm/job7/memory.limit_in_bytes": str(8 * 10**9),
                     "cg/memory/slurm/job7/memory.usage_in_bytes": str(2 * 10**9),
                     "cg/memory/slurm/job7/memory.stat": f"cache 1500000000\ntotal_inactive_file {12 * 10**8}\n"})
    found = cgroup_memory(str(tmp_path / "proc"), str(tmp_path / "cg"))
    assert found.limit_bytes == 3 * 10**9  # the parent's limit binds the job
    assert found.working_set_bytes == 8 * 10**8  # 2 GB used, 1.2 GB of it droppable file pages
    assert found.available_bytes == 22 * 10**8


def test_a_v2_limit_of_max_is_no_limit_but_a_parent_limit_is(tmp_path):
    plant(tmp_path, {"proc": "0::/user.slice/job\n",
                     "cg/user.slice/memory.max": str(4 * 10**9),
                     "cg/user.slice/job/memory.max": "max\n",
                     "cg/user.slice/job/memory.current": str(10**9),
                     "cg/user.slice/job/memory.stat": "anon 600000000\ninactive_file 300000000\n"})
    found = cgroup_memory(str(tmp_path / "proc"), str(tmp_path / "cg"))
    assert (found.limit_bytes, found.working_set_bytes) == (4 * 10**9, 7 * 10**8)


def test_no_limit_anywhere_or_nothing_readable_is_none(tmp_path):
    plant(tmp_path, {"proc": "0::/job\n", "cg/job/memory.max": "max\n", "cg/job/memory.current": "5\n"})
    assert cgroup_memory(str(tmp_path / "proc"), str(tmp_path / "cg")) is None
    assert cgroup_memory(str(tmp_path / "missing"), str(tmp_path / "cg")) is None


def real_v1_memory_cgroup() -> Path | None:
    """A folder this process may make child cgroups in (root on a cgroup v1 host), else None."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            folder = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            if (folder / "memory.limit_in_bytes").exists() and os.access(folder, os.W_OK):
                return folder
    return None


@pytest.mark.skipif(real_v1_memory_cgroup() is None, reason="no writable cgroup v1 memory controller here")
def test_a_process_in_a_real_memory_cgroup_sees_its_limit_not_the_machines_memory():
    folder = real_v1_memory_cgroup() / f"ptybench-test-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    try:
        (folder / "memory.limit_in_bytes").write_text(str(2**30))
        probe = ("from ptybench.engines.host_memory import host_available_bytes, host_total_bytes; "
                 "print(host_total_bytes(), host_available_bytes())")
        done = subprocess.run(["sh", "-c", f'echo $$ > {folder}/cgroup.procs && exec "$0" -c "$1"',
                               sys.executable, probe], capture_output=True, text=True, timeout=120)
        total, available = (int(word) for word in done.stdout.split())
        assert total == 2**30
        assert 0 < available <= 2**30
        assert host_available_bytes() > 2**30  # this process, outside it, sees the machine (24 GB here)
    finally:
        folder.rmdir()
