"""Repeats of one configuration, summarised: median and spread, validation, FOMs, noise.

A configuration is what a procurement comparison compares: machine × dataset × engine × backend ×
threads × ranks. Its repeats (fresh processes, run rules) give the median and the spread; only runs
that passed validation enter its figures of merit; it is *noisy* when any repeat was flagged or the
repeats spread more than the documented limit (ptybench.machine_load).
"""

from __future__ import annotations

import statistics
from typing import Any

from ptybench.machine import machine_fingerprint, machine_name
from ptybench.machine_load import SPREAD, repeat_spread


def backend_label(record: dict[str, Any]) -> str:
    return record["backend"] + (f":{record['device']}" if record.get("device") else "")


def configuration_key(record: dict[str, Any]) -> tuple:
    threads = (record.get("backend_info") or {}).get("threads") or record.get("threads")
    return (machine_name(record.get("machine")), record["dataset"], record["engine"], backend_label(record),
            threads, record.get("ranks") or 1)


def _median(values: list[Any]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per configuration, in a stable order (machine, dataset size, engine, backend)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(configuration_key(record), []).append(record)
    rows = []
    for key, runs in groups.items():
        machine, dataset, engine, backend, threads, ranks = key
        ok = [r for r in runs if r.get("status") == "ok"]
        passed = [r for r in ok if (r.get("validation") or {}).get("result") == "pass"]
        results = [(r.get("validation") or {}).get("result") for r in runs]
        seconds = [r["seconds_per_iteration"] for r in ok if r.get("seconds_per_iteration")]
        spread = repeat_spread(seconds)
        reasons = sorted({reason for r in runs for reason in (r.get("noisy") or [])})
        if spread is not None and spread >= SPREAD:
            reasons.append(f"repeats spread {spread:.0%} ((max − min)/median; limit {SPREAD:.0%})")
        info = (runs[0].get("dataset_info") or {})
        foms = [r["fom"] for r in passed if r.get("fom")]
        rows.append({
            "machine": machine, "fingerprint": machine_fingerprint(runs[0].get("machine")),
            "dataset": dataset, "engine": engine, "backend": backend, "threads": threads, "ranks": ranks,
            "n_frames": info.get("n_frames"), "detector": info.get("height"),
            "repeats": len(runs), "ok": len(ok), "passed": len(passed),
            "failed": sum(result == "fail" for result in results),
            "unvalidated": sum(result == "none" for result in results),
            "seconds_per_iteration": _median(seconds), "seconds_min": min(seconds) if seconds else None,
            "seconds_max": max(seconds) if seconds else None, "repeat_spread": spread,
            "object_error": _median([r.get("object_error") for r in ok]),
            "threshold": (runs[0].get("validation") or {}).get("threshold"),
            "fom_throughput": _median([f["throughput"] for f in foms]),
            "fom_seconds_to_quality": _median([f["seconds_to_quality"] for f in foms]),
            "fom_iterations_to_quality": _median([f["iterations_to_quality"] for f in foms]),
            "fom_live_rate_hz": _median([f["live_rate_hz"] for f in foms]),
            "memory_measured_bytes": _median([_measured_memory(r) for r in ok]),
            "memory_predicted_bytes": _median([(r.get("memory") or {}).get("predicted_bytes") for r in runs]),
            "tier": "optimized" if any(r.get("tier") == "optimized" for r in runs) else (runs[0].get("tier") or "?"),
            "tier_reasons": sorted({reason for r in runs for reason in (r.get("tier_reasons") or [])}),
            "noisy": reasons, "statuses": sorted({r.get("status") for r in runs}),
            "messages": sorted({(r.get("message") or "").splitlines()[0] for r in runs
                                if r.get("status") != "ok" and r.get("message")}),
        })
    return sorted(rows, key=lambda row: (row["machine"], row["detector"] or 0, row["n_frames"] or 0,
                                         row["engine"], row["backend"], str(row["threads"])))


def _measured_memory(record: dict[str, Any]) -> float | None:
    memory = record.get("memory") or {}
    return memory.get("device_peak_bytes") or memory.get("host_algorithm_bytes")
