"""The measuring process's own memory, read and bounded: resident peaks from /proc/self/status, a new peak
window, an address-space cap for --memory-limit, and what counts as running out of memory on any backend.
Kept apart from the measurement so each probe is tested on its own."""

from __future__ import annotations

import re
from pathlib import Path


def process_status_bytes(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Start a new VmHWM window (Linux ≥ 4.0); False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def limit_address_space(extra_bytes: int | None) -> tuple[int, int] | None:
    """Cap further address space at ``extra_bytes`` (never above a hard limit a batch system set, e.g.
    ``ulimit -v``); returns the previous limits to restore, None when nothing was changed."""
    if extra_bytes is None:
        return None
    import resource

    import numpy as np

    # OpenBLAS reserves its buffer pool at the first BLAS call and exits the process (status 1) when it
    # cannot: made here, the pool is the process's, not a cost charged to the run under the limit.
    # (Small products use a stack buffer; these sizes take the pool's path for gemv and gemm.)
    square = np.ones((512, 512))
    square @ square[0]
    square @ square

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    wanted = (process_status_bytes("VmSize") or 0) + extra_bytes
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_AS, (wanted, hard))
    return soft, hard


def restore_address_space(previous: tuple[int, int] | None) -> None:
    if previous is not None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, previous)


def is_out_of_memory(error: BaseException) -> bool:
    """MemoryError (NumPy, or RLIMIT_AS), torch.cuda.OutOfMemoryError, cupy's OutOfMemoryError."""
    if isinstance(error, MemoryError):
        return True
    text = f"{type(error).__name__}: {error}".lower()
    return "outofmemory" in text.replace(" ", "").replace("_", "") or "out of memory" in text


#: What native libraries print before they exit on a failed allocation (OpenBLAS, C++ runtimes, glibc, CUDA).
ALLOCATION_FAILURES = re.compile(r"memory allocation (still )?failed|std::bad_alloc|cannot allocate memory|"
                                 r"out of memory|memoryerror", re.IGNORECASE)


def allocation_failure(stderr: str) -> str | None:
    """The line where a child that died said it could not allocate memory, or None. A library may exit on
    its own (OpenBLAS exits with status 1) before Python raises MemoryError: under a memory limit that is
    the run's out-of-memory, and must read as one, not as a crash."""
    lines = [line.strip() for line in stderr.splitlines() if ALLOCATION_FAILURES.search(line)]
    return lines[-1] if lines else None


def return_free_memory() -> None:
    """glibc keeps freed heap pages; give them back, so the run's pages are counted as it takes them."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
