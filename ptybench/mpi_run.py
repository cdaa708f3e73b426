"""One distributed measurement, run on every rank: ``mpiexec -n K python -m mpi4py -m ptybench.mpi_run
MEASUREMENT.json RECORD.json [ARRAYS.npz]`` (launched by ``ptybench scale``; see ptybench/scaling.py).

Every rank makes (or reads) only its own contiguous block of frames, so rank 0 never holds the whole
dataset. Each rank times its iterations and the communication inside them; rank 0 gathers the
per-rank detail and writes one record. Launch it through ``python -m mpi4py``: an exception on any
rank then aborts the whole job instead of leaving the others waiting in a collective forever.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

#: Fault injection for the abort-path test: the rank named here raises after setting up.
FAIL_RANK_VARIABLE = "PTYBENCH_FAIL_RANK"


def device_for_rank(measurement: Any, comm: Any) -> str | None:
    """One GPU per rank: the node-local rank picks the device when none (or just "cuda") is named."""
    if measurement.backend == "numpy" or (measurement.backend == "torch" and measurement.device in (None, "cpu")):
        return measurement.device
    if measurement.device not in (None, "cuda"):
        return measurement.device
    from mpi4py import MPI

    local_rank = comm.Split_type(MPI.COMM_TYPE_SHARED).Get_rank()
    if measurement.backend == "cupy":
        from ptybench.engines.backends.cupy_backend import device_count
        return f"cuda:{local_rank % max(device_count(), 1)}"
    import torch
    return f"cuda:{local_rank % max(torch.cuda.device_count(), 1)}"


def measure_distributed(measurement: Any, arrays_path: str | None = None) -> dict[str, Any] | None:
    from ptybench.engines import Reconstruction, ReconstructionDiverged, get_backend
    from ptybench.engines.mpi import MPICommunicator
    from ptybench.machine import describe_machine
    from ptybench.memory_model import predict_memory
    from ptybench.runner import (
        _now,
        _proc_status_bytes,
        _reset_peak_rss,
        _timing_fields,
        _warm_runtime,
        describe_dataset,
        load_dataset,
    )

    started = time.time()
    comm = MPICommunicator()
    device = device_for_rank(measurement, comm.comm)
    backend = get_backend(measurement.backend, device, measurement.threads)
    data = load_dataset(measurement)
    n_frames = int(data.spec.n_frames if hasattr(data, "spec") else data.n_frames)
    start, stop = comm.frame_range(n_frames)
    arrays = {"diffraction_data": data.frames(start, stop), "initial_object": data.initial_object(),
              "initial_probe": data.initial_probe(), "scan_positions": data.positions[start:stop],
              "mask": data.mask}
    truth = ({"true_object": data.ground_truth_object(), "true_probe": data.ground_truth_probe()}
             if getattr(data, "has_ground_truth", True) else {})
    _warm_runtime(measurement, data)
    if os.environ.get(FAIL_RANK_VARIABLE) == str(comm.rank):
        raise RuntimeError(f"rank {comm.rank}: deliberate failure ({FAIL_RANK_VARIABLE})")
    baseline = _proc_status_bytes("VmRSS")
    peak_reset = _reset_peak_rss()
    backend.reset_peak_memory()
    parameters = {**measurement.engine_parameters(), **data.engine_parameters()}
    if device is not None:
        parameters["device"] = device
    comm.barrier()
    reconstruction = Reconstruction(**arrays, parameters=parameters, comm=comm, n_frames_total=n_frames, **truth)
    try:
        result = reconstruction.run()
        status, message, history = "ok", "", result.history
    except ReconstructionDiverged as error:  # the object is replicated: every rank sees it at once
        status, message, history = "diverged", str(error), reconstruction.history
    peak = _proc_status_bytes("VmHWM")
    timed = history[measurement.warmup:]
    detail = {
        "rank": comm.rank, "frames": [start, stop], "device": backend.device, "host": os.uname().nodename,
        "iteration_seconds": [r.seconds for r in timed],
        "communication_seconds": [r.stage_seconds.get("communication", 0.0) for r in timed],
        "host_algorithm_bytes": (peak - baseline) if (peak and baseline and peak_reset) else None,
        "device_peak_bytes": backend.memory_stats().peak_bytes,
        "bytes_reduced_per_iteration": comm.bytes_reduced / max(len(history), 1),
    }
    details = comm.comm.gather(detail, root=0)
    if arrays_path and comm.rank == 0 and status == "ok":
        np.savez(arrays_path, object=reconstruction.object, probe=reconstruction.probe)
    if comm.rank != 0:
        return None
    record: dict[str, Any] = {**measurement.identity(), "ranks": comm.size, "status": status, "message": message,
                              "dataset_info": describe_dataset(measurement.dataset, data),
                              "backend_info": backend.describe(), "created": _now(),
                              "target_error": measurement.target_error}
    record["machine"] = describe_machine(record["backend_info"])
    record.update(_timing_fields(history, measurement))
    record["calibration"] = reconstruction.calibration()
    record.update(distributed_summary(details))
    prediction = predict_memory(data, measurement.engine, measurement.backend, measurement.frames_per_block,
                                comm.size, device)
    measured = [d["device_peak_bytes"] if backend.is_device_memory else d["host_algorithm_bytes"] for d in details]
    record["memory"] = {"per_rank_bytes": measured, "predicted_bytes": prediction.total_bytes,
                        "host_algorithm_bytes": max((m for m in measured if m), default=None),
                        "measured_over_predicted": (max(measured) / prediction.total_bytes)
                        if all(measured) else None}
    record["per_rank"] = details
    record["wall_seconds"] = time.time() - started
    return record


def distributed_summary(details: list[dict[str, Any]]) -> dict[str, Any]:
    """Per iteration: compute = wall − communication on each rank; the slowest rank's compute sets the
    pace, communication is averaged over ranks. Medians over the timed iterations."""
    walls = np.array([d["iteration_seconds"] for d in details])            # (ranks, iterations)
    communication = np.array([d["communication_seconds"] for d in details])
    if walls.size == 0:
        return {}
    compute = walls - communication
    return {"compute_seconds": float(np.median(compute.max(axis=0))),
            "communication_seconds": float(np.median(communication.mean(axis=0))),
            "load_imbalance": float(np.median(compute.max(axis=0) / np.maximum(compute.mean(axis=0), 1e-12))),
            "bytes_reduced_per_iteration": float(details[0]["bytes_reduced_per_iteration"])}


def main(argv: list[str] | None = None) -> int:
    from ptybench.results import write_json_atomically
    from ptybench.runner import Measurement

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) not in (2, 3):
        print("usage: mpiexec -n K python -m mpi4py -m ptybench.mpi_run MEASUREMENT.json RECORD.json [ARRAYS.npz]",
              file=sys.stderr)
        return 2
    measurement = Measurement.from_json(Path(argv[0]).read_text())
    record = measure_distributed(measurement, argv[2] if len(argv) == 3 else None)
    if record is not None:
        write_json_atomically(argv[1], record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
