"""The scratch disk's sequential bandwidth, measured once per file system and kept, for plans that price I/O.

Residency "disk" reads (and for DM/RAAR writes) every frame's arrays each iteration, so a streamed run is as
slow as max(compute, I/O) at best. The plan cannot know the disk, so it measures it: a file of
``PROBE_BYTES`` written in 8 MB chunks and flushed (fsync), then read back after its pages are dropped from
the page cache (posix_fadvise DONTNEED), the way a run larger than memory meets it; the median of ``ROUNDS``
(one write with fsync measured 0.19 and 1.25 GB/s a minute apart on this VM's disk). The result is kept in
``$PTYBENCH_CACHE/disk-bandwidth.json`` per device of the file system (st_dev), with the directory and date.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ptybench.engines.errors import InputError

PROBE_BYTES = 256 * 2**20
CHUNK_BYTES = 8 * 2**20
ROUNDS = 3


@dataclass(frozen=True)
class DiskBandwidth:
    read_bytes_per_second: float
    write_bytes_per_second: float
    directory: str
    measured: str  # ISO date and time

    def describe(self) -> str:
        return (f"disk at {self.directory}: read {self.read_bytes_per_second / 1e9:.2f} GB/s, write "
                f"{self.write_bytes_per_second / 1e9:.2f} GB/s (measured {self.measured}, cached)")


def _cache_file() -> Path:
    from ptybench.datasets import cache_dir

    return cache_dir() / "disk-bandwidth.json"


def _key(directory: str) -> str:
    return str(os.stat(directory).st_dev)


def measure(directory: str, size: int | None = None, rounds: int = ROUNDS) -> DiskBandwidth:
    """Write then read ``size`` bytes (default PROBE_BYTES) in ``directory`` (never left behind), ``rounds``
    times; medians."""
    size = size or PROBE_BYTES
    if not os.path.isdir(directory):
        raise InputError(f"scratch_directory: expected an existing directory, got {directory!r}")
    chunk = os.urandom(CHUNK_BYTES)  # incompressible, in case the file system compresses
    reads, writes = [], []
    for _ in range(rounds):
        descriptor, path = tempfile.mkstemp(prefix="ptybench-bandwidth-", dir=directory)
        try:
            os.unlink(path)
            started = time.perf_counter()
            for offset in range(0, size, CHUNK_BYTES):
                os.pwrite(descriptor, chunk, offset)
            os.fsync(descriptor)
            writes.append(size / (time.perf_counter() - started))
            os.posix_fadvise(descriptor, 0, size, os.POSIX_FADV_DONTNEED)  # from the disk, not the page cache
            started = time.perf_counter()
            for offset in range(0, size, CHUNK_BYTES):
                os.pread(descriptor, CHUNK_BYTES, offset)
            reads.append(size / (time.perf_counter() - started))
        finally:
            os.close(descriptor)
    return DiskBandwidth(statistics.median(reads), statistics.median(writes), os.path.realpath(directory),
                         time.strftime("%Y-%m-%d %H:%M"))


def cached(directory: str, measure_if_missing: bool = True) -> DiskBandwidth | None:
    """The kept bandwidth of ``directory``'s file system; measured now (and kept) when there is none."""
    path = _cache_file()
    try:
        kept = json.loads(path.read_text())
    except (OSError, ValueError):
        kept = {}
    entry = kept.get(_key(directory)) if isinstance(kept, dict) else None
    if isinstance(entry, dict):  # a kept entry is used only when it is whole and its speeds are real numbers
        try:
            kept_bandwidth = DiskBandwidth(**entry)
            if all(isinstance(speed, int | float) and 0 < speed < math.inf for speed in
                   (kept_bandwidth.read_bytes_per_second, kept_bandwidth.write_bytes_per_second)):
                return kept_bandwidth
        except TypeError:
            pass
    if not measure_if_missing:
        return None
    return remeasure(directory)


def remeasure(directory: str) -> DiskBandwidth:
    """Measure ``directory``'s file system now and keep the result in place of the old one."""
    from ptybench.results import write_json_atomically

    bandwidth = measure(directory)
    path = _cache_file()
    try:
        kept = json.loads(path.read_text())
    except (OSError, ValueError):
        kept = {}
    kept = kept if isinstance(kept, dict) else {}
    kept[_key(directory)] = asdict(bandwidth)
    write_json_atomically(path, kept)
    return bandwidth
