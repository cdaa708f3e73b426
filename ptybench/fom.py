"""Figures of merit, validation and run rules: what makes a number count in a procurement comparison.

As in HPC procurement suites (a rate as the figure of merit, a validation step that makes a wrong
answer not count, run-rule tiers), defined in docs/design.md, "Procurement":

- **validation**: the run's final object error against the workload's threshold for its engine and
  size: ``pass``, ``fail`` or ``none`` (no threshold or no ground truth). Only a pass enters a FOM.
- **FOM-T** (``throughput``): frame·iterations per second over the timed iterations.
- **FOM-Q** (``seconds_to_quality``, ``iterations_to_quality``): from the initial guess to object error ε.
- **FOM-S** (``live_rate_hz``): FOM-T / I_ε, the detector frame rate this setup keeps up with: N frames
  reconstructed in the time the detector takes to record them.
- **tier**: ``baseline`` = built-in engine and backend, default implementation choices, tuned only
  through public options (frames_per_block, threads, ranks); ``optimized`` = anything else, with reasons.
"""

from __future__ import annotations

import os
from typing import Any

from ptybench.engines.registry import engine_names, is_builtin_engine

#: Environment variables that pick an implementation; a non-default value makes a run "optimized".
IMPLEMENTATION_VARIABLES = {"PTYBENCH_KERNELS": "fused", "PTYBENCH_FFT": "auto"}
#: Parameters a baseline run may set: they describe the data (photons_per_unit) or what is measured around the
#: algorithm (evaluate_every: how often the returned model is scored, timed apart), not a tuning of the algorithm.
DATA_PARAMETERS = ("photons_per_unit", "evaluate_every")
#: Where the per-frame arrays live: a placement choice like frames_per_block, which the engines also make
#: themselves (the procurement workload measures a target at the edge of memory both ways), not a tuning.
PLACEMENT_PARAMETERS = ("residency", "scratch_directory")
BUILT_IN_BACKENDS = ("numpy", "torch", "cupy")


def validation(object_error: float | None, threshold: float | None, status: str = "ok") -> dict[str, Any]:
    """Pass when the run ended ok with object error ≤ threshold; ``none`` when either is unknown."""
    if status != "ok":
        result = "fail"
    elif threshold is None or object_error is None:
        result = "none"
    else:
        result = "pass" if object_error <= threshold else "fail"
    return {"threshold": threshold, "object_error": object_error, "result": result}


def figures_of_merit(record: dict[str, Any]) -> dict[str, Any] | None:
    """FOM-T, FOM-Q and FOM-S of a record whose validation passed; None otherwise (it never counts)."""
    if (record.get("validation") or {}).get("result") != "pass":
        return None
    seconds = record.get("seconds_per_iteration")
    frames = (record.get("dataset_info") or {}).get("n_frames")
    if not seconds or not frames:
        return None
    throughput = frames / seconds
    iterations = record.get("iterations_to_target")
    return {"epsilon": record.get("target_error"), "throughput": throughput,
            "seconds_to_quality": record.get("seconds_to_target"), "iterations_to_quality": iterations,
            "live_rate_hz": throughput / iterations if iterations else None}


def run_rules_tier(engine: str, backend: str, parameters: dict[str, Any], machine: dict[str, Any] | None,
                   environment: dict[str, str] | None = None) -> tuple[str, list[str]]:
    """("baseline" | "optimized", reasons): anything beyond the public tuning options is optimized."""
    environment = os.environ if environment is None else environment
    reasons = []
    if engine not in engine_names() or not is_builtin_engine(engine):
        reasons.append(f"engine {engine!r} is not built in")
    if backend not in BUILT_IN_BACKENDS:
        reasons.append(f"backend {backend!r} is not built in")
    tuned = sorted(key for key in parameters if key not in DATA_PARAMETERS + PLACEMENT_PARAMETERS)
    if tuned:
        reasons.append(f"engine parameters changed: {', '.join(tuned)}")
    for name, default in IMPLEMENTATION_VARIABLES.items():
        if environment.get(name, default) != default:
            reasons.append(f"{name}={environment[name]}")
    commit = (machine or {}).get("git_commit") or ""
    if commit.endswith("-dirty"):
        reasons.append("ptybench source modified (git tree dirty)")
    return ("optimized" if reasons else "baseline"), reasons
