"""Repeats of one configuration, summarised: median and spread, validation, FOMs, noise.

A configuration is what a procurement comparison compares: machine × dataset × engine × backend ×
threads × ranks. Its repeats (fresh processes, run rules) give the median and the spread; only runs
that passed validation enter its figures of merit; it is *noisy* when any repeat was flagged or the
repeats spread more than the documented limit (ptybench.machine_load).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from typing import Any

from ptybench.machine import machine_fingerprint, machine_name
from ptybench.machine_load import MachineJitter, iteration_spread, machine_jitter, repeat_spread
from ptybench.record import Record, as_record


def backend_label(record: Record | Mapping[str, Any]) -> str:
    record = as_record(record)
    return record.backend + (f":{record.device}" if record.device else "")


def threads_of(record: Record) -> int | None:
    """The threads the backend reported using (else the threads asked for)."""
    return (record.backend_info or {}).get("threads") or record.threads


def configuration_key(record: Record | Mapping[str, Any]) -> tuple:
    record = as_record(record)
    return (machine_name(record.machine), record.dataset, record.engine, backend_label(record), threads_of(record),
            record.ranks or 1)


def _median(values: list[Any]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def _result(record: Record) -> str | None:
    return (record.validation or {}).get("result")


def summarise(records: Iterable[Record | Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per configuration, in a stable order (machine, dataset size, engine, backend)."""
    records = [as_record(record) for record in records]
    groups: dict[tuple, list[Record]] = {}
    for record in records:
        groups.setdefault(configuration_key(record), []).append(record)
    jitter = machine_jitter(records, configuration_key)
    rows = []
    for key, runs in groups.items():
        machine, dataset, engine, backend, threads, ranks = key
        ok = [r for r in runs if r.status == "ok"]
        passed = [r for r in ok if _result(r) == "pass"]
        results = [_result(r) for r in runs]
        seconds = [r.seconds_per_iteration for r in ok if r.seconds_per_iteration]
        spread = repeat_spread(seconds)
        reasons = sorted({reason for r in runs for reason in (r.noisy or [])})
        normal = jitter.get(machine) or MachineJitter(machine, 0, None, None)
        for r in ok:
            own = iteration_spread(r)
            if own is not None and own > normal.iteration_limit():
                reasons.append(f"repeat {r.repeat}: iterations spread {own:.0%} (IQR/median; this machine's normal "
                               f"{normal.iteration_spread or 0:.0%}, limit {normal.iteration_limit():.0%})")
        if spread is not None and spread > normal.repeat_limit():
            reasons.append(f"repeats spread {spread:.0%} ((max − min)/median; this machine's normal "
                           f"{normal.repeat_spread or 0:.0%}, limit {normal.repeat_limit():.0%})")
        info = runs[0].dataset_info or {}
        foms = [r.fom for r in passed if r.fom]
        rows.append({
            "machine": machine, "fingerprint": machine_fingerprint(runs[0].machine),
            "dataset": dataset, "engine": engine, "backend": backend, "threads": threads, "ranks": ranks,
            "n_frames": info.get("n_frames"), "detector": info.get("height"),
            "repeats": len(runs), "ok": len(ok), "passed": len(passed),
            "failed": sum(result == "fail" for result in results),
            "unvalidated": sum(result == "none" for result in results),
            "seconds_per_iteration": _median(seconds), "seconds_min": min(seconds) if seconds else None,
            "seconds_max": max(seconds) if seconds else None, "repeat_spread": spread,
            "object_error": _median([r.object_error for r in ok]),
            "threshold": (runs[0].validation or {}).get("threshold"),
            "fom_throughput": _median([f["throughput"] for f in foms]),
            "fom_seconds_to_quality": _median([f["seconds_to_quality"] for f in foms]),
            "fom_iterations_to_quality": _median([f["iterations_to_quality"] for f in foms]),
            "fom_live_rate_hz": _median([f["live_rate_hz"] for f in foms]),
            "memory_measured_bytes": _median([measured_memory(r) for r in ok]),
            "memory_predicted_bytes": _median([(r.memory or {}).get("predicted_bytes") for r in runs]),
            "tier": "optimized" if any(r.tier == "optimized" for r in runs) else (runs[0].tier or "?"),
            "tier_reasons": sorted({reason for r in runs for reason in (r.tier_reasons or [])}),
            "noisy": reasons, "statuses": sorted({r.status for r in runs}),
            "messages": sorted({r.message.splitlines()[0] for r in runs if r.status != "ok" and r.message}),
        })
    return sorted(rows, key=lambda row: (row["machine"], row["detector"] or 0, row["n_frames"] or 0,
                                         row["engine"], row["backend"], str(row["threads"])))


def measured_memory(record: Record) -> float | None:
    memory = record.memory or {}
    return memory.get("device_peak_bytes") or memory.get("host_algorithm_bytes")
