"""Shared pieces of the asv benchmarks: parameter grids, availability, datasets made once per process.

Profiles are benchmark classes: ``Quick*`` covers every engine and backend here at a small size in
about 5 minutes on a 2-core machine (``asv run --bench Quick``); ``Full*`` adds the large CPU sizes and
the GPU sizes, which skip without a GPU. Every figure is oriented "larger is worse", asv's convention
for regressions: seconds per frame·iteration rather than frames per second, serial fraction rather
than parallel efficiency.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from ptybench.engines.backends import parse_target

CPU_BACKENDS = ["numpy", "torch"]
GPU_BACKENDS = ["cupy", "torch:cuda"]
QUICK_DATASETS = ["farfield-64-256"]
FULL_CPU_DATASETS = ["farfield-128-1024", "farfield-256-1024"]
FULL_GPU_DATASETS = ["farfield-128-16384", "farfield-256-4096"]
def count_from_environment(name: str, default: int) -> int:
    """A whole number >= 1 from the environment variable ``name`` (``default`` when unset); anything else is a
    clear error naming the variable, not a traceback from int() inside asv or a benchmark of 0 rounds."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{name}: expected a whole number >= 1, got {text!r}")
    return int(text)


#: Threads for every benchmark: timings are comparable only with a fixed budget.
THREADS = count_from_environment("PTYBENCH_BENCH_THREADS", 2)
#: Rounds of each timing benchmark: asv runs one fresh process per round (interleaved between commits by
#: ``asv continuous --interleave-rounds``). The gate needs several processes a side to tell how much a process
#: varies (ptybench/timing_stats.py); ``ptybench compare --rounds`` sets it through this variable.
ROUNDS = count_from_environment("PTYBENCH_BENCH_ROUNDS", 4)
#: Samples (iterations) each round of a timing benchmark takes: fixed, so the gate can cut asv's pooled samples
#: back into one group per process (``ptybench.gate.samples_from_asv``).
SAMPLES_PER_ROUND = 10


#: Set by the regression gate, which runs asv with ``--launch-method forkserver``: the server imports what every
#: benchmark process needs once, and each benchmark is forked from it already imported.
PRELOAD_VARIABLE = "PTYBENCH_BENCH_PRELOAD"


def preload() -> list[str]:
    """Import NumPy, numba, torch (where installed) and ptybench's engines and backends, and return their names.
    In asv's fork server this is done once per round instead of in every benchmark process: on the 2-core box a
    spawned Quick benchmark took 1.4 s (NumPy) to 2.9 s (torch) of which 0.2–0.5 s were its samples. Imports
    only: nothing runs, so no pool of threads exists to be lost when the server forks (NumPy's BLAS starts
    one at import, as it does in asv's own server; it is fork-safe)."""
    import importlib
    import importlib.util

    names = ["numpy", "scipy.fft", "numba", "ptybench.engines", "ptybench.datasets",
             "ptybench.engines.backends.numpy_backend", "ptybench.engines.backends.numba_kernels"]
    if importlib.util.find_spec("torch") is not None:
        names += ["torch", "ptybench.engines.backends.torch_backend"]
    for name in names:
        importlib.import_module(name)
    # numba builds its CPU target (type registries, numba.np.arraymath, scipy.linalg) on the first call of any
    # compiled function, cached or not: 0.27 of a forked Quick benchmark's 0.33 s set-up. Building it here is
    # bookkeeping only; no compiled code runs and no thread starts.
    from numba.core.registry import cpu_target

    cpu_target.typing_context.refresh()
    cpu_target.target_context.refresh()
    return names


def preload_requested() -> bool:
    """PTYBENCH_BENCH_PRELOAD: "1" preloads, "0" or unset does not; anything else is a clear error naming it."""
    text = os.environ.get(PRELOAD_VARIABLE, "").strip()
    if text not in ("", "0", "1"):
        raise ValueError(f"{PRELOAD_VARIABLE}: expected 0 or 1, got {text!r}")
    return text == "1"


if preload_requested():
    preload()


@functools.cache
def skip_reason(label: str) -> str | None:
    """None when the backend runs here, else the reason (asv skips on NotImplementedError)."""
    from ptybench.engines.backends import backend_descriptor, backend_status

    name, device = parse_target(label)
    status = backend_status(((name, device or backend_descriptor(name).probe_devices[0]),))[0]
    return None if status.available else status.reason


def require(label: str) -> None:
    reason = skip_reason(label)
    if reason is not None:
        raise NotImplementedError(reason)


@functools.cache
def dataset(name: str) -> Any:
    from ptybench.datasets import load

    return load(name)


@functools.cache
def dataset_arrays(name: str) -> dict[str, Any]:
    return dataset(name).arrays()
