"""A record's numbers from what the run produced: pure functions of the iteration history and the ranks'
details (no MPI, no devices), so the arithmetic — medians, the slowest rank's critical path, memory against
the model — is unit-tested on made-up inputs."""

from __future__ import annotations

from typing import Any

import numpy as np

from ptybench.record import Record


def time_to_quality(history: list[Any], target: float | None,
                    field: str = "object_error") -> tuple[int | None, float | None]:
    """Iterations (1-based, warm-up included) and summed iteration seconds until ``field`` ≤ target (object
    error against ground truth, or err_fmag of the returned model against a noise-floor target)."""
    if target is None:
        return None, None
    elapsed = 0.0
    for count, record in enumerate(history, start=1):
        elapsed += record.seconds
        value = getattr(record, field)
        if value is not None and value <= target:
            return count, elapsed
    return None, None


def add_timing(record: Record, history: list[Any], measurement: Any) -> None:
    """Median and spread of rank 0's timed iterations and their mean stage breakdown; final errors."""
    timed = history[measurement.warmup:]
    record.iterations_done = len(history)
    if timed:
        seconds = np.array([r.seconds for r in timed])
        stages = mean_stages(timed)
        record.seconds_per_iteration = float(np.median(seconds))
        record.seconds_min, record.seconds_max = float(seconds.min()), float(seconds.max())
        record.seconds_q25, record.seconds_q75 = (float(v) for v in np.percentile(seconds, [25, 75]))
        record.iteration_seconds = seconds.tolist()
        record.stages = stages
    if history:
        final = history[-1]
        record.object_error, record.r_factor, record.err_fmag = final.object_error, final.r_factor, final.err_fmag
        record.iterations_to_target, record.seconds_to_target = time_to_quality(history, measurement.target_error)
        record.r_factor_history = [r.r_factor for r in history]
        record.err_fmag_history = [r.err_fmag for r in history]


def disk_summary(timed: list[Any], read_bytes_per_second: float | None = None,
                 write_bytes_per_second: float | None = None) -> dict[str, Any] | None:
    """Scratch-file traffic of the timed iterations (means); None when they read and wrote nothing.
    ``read_hidden_share``: 1 − wait / (bytes / bandwidth), the share of the reads' time at the disk's measured
    bandwidth that the engine did not wait for (read ahead during compute, or served from the page cache)."""
    if not timed:
        return None
    read = float(np.mean([r.disk_bytes_read for r in timed]))
    written = float(np.mean([r.disk_bytes_written for r in timed]))
    if read == 0 and written == 0:
        return None
    stages = mean_stages(timed)
    summary: dict[str, Any] = {"read_bytes_per_iteration": read, "written_bytes_per_iteration": written,
                               "read_wait_seconds": stages.get("disk_read", 0.0),
                               "write_seconds": stages.get("disk_write", 0.0)}
    if read_bytes_per_second and write_bytes_per_second:  # the disk's, kept with the record for forecasts
        summary["disk_read_bytes_per_second"] = read_bytes_per_second
        summary["disk_write_bytes_per_second"] = write_bytes_per_second
    if read_bytes_per_second and read > 0:
        at_disk_speed = read / read_bytes_per_second
        summary["read_seconds_at_disk_speed"] = at_disk_speed
        summary["read_hidden_share"] = max(0.0, 1.0 - summary["read_wait_seconds"] / at_disk_speed)
    return summary


def mean_stages(timed: list[Any]) -> dict[str, float]:
    stages: dict[str, float] = {}
    for iteration in timed:
        for name, value in iteration.stage_seconds.items():
            stages[name] = stages.get(name, 0.0) + value / len(timed)
    return stages


def add_distributed(record: Record, details: list[dict[str, Any]]) -> None:
    """Per iteration: compute = wall − communication on each rank; the slowest rank's compute sets the
    pace, and communication is that rank's: the others' includes waiting for it (load imbalance), so
    compute + communication is the iteration's critical path. Medians over the timed iterations."""
    record.per_rank = details
    record.bytes_reduced_per_iteration = float(details[0]["bytes_reduced_per_iteration"])
    record.allreduce_calls_per_iteration = float(details[0].get("allreduce_calls_per_iteration", 0.0))
    walls = np.array([d["iteration_seconds"] for d in details])            # (ranks, iterations)
    if walls.size == 0:
        return
    communication = np.array([d["communication_seconds"] for d in details])
    compute = walls - communication
    slowest = compute.argmax(axis=0)
    record.compute_seconds = float(np.median(compute.max(axis=0)))
    record.communication_seconds = float(np.median(communication[slowest, np.arange(compute.shape[1])]))
    record.load_imbalance = float(np.median(compute.max(axis=0) / np.maximum(compute.mean(axis=0), 1e-12)))


def add_memory(record: Record, details: list[dict[str, Any]], prediction: Any, on_device: bool,
                limit_bytes: int | None) -> None:
    """The largest rank's footprint (device peak on a GPU, host peak − baseline on a CPU) vs the model."""
    measured = [d["device_peak_bytes"] if on_device else d["host_algorithm_bytes"] for d in details]
    largest = max((m for m in measured if m), default=None)
    rank0 = details[0]
    record.memory = {
        "host_baseline_bytes": rank0["host_baseline_bytes"], "host_peak_bytes": rank0["host_peak_bytes"],
        "host_algorithm_bytes": max((d["host_algorithm_bytes"] for d in details if d["host_algorithm_bytes"]),
                                    default=None),
        "device_peak_bytes": max((d["device_peak_bytes"] for d in details if d["device_peak_bytes"]), default=None),
        "per_rank_bytes": measured, "predicted_bytes": prediction.total_bytes,
        "predicted_host_bytes": prediction.host_bytes, "predicted_terms": prediction.terms,
        "limit_bytes": limit_bytes,
        "measured_over_predicted": (largest / prediction.total_bytes) if largest and all(measured) else None,
    }


# --- the process's own memory ------------------------------------------------------------------------
