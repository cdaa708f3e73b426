"""Forecast to a target workload from a measured ladder: time per projection, tomogram, memory, devices,
and whether a setup keeps up with a detector. Every number here is an ESTIMATE.

Time per frame·iteration is fitted, per machine × backend × engine × threads, as a power law in the
detector's pixels and the number of frames, on the validated records only (median over repeats):

    t(D², N) = exp(a) · (D²)^p · N^q        (least squares in log space; q = 0 when N was not varied)

Its uncertainty is measured, not assumed: the fit is repeated without the largest measured detector
size and asked to predict it (hold-out); the relative error of that prediction is the ± on every
forecast, with how far beyond the largest measured size the target lies (extrapolation factor).

Then for the target (N frames of D², P projections): one projection takes N · I_ε · t seconds, I_ε the
iterations the engine needed to reach ε at the largest measured size; FOM-S = 1 / (I_ε · t) frames per
second; a detector at rate R is kept up with when FOM-S ≥ R, else by ⌈R / FOM-S⌉ devices (perfect
scaling assumed, and said). Memory and the devices it needs come from the memory model (``plan``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ptybench.engines.errors import InputError
from ptybench.machine import machine_name
from ptybench.record import Record, as_record
from ptybench.text_table import text_table

#: Detector rates of interest (Hz) when none are given.
DEFAULT_RATES = (3e3, 1e4, 1.1e5)


@dataclass(frozen=True)
class PowerLaw:
    """Seconds per frame·iteration = exp(a)·pixels^p·frames^q."""

    a: float
    p: float
    q: float

    def __call__(self, pixels: float, frames: float) -> float:
        return math.exp(self.a + self.p * math.log(pixels) + self.q * math.log(frames))


def fit_power_law(points: list[dict[str, float]]) -> PowerLaw | None:
    """Least squares of log t on log pixels (and log frames when more than one N was measured);
    None when fewer than two detector sizes were measured (no slope to stand on)."""
    pixels = np.log([point["pixels"] for point in points])
    frames = np.log([point["frames"] for point in points])
    seconds = np.log([point["seconds"] for point in points])
    if len(set(pixels.round(6))) < 2:
        return None
    vary_frames = len(set(frames.round(6))) > 1 and len(points) >= 3
    columns = [np.ones_like(pixels), pixels] + ([frames] if vary_frames else [])
    solution, *_ = np.linalg.lstsq(np.stack(columns, axis=1), seconds, rcond=None)
    return PowerLaw(float(solution[0]), float(solution[1]), float(solution[2]) if vary_frames else 0.0)


def hold_out(points: list[dict[str, float]]) -> dict[str, Any] | None:
    """Refit without the largest detector size and predict it: the forecast's measured uncertainty."""
    largest = max(point["pixels"] for point in points)
    kept = [point for point in points if point["pixels"] < largest]
    fit = fit_power_law(kept)
    if fit is None:
        return None
    held = [point for point in points if point["pixels"] == largest]
    errors = [fit(point["pixels"], point["frames"]) / point["seconds"] - 1.0 for point in held]
    worst = max(range(len(errors)), key=lambda i: abs(errors[i]))
    return {"held_out": f"{math.isqrt(int(largest))}²×{int(held[worst]['frames'])}",
            "predicted_seconds": fit(held[worst]["pixels"], held[worst]["frames"]),
            "measured_seconds": held[worst]["seconds"], "relative_error": errors[worst],
            "extrapolation": math.sqrt(largest / max(point["pixels"] for point in kept))}


def setup_key(record: Record | Mapping[str, Any]) -> tuple[str, str, str, Any]:
    """What a forecast is for: machine, backend (with device), engine, threads."""
    from ptybench.configurations import backend_label, threads_of

    record = as_record(record)
    return machine_name(record.machine), backend_label(record), record.engine, threads_of(record)


def ladder_points(records: Iterable[Record | Mapping[str, Any]]) -> dict[tuple, list[dict[str, float]]]:
    """Validated records grouped by setup, one point per (detector size, N): median over repeats."""
    groups: dict[tuple, dict[tuple[int, int], list[Record]]] = {}
    for record in map(as_record, records):
        if record.status != "ok" or not record.fom:
            continue
        info = record.dataset_info or {}
        size = (info["height"] * info["width"], info["n_frames"])
        groups.setdefault(setup_key(record), {}).setdefault(size, []).append(record)
    ladders = {}
    for key, sizes in groups.items():
        ladders[key] = [{
            "pixels": float(pixels), "frames": float(frames),
            "seconds": statistics.median(1.0 / r.fom["throughput"] for r in runs),
            "iterations_to_quality": _median([r.fom["iterations_to_quality"] for r in runs]),
            "iterations_run": statistics.median(r.warmup + r.iterations for r in runs),
            "repeats": len(runs), "machine": runs[0].machine or {}, "backend": runs[0].backend,
            "device": runs[0].device, "tier": _worst_tier(runs),
        } for (pixels, frames), runs in sorted(sizes.items())]
    return ladders


def _median(values: list[Any]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if len(present) == len(values) and present else None


def _worst_tier(runs: list[Record]) -> str:
    return "optimized" if any(r.tier == "optimized" for r in runs) else "baseline"


def forecast(records: list[dict[str, Any]], target: Any, projections: int, rates: list[float],
             target_name: str = "target") -> list[dict[str, Any]]:
    """One row per setup with a fit: the target's time, memory, devices, FOM-S and live verdict."""
    from ptybench.memory_model import Geometry, predict_memory, ranks_needed

    geometry = target if isinstance(target, Geometry) else Geometry.of(target)
    target_pixels = float(geometry.frame_shape[0] * geometry.frame_shape[1])
    rows = []
    for (machine, backend, engine, threads), points in sorted(ladder_points(records).items(),
                                                              key=lambda item: tuple(map(str, item[0]))):
        fit = fit_power_law(points)
        if fit is None:
            continue
        check = hold_out(points)
        uncertainty = abs(check["relative_error"]) if check else None
        seconds = fit(target_pixels, float(geometry.n_frames))
        largest = max(points, key=lambda point: (point["pixels"], point["frames"]))
        reached = largest["iterations_to_quality"] is not None
        iterations = largest["iterations_to_quality"] if reached else largest["iterations_run"]
        projection = geometry.n_frames * iterations * seconds
        live_rate = 1.0 / (iterations * seconds)
        capacity = _capacity(largest)
        memory = predict_memory(geometry, engine, largest["backend"], None, 1, largest["device"],
                                available_bytes=capacity) if capacity else None
        memory_devices = ranks_needed(geometry, engine, largest["backend"], capacity,
                                      device=largest["device"]) if capacity else None
        verdicts = {}
        for rate in rates:
            rate_devices = max(1, math.ceil(rate / live_rate))
            devices = max(rate_devices, memory_devices or 1)
            verdicts[_rate_label(rate)] = {"keeps_up": devices == 1, "devices": devices}
        rows.append({
            "label": "ESTIMATE", "target": target_name, "machine": machine, "backend": backend, "engine": engine,
            "threads": threads, "tier": largest["tier"], "points": len(points),
            "fit": {"a": fit.a, "p": fit.p, "q": fit.q}, "hold_out": check, "uncertainty": uncertainty,
            "extrapolation": math.sqrt(target_pixels / largest["pixels"]),
            "seconds_per_frame_iteration": seconds, "iterations": iterations, "epsilon_reached": reached,
            "seconds_per_projection": projection, "projections": projections,
            "tomogram_seconds": projection * projections, "live_rate_hz": live_rate,
            "memory_bytes": memory.total_bytes if memory else None, "memory_capacity_bytes": capacity,
            "memory_devices": memory_devices, "rates": verdicts,
        })
    return rows


def _capacity(point: dict[str, Any]) -> int | None:
    """The memory one device of this setup has: GPU memory for a device backend, else the host's."""
    machine = point["machine"]
    if str(point["device"] or "").startswith("cuda") or point["backend"] == "cupy":
        return machine.get("gpu_memory_bytes")
    return machine.get("memory_bytes")


def _rate_label(rate: float) -> str:
    return f"{rate / 1e3:g}kHz" if rate >= 1e3 else f"{rate:g}Hz"


def parse_rates(text: str) -> list[float]:
    """"3kHz,10kHz,110kHz" → [3000, 10000, 110000]; a bare number is Hz."""
    rates = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        lowered = item.lower()
        scale = 1e6 if lowered.endswith("mhz") else 1e3 if lowered.endswith("khz") else 1.0
        number = lowered.removesuffix("mhz").removesuffix("khz").removesuffix("hz")
        try:
            value = float(number) * scale
        except ValueError:
            raise InputError(f"--rates: expected rates such as 3kHz,10kHz,110kHz, got {item!r}") from None
        if not value > 0:
            raise InputError(f"--rates: expected positive rates, got {item!r}")
        rates.append(value)
    if not rates:
        raise InputError(f"--rates: expected at least one rate, got {text!r}")
    return rates


def format_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.3g} h"
    return f"{seconds / 86400:.3g} d"


def format_forecast(rows: list[dict[str, Any]]) -> str:
    """The text table: every figure an ESTIMATE with its hold-out uncertainty."""
    if not rows:
        return "(no forecast: no setup has validated records at two or more detector sizes)"
    rates = list(rows[0]["rates"])
    headers = ["machine", "backend", "engine", "thr", "s/frame·it", "±", "iters", "per projection", "tomogram",
               "memory GB", "FOM-S Hz", *[f"@{rate}" for rate in rates]]
    table = []
    for row in rows:
        error = f"{row['uncertainty']:.0%}" if row["uncertainty"] is not None else "n/a"
        iterations = f"{row['iterations']:.0f}" + ("" if row["epsilon_reached"] else "*")
        table.append([row["machine"], row["backend"], row["engine"], str(row["threads"] or ""),
                      f"{row['seconds_per_frame_iteration']:.3g}", error, iterations,
                      format_duration(row["seconds_per_projection"]), format_duration(row["tomogram_seconds"]),
                      f"{row['memory_bytes'] / 1e9:.1f}" if row["memory_bytes"] else "?",
                      f"{row['live_rate_hz']:.3g}",
                      *["keeps up" if v["keeps_up"] else f"{v['devices']} devices" for v in row["rates"].values()]])
    lines = [text_table(headers, table), ""]
    for row in rows:
        check = row["hold_out"]
        if check:
            lines.append(f"hold-out {row['machine']} {row['backend']} {row['engine']}: fitted without "
                         f"{check['held_out']}, predicted {check['predicted_seconds']:.3g} s/frame·it, measured "
                         f"{check['measured_seconds']:.3g} ({check['relative_error']:+.0%}); the target is "
                         f"{row['extrapolation']:.1f}× the largest measured detector side")
    lines.append("ESTIMATE: fitted power law in detector pixels and N, uncertainty from the hold-out above; "
                 "devices assume perfect scaling over devices and include those memory needs (model); "
                 "* = ε not reached in the measured iterations: the iteration count run is used (a lower bound).")
    return "\n".join(lines)
