"""Per-iteration time and peak memory of every engine × backend × size (warm-up excluded)."""

from __future__ import annotations

from typing import Any

from ptybench.engines.registry import engine_names

from .common import (
    CPU_BACKENDS,
    FULL_CPU_DATASETS,
    FULL_GPU_DATASETS,
    GPU_BACKENDS,
    QUICK_DATASETS,
    ROUNDS,
    SAMPLES_PER_ROUND,
    THREADS,
    dataset,
    dataset_arrays,
    parse_target,
    require,
)

WARMUP = 2


#: The reconstruction each process has built and warmed up, by (engine, backend, dataset). asv runs ``setup``
#: before every sample (timeit's setup statement), so without this every sample was the first iteration after
#: a fresh build and warm-up, and a forked Quick benchmark spent 0.7 s of its 1.3 s re-building. Kept, the
#: samples are consecutive iterations after one warm-up, as the runner measures them.
_PREPARED: dict[tuple[str, str, str], Any] = {}


def prepared(engine: str, backend: str, name: str) -> Any:
    """This process's reconstruction for the parameters, built and warmed up (WARMUP iterations) on first use."""
    key = (engine, backend, name)
    if key not in _PREPARED:
        from ptybench.engines import Reconstruction

        backend_name, device = parse_target(backend)
        # Enough iterations for every sample asv may take; each sample is one Reconstruction.step().
        parameters = {"engine": engine, "backend": backend_name, "device": device, "threads": THREADS,
                      "iterations": 10_000, **dataset(name).engine_parameters()}
        reconstruction = Reconstruction(**dataset_arrays(name), parameters=parameters)
        with reconstruction.backend.thread_limit(THREADS):
            for _ in range(WARMUP):
                reconstruction.step()
        _PREPARED[key] = reconstruction
    return _PREPARED[key]


class _EngineIteration:
    """setup takes this process's prepared reconstruction (built and warmed up once); time_iteration is one
    iteration of the engine, read after a device sync (the same engine objects the runner measures)."""

    param_names = ["engine", "backend", "dataset"]
    timeout = 600
    number = 1        # one iteration per sample
    repeat = SAMPLES_PER_ROUND  # a fixed count, so each round's samples can be told apart
    rounds = ROUNDS   # fresh processes per commit (asv reads it for time_ benchmarks; peakmem_ and track_ run once)
    warmup_time = 0

    def setup(self, engine: str, backend: str, name: str) -> None:
        require(backend)
        self.reconstruction = prepared(engine, backend, name)
        self._limit = self.reconstruction.backend.thread_limit(THREADS)
        self._limit.__enter__()

    def teardown(self, *params: Any) -> None:
        # The reconstruction stays for the next sample; the process ends with the benchmark.
        limit = getattr(self, "_limit", None)
        if limit is not None:
            limit.__exit__(None, None, None)

    def _step(self) -> None:
        self.reconstruction.step()  # reads the time after a device sync

    def time_iteration(self, engine: str, backend: str, name: str) -> None:
        self._step()

    def peakmem_iteration(self, engine: str, backend: str, name: str) -> None:
        """Peak RSS of the process over setup (data, warm-up) and one more iteration."""
        self._step()


class QuickEngineIteration(_EngineIteration):
    params = [engine_names(), CPU_BACKENDS, QUICK_DATASETS]


class FullEngineIteration(_EngineIteration):
    params = [engine_names(), CPU_BACKENDS + GPU_BACKENDS, FULL_CPU_DATASETS + FULL_GPU_DATASETS]

    def setup(self, engine: str, backend: str, name: str) -> None:
        on_gpu = backend in GPU_BACKENDS
        if on_gpu != (name in FULL_GPU_DATASETS):
            raise NotImplementedError("GPU sizes run on GPU backends, CPU sizes on CPU backends")
        super().setup(engine, backend, name)
