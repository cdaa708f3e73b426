"""Figures from the runner (each point measured in a fresh process, exactly as `ptybench run`):
throughput, accuracy, FFT-floor ratio, memory, and 2-rank strong scaling through the MPI harness.

Noise: throughput uses the best (minimum) of the timed iterations — the least disturbed sample on a
shared machine; accuracy is seeded and exact; memory comes from a fresh process (a few % jitter, so
the gate's factor covers it).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from .common import (
    CPU_BACKENDS,
    ENGINES,
    FULL_CPU_DATASETS,
    FULL_GPU_DATASETS,
    GPU_BACKENDS,
    QUICK_DATASETS,
    THREADS,
    skip_reason,
    split_backend,
)

ITERATIONS = 5
WARMUP = 2


class _Measured:
    param_names = ["engine", "backend", "dataset"]
    timeout = 1800

    def runs_here(self, backend: str, name: str) -> bool:
        return True

    def setup_cache(self) -> dict[tuple[str, str, str], dict[str, Any]]:
        from ptybench.runner import Measurement, run_isolated

        records = {}
        for engine, backend, name in itertools.product(*self.params):
            if skip_reason(backend) is not None or not self.runs_here(backend, name):
                continue
            backend_name, device = split_backend(backend)
            records[(engine, backend, name)] = run_isolated(Measurement(
                dataset=name, engine=engine, backend=backend_name, device=device, iterations=ITERATIONS,
                warmup=WARMUP, threads=THREADS, timeout_s=900))
        return records

    def setup(self, records: dict, engine: str, backend: str, name: str) -> None:
        # asv skips a benchmark whose setup raises NotImplementedError
        if (engine, backend, name) not in records:
            raise NotImplementedError(skip_reason(backend) or "not run at this size on this backend")

    @staticmethod
    def _record(records: dict, engine: str, backend: str, name: str) -> dict[str, Any]:
        record = records[(engine, backend, name)]
        if record["status"] != "ok":
            raise RuntimeError(f"{record['status']}: {record.get('message')}")
        return record

    def track_seconds_per_frame_iteration(self, records, engine, backend, name) -> float:
        record = self._record(records, engine, backend, name)
        return record["seconds_min"] / record["dataset_info"]["n_frames"]

    track_seconds_per_frame_iteration.unit = "seconds"

    def track_object_error(self, records, engine, backend, name) -> float:
        return self._record(records, engine, backend, name)["object_error"]

    track_object_error.unit = "relative error"

    def track_fft_floor_ratio(self, records, engine, backend, name) -> float:
        record = self._record(records, engine, backend, name)
        return record["seconds_min"] / record["fft_floor_seconds"]

    track_fft_floor_ratio.unit = "ratio"

    def track_algorithm_memory(self, records, engine, backend, name) -> float:
        memory = self._record(records, engine, backend, name)["memory"]
        value = memory["device_peak_bytes"] if backend in GPU_BACKENDS else memory["host_algorithm_bytes"]
        return float(value)

    track_algorithm_memory.unit = "bytes"



class QuickMeasured(_Measured):
    params = [ENGINES, CPU_BACKENDS, QUICK_DATASETS]


class FullMeasured(_Measured):
    params = [ENGINES, CPU_BACKENDS + GPU_BACKENDS, FULL_CPU_DATASETS + FULL_GPU_DATASETS]

    def runs_here(self, backend: str, name: str) -> bool:
        return (backend in GPU_BACKENDS) == (name in FULL_GPU_DATASETS)


class FullDeviceMemory(_Measured):
    """Peak device memory (torch.cuda.max_memory_allocated, the CuPy pool) at the GPU sizes."""

    params = [ENGINES, GPU_BACKENDS, FULL_GPU_DATASETS]

    def track_device_peak_memory(self, records, engine, backend, name) -> float:
        return float(self._record(records, engine, backend, name)["memory"]["device_peak_bytes"])

    track_device_peak_memory.unit = "bytes"


class QuickStrongScaling:
    """DM on 1 and 2 ranks (1 thread each) through `ptybench scale`'s launcher: the Karp–Flatt serial
    fraction e = (1/S − 1/K)/(1 − 1/K) at K = 2, i.e. 2/S − 1 (0 = perfect; larger is worse)."""

    timeout = 900
    dataset = "farfield-64-1024"

    def setup_cache(self) -> dict[int, dict[str, Any]]:
        from ptybench.runner import Measurement
        from ptybench.scaling import MPIUnavailable, mpiexec_path, run_mpi

        try:
            mpiexec_path()
        except MPIUnavailable as error:
            return {"skip": str(error)}
        base = Measurement(dataset=self.dataset, engine="DM", iterations=5, warmup=2, threads=1, fft_floor=False,
                           timeout_s=600)
        return {ranks: run_mpi(dataclasses.replace(base, ranks=ranks)) for ranks in (1, 2)}

    def setup(self, records) -> None:
        if "skip" in records:
            raise NotImplementedError(records["skip"])

    def track_two_rank_serial_fraction(self, records) -> float:
        for record in records.values():
            if record["status"] != "ok":
                raise RuntimeError(f"{record['status']}: {record.get('message')}")
        speedup = records[1]["seconds_min"] / records[2]["seconds_min"]
        return 2 / speedup - 1

    track_two_rank_serial_fraction.unit = "fraction"
