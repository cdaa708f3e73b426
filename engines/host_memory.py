"""How much memory this process may still fill on the host: the machine's free memory, its memory cgroup's
limit, and an address-space limit, whichever is least.

Why the cgroup: batch systems (Slurm's cgroup plugin), containers and Kubernetes limit a job's memory
through its memory cgroup, not through the machine's free memory. A job given 16 GB on a 512 GB node that
sized its arrays by the node's free memory would be killed by the kernel mid-run; sized by its cgroup, it
streams its frames from disk and finishes. The cgroup's usage counts the page cache, most of which the
kernel can drop; the working set (usage − inactive file pages, as Kubernetes counts it) is what is taken."""

from __future__ import annotations

import resource
from dataclasses import dataclass
from pathlib import Path

#: A cgroup "limit" at or above this is no limit (v1 writes 2⁶³ rounded down to a page; v2 writes "max").
NO_LIMIT = 2**60


@dataclass(frozen=True)
class CgroupMemory:
    """The tightest memory limit over this process's cgroup and its ancestors, and that cgroup's working set."""

    limit_bytes: int
    working_set_bytes: int
    path: str

    @property
    def available_bytes(self) -> int:
        return max(0, self.limit_bytes - self.working_set_bytes)


def memory_cgroup_folders(proc_cgroup: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> list[Path]:
    """This process's memory cgroup folder, v2 (unified) or v1 (memory controller), first the one named in
    /proc/self/cgroup, then the mount's root (inside a container the named path may not exist there)."""
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        return []
    folders = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            bases = [Path(root), Path(root) / "unified"]
        elif "memory" in controllers.split(","):
            bases = [Path(root) / "memory"]
        else:
            continue
        for base in bases:
            folders += [base / path.lstrip("/"), base]
    return [folder for folder in dict.fromkeys(folders) if folder.is_dir()]


def cgroup_memory(proc_cgroup: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> CgroupMemory | None:
    """The memory cgroup's limit (least over the folder and its ancestors) and working set; None where no
    limit is set or nothing is readable."""
    for folder in memory_cgroup_folders(proc_cgroup, root):
        v2 = (folder / "memory.max").exists() or (folder / "memory.current").exists()
        limit_name, usage_name, inactive_name = (("memory.max", "memory.current", "inactive_file") if v2 else
                                                 ("memory.limit_in_bytes", "memory.usage_in_bytes",
                                                  "total_inactive_file"))
        limits = [_read_number(level / limit_name) for level in [folder, *folder.parents]]
        limits = [limit for limit in limits if limit is not None and limit < NO_LIMIT]
        usage = _read_number(folder / usage_name)
        if not limits or usage is None:
            continue
        inactive = _stat(folder / "memory.stat").get(inactive_name, 0)
        return CgroupMemory(min(limits), max(0, usage - inactive), str(folder))
    return None


def host_total_bytes() -> int:
    """The memory this process's jobs may hold at most: the machine's, or its cgroup's limit when lower."""
    import psutil

    total = int(psutil.virtual_memory().total)
    cgroup = cgroup_memory()
    return min(total, cgroup.limit_bytes) if cgroup else total


def host_available_bytes() -> int:
    """Memory arrays can still take on the host: the available memory, or less under the memory cgroup's
    limit, or under an address-space limit (RLIMIT_AS, which batch systems and ``--memory-limit`` set) than
    the process already maps."""
    import psutil

    available = int(psutil.virtual_memory().available)
    cgroup = cgroup_memory()
    if cgroup is not None:
        available = min(available, cgroup.available_bytes)
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit != resource.RLIM_INFINITY:
        available = min(available, max(0, limit - psutil.Process().memory_info().vms))
    return available


def _read_number(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return NO_LIMIT
    try:
        return int(text)
    except ValueError:
        return None


def _stat(path: Path) -> dict[str, int]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    found = {}
    for line in lines:
        name, _, value = line.partition(" ")
        if value.strip().isdigit():
            found[name] = int(value)
    return found
