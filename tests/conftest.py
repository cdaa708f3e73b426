"""Shared fixtures: small datasets made once per session, and a private dataset cache."""

from __future__ import annotations

import os
import shutil

import pytest

# Under pytest -n (make test) each worker runs on one core of its own, one thread, so workers do not fight
# over cores and a test's children (measuring processes, MPI ranks) stay on the worker's core. Tests that
# measure the machine itself are marked `exclusive` and run apart, unpinned.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")  # "gw0", "gw1", ...
if _WORKER:
    _cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {_cores[int(_WORKER[2:]) % len(_cores)]})
    os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "2")
# Without a GPU, numba runs the CuPy backend's CUDA kernels in its simulator, so they are tested here
# too (tests/engines/test_cuda_kernels.py). Set before anything imports numba.
if not (shutil.which("nvidia-smi") or os.path.exists("/dev/nvidiactl")):
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Tests never write to the user's cache. The workers of one `pytest -n` run share theirs, so a dataset's
    # frames are generated once per run (datasets/frame_cache.py), not once per worker.
    shared = tmp_path_factory.getbasetemp().parent / "cache" if _WORKER else tmp_path_factory.mktemp("cache")
    shared.mkdir(exist_ok=True)
    os.environ["PTYBENCH_CACHE"] = str(shared)


@pytest.fixture(scope="session")
def farfield_small():
    from ptybench.datasets import load

    return load("farfield-64-256")


@pytest.fixture(scope="session")
def farfield_arrays(farfield_small):
    return farfield_small.arrays()


@pytest.fixture
def saved_figures(monkeypatch):
    """Every matplotlib figure saved during the test, so tests check axes, labels and lines, not bytes."""
    from matplotlib.figure import Figure

    figures = []
    original = Figure.savefig

    def record(self, *args, **kwargs):
        figures.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    return figures


@pytest.fixture
def faulty_engine():
    """environment(rank, mode): what a measuring child needs to load the failing test engine "Faulty"."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    import faulty_engine

    from ptybench.engines.registry import unregister

    yield faulty_engine.environment
    unregister("Faulty")  # registered in this process by the import: later tests see only the built-in engines
    sys.modules.pop("faulty_engine", None)
    sys.path.remove(str(Path(__file__).parent))
