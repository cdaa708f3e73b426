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
            "device": runs[0].device, "tier": _worst_tier(runs), "disk": next((r.disk for r in runs if r.disk), None),
        } for (pixels, frames), runs in sorted(sizes.items())]
    return ladders


def _median(values: list[Any]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if len(present) == len(values) and present else None


def _worst_tier(runs: list[Record]) -> str:
    return "optimized" if any(r.tier == "optimized" for r in runs) else "baseline"


@dataclass(frozen=True)
class FrameCost:
    """Seconds per iteration at the target's frame size = per_frame·N + per_object_pixel·(object pixels): the
    engines' work is per frame (propagations, overlaps) plus per object pixel (the object update's division)."""

    per_frame: float
    per_object_pixel: float

    def __call__(self, frames: float, object_pixels: float) -> float:
        return self.per_frame * frames + self.per_object_pixel * object_pixels


def target_points(records: Iterable[Record | Mapping[str, Any]], frame_pixels: int) -> dict[tuple, list[dict]]:
    """Runs measured at the target's frame size (any N), by setup: one point per run (each repeat a fresh
    process), its median s/iter with the frames and object pixels it had."""
    found: dict[tuple, list[dict]] = {}
    for record in map(as_record, records):
        info = record.dataset_info or {}
        if record.status != "ok" or not record.seconds_per_iteration or (record.validation or {}).get(
                "result") == "fail" or info.get("height", 0) * info.get("width", 0) != frame_pixels:
            continue
        found.setdefault(setup_key(record), []).append({
            "frames": float(info["n_frames"]), "object_pixels": float(info["object_height"] * info["object_width"]),
            "seconds": float(record.seconds_per_iteration), "repeat": record.repeat, "machine": record.machine or {},
            "device": record.device, "backend": record.backend, "disk": record.disk, "residency": record.residency})
    return found


def typical_runs(points: list[dict]) -> list[dict]:
    """One point per N: the median of the runs' s/iter there. A forecast predicts what a run will take, and a run
    does not get to pick a fast process: on the shared box a quarter of the processes run 1.3–2× slow, and keeping
    only the fastest at each N (the gate's rule, which was used here until 2026-12-07) forecast DM on the seed at
    0.0055 s/frame·it against 0.0070–0.0076 measured on all 2552 frames. The median is moved by neither one slow
    nor one fast process among three."""
    by_frames: dict[float, list[dict]] = {}
    for point in points:
        by_frames.setdefault(point["frames"], []).append(point)
    return [{**group[0], "seconds": float(np.median([p["seconds"] for p in group]))} for group in by_frames.values()]


def fit_frame_cost(points: list[dict]) -> FrameCost:
    """Non-negative least squares of s/iter on (N, object pixels) over every run; with one N measured the object
    term cannot be told from the frames' and is left out (cost ∝ N, said in the row)."""
    from scipy.optimize import nnls

    frames = np.array([p["frames"] for p in points])
    if len(set(frames)) < 2:
        return FrameCost(float(np.median([p["seconds"] / p["frames"] for p in points])), 0.0)
    design = np.stack([frames, [p["object_pixels"] for p in points]], axis=1)
    seconds = np.array([p["seconds"] for p in points])
    scale = design.max(axis=0)
    solution, _ = nnls(design / scale, seconds)
    return FrameCost(float(solution[0] / scale[0]), float(solution[1] / scale[1]))


def bootstrap_interval(points: list[dict], frames: float, object_pixels: float, resamples: int = 2000,
                       seed: int = 0, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the prediction, resampling the runs at each N (the repeats are the uncertainty)."""
    rng = np.random.default_rng(seed)
    by_frames: dict[float, list[dict]] = {}
    for point in points:
        by_frames.setdefault(point["frames"], []).append(point)
    predictions = []
    for _ in range(resamples):
        sample = [group[i] for group in by_frames.values() for i in rng.integers(0, len(group), len(group))]
        predictions.append(fit_frame_cost(typical_runs(sample))(frames, object_pixels))
    tail = (1 - confidence) / 2
    low, high = np.quantile(predictions, [tail, 1 - tail])
    return float(low), float(high)


def forecast(records: list[Record | dict[str, Any]], target: Any, projections: int, rates: list[float],
             target_name: str = "target") -> list[dict[str, Any]]:
    """One row per setup: the target's time, memory, devices, FOM-S and live verdict.

    Time per iteration comes from runs at the target's own frame size where there are any (only N is
    extrapolated, linearly: ``FrameCost``, interval from the repeats), else from the ladder's power law in
    (D², N) (extrapolated in both, ± from the hold-out); where both exist the ladder's figure is kept beside the
    other as a cross-check. Iterations to ε come from the ladder's largest validated size."""
    from ptybench.memory_model import Geometry

    geometry = target if isinstance(target, Geometry) else Geometry.of(target)
    target_pixels = geometry.frame_shape[0] * geometry.frame_shape[1]
    object_pixels = float(geometry.object_shape[0] * geometry.object_shape[1])
    ladders = ladder_points(records)
    at_target = target_points(records, target_pixels)
    rows = []
    for setup in sorted(set(ladders) | set(at_target), key=lambda key: tuple(map(str, key))):
        row = _forecast_row(setup, ladders.get(setup, []), at_target.get(setup, []), geometry, object_pixels,
                            projections, rates, target_name)
        if row is not None:
            rows.append(row)
    return rows


def _forecast_row(setup: tuple, ladder: list[dict], own: list[dict], geometry: Any, object_pixels: float,
                  projections: int, rates: list[float], target_name: str) -> dict[str, Any] | None:
    from ptybench.memory_model import predict_memory, ranks_needed

    machine, backend, engine, threads = setup
    n_target = float(geometry.n_frames)
    target_pixels = float(geometry.frame_shape[0] * geometry.frame_shape[1])
    side = geometry.frame_shape[0]
    fit = fit_power_law(ladder) if ladder else None
    ladder_seconds = fit(target_pixels, n_target) if fit else None
    check = hold_out(ladder) if fit else None
    reference = max(ladder, key=lambda point: (point["pixels"], point["frames"])) if ladder else None
    source = reference or own[0]
    device, backend_name = source["device"], source["backend"]
    capacity = _capacity(source)
    memory = predict_memory(geometry, engine, backend_name, None, 1, device, available_bytes=capacity) \
        if capacity else None
    own, other = by_residency(own, memory.residency if memory else None)
    other_seconds = fit_frame_cost(typical_runs(other))(n_target, object_pixels) / n_target if other else None
    if own:
        cost = fit_frame_cost(typical_runs(own))
        per_iteration = cost(n_target, object_pixels)
        low, high = bootstrap_interval(own, n_target, object_pixels)
        seconds = per_iteration / n_target
        measured_frames = sorted({int(p["frames"]) for p in own})
        runs = {n: sum(p["frames"] == n for p in own) for n in measured_frames}
        method = "target frame size"
        measured = (f"{side}² at N = {', '.join(f'{n} ({runs[n]} runs)' for n in measured_frames)}"
                    + ", the median of each N's runs"
                    + (", per-frame arrays on disk (as the target needs here)"
                       if all(p.get("residency") == "disk" for p in own) else "")
                    + ("; cost ∝ N assumed (one N)" if len(measured_frames) < 2 else ""))
        largest = max(measured_frames)
        extrapolated = (f"N {largest} → {int(n_target)} ({n_target / largest:.3g}×)" if n_target > largest
                        else "nothing (the target's N was measured)")
        interval = (low / per_iteration, high / per_iteration)
        uncertainty = max(high / per_iteration - 1, 1 - low / per_iteration)
    elif fit:
        seconds = ladder_seconds
        method = "ladder"
        biggest = max(ladder, key=lambda point: (point["pixels"], point["frames"]))
        measured = (f"detector {math.isqrt(int(min(p['pixels'] for p in ladder)))}²–"
                    f"{math.isqrt(int(biggest['pixels']))}², N {int(min(p['frames'] for p in ladder))}–"
                    f"{int(max(p['frames'] for p in ladder))}")
        extrapolated = (f"detector side {math.isqrt(int(biggest['pixels']))} → {side} "
                        f"({math.sqrt(target_pixels / biggest['pixels']):.3g}×) and N → {int(n_target)}")
        uncertainty = abs(check["relative_error"]) if check else None
        interval = (1 - uncertainty, 1 + uncertainty) if uncertainty is not None else None
    else:
        return None
    reached = bool(reference and reference["iterations_to_quality"] is not None)
    iterations = (reference["iterations_to_quality"] if reached else reference["iterations_run"]) if reference \
        else None
    projection = geometry.n_frames * iterations * seconds if iterations else None
    live_rate = 1.0 / (iterations * seconds) if iterations else None
    memory_devices = ranks_needed(geometry, engine, backend_name, capacity, device=device) if capacity else None
    disk_seconds = _disk_seconds(memory, ladder + own)
    if disk_seconds is not None and disk_seconds > seconds * n_target:  # the disk, not the compute, sets the pace
        seconds = disk_seconds / n_target
        projection = geometry.n_frames * iterations * seconds if iterations else None
        live_rate = 1.0 / (iterations * seconds) if iterations else None
    verdicts = {}
    for rate in rates:
        if live_rate is None:
            verdicts[_rate_label(rate)] = {"keeps_up": False, "devices": None}
            continue
        devices = max(max(1, math.ceil(rate / live_rate)), memory_devices or 1)
        verdicts[_rate_label(rate)] = {"keeps_up": devices == 1, "devices": devices}
    return {
        "label": "ESTIMATE", "target": target_name, "machine": machine, "backend": backend, "engine": engine,
        "threads": threads, "tier": reference["tier"] if reference else "baseline", "points": len(ladder) + len(own),
        "method": method, "measured": measured, "extrapolated": extrapolated, "interval": interval,
        "fit": {"a": fit.a, "p": fit.p, "q": fit.q} if fit else None, "hold_out": check, "uncertainty": uncertainty,
        "ladder_seconds_per_frame_iteration": ladder_seconds,
        "ladder_over_target": ladder_seconds / seconds if ladder_seconds and method != "ladder" else None,
        "extrapolation": math.sqrt(target_pixels / reference["pixels"]) if reference else 1.0,
        "seconds_per_frame_iteration": seconds, "seconds_per_iteration": seconds * n_target,
        "iterations": iterations, "epsilon_reached": reached,
        "seconds_per_projection": projection, "projections": projections,
        "tomogram_seconds": projection * projections if projection else None, "live_rate_hz": live_rate,
        "memory_bytes": memory.total_bytes if memory else None, "memory_capacity_bytes": capacity,
        "memory_devices": memory_devices, "rates": verdicts,
        "residency": memory.residency if memory else None, "disk_seconds_per_iteration": disk_seconds,
        "other_residency": ({"residency": other[0]["residency"], "seconds_per_frame_iteration": other_seconds}
                            if other else None),
    }


def by_residency(points: list[dict], residency: str | None) -> tuple[list[dict], list[dict]]:
    """The target-size runs measured with the residency the target will have (the memory model's, on this setup's
    memory), and the others. A target at the edge of a machine's memory is measured both ways
    (ptybench/workload.py): DM on the seed needs 18.8 GB of the 24 GB box and ran in memory at 0.0070 s/frame·it,
    with its exit waves on disk at 0.014 when less memory was free, so the forecast takes the runs of the
    residency it predicts and shows the other beside it."""
    matching = [point for point in points if point.get("residency") == residency]
    if not matching or len(matching) == len(points):
        return points, []
    return matching, [point for point in points if point.get("residency") != residency]


def _disk_seconds(memory: Any, points: list[dict[str, Any]]) -> float | None:
    """The least time an iteration's scratch traffic takes at the disk bandwidth the setup's records measured
    (residency "disk" at the target); None when the target fits memory or no record measured the disk."""
    if memory is None or not (memory.disk_read_bytes or memory.disk_write_bytes):
        return None
    disks = [point["disk"] for point in points if point.get("disk") and point["disk"].get("disk_read_bytes_per_second")]
    if not disks:
        return None
    read = float(np.median([disk["disk_read_bytes_per_second"] for disk in disks]))
    write = float(np.median([disk["disk_write_bytes_per_second"] for disk in disks]))
    return memory.disk_read_bytes / read + memory.disk_write_bytes / write


def _capacity(point: dict[str, Any]) -> int | None:
    """The memory one device of this setup has: GPU memory for a device backend, else the host's."""
    machine = point["machine"]
    if str(point["device"] or "").startswith("cuda") or point["backend"] == "cupy":
        return machine.get("gpu_memory_bytes")
    return machine.get("memory_limit_bytes") or machine.get("memory_bytes")  # a cgroup's limit, where one was set


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


#: Where a run kept its per-frame arrays, in words.
_PLACES = {"resident": "in memory", "disk": "with their arrays on disk", "streamed": "streamed to the device",
           "device": "on the device"}


def format_forecast(rows: list[dict[str, Any]]) -> str:
    """The text table, then for each row what was measured, what extrapolated, and the ladder's cross-check."""
    if not rows:
        return ("(no forecast: no validated records at the target's frame size or at two or more detector sizes; "
                "`ptybench procure --profile quick` measures both)")
    rates = list(rows[0]["rates"])
    headers = ["machine", "backend", "engine", "thr", "s/frame·it", "interval", "from", "iters", "per projection",
               "tomogram", "memory GB", "FOM-S Hz", *[f"@{rate}" for rate in rates]]
    table = []
    for row in rows:
        interval = (f"{row['interval'][0] - 1:+.0%}/{row['interval'][1] - 1:+.0%}" if row["interval"] else "n/a")
        iterations = ("?" if row["iterations"] is None
                      else f"{row['iterations']:.0f}" + ("" if row["epsilon_reached"] else "*"))
        table.append([row["machine"], row["backend"], row["engine"], str(row["threads"] or ""),
                      f"{row['seconds_per_frame_iteration']:.3g}", interval,
                      "target size" if row["method"] == "target frame size" else "ladder", iterations,
                      format_duration(row["seconds_per_projection"]) if row["seconds_per_projection"] else "?",
                      format_duration(row["tomogram_seconds"]) if row["tomogram_seconds"] else "?",
                      f"{row['memory_bytes'] / 1e9:.1f}" if row["memory_bytes"] else "?",
                      f"{row['live_rate_hz']:.3g}" if row["live_rate_hz"] else "?",
                      *["keeps up" if v["keeps_up"] else (f"{v['devices']} devices" if v["devices"] else "?")
                        for v in row["rates"].values()]])
    lines = [text_table(headers, table), ""]
    for row in rows:
        name = f"{row['machine']} {row['backend']} {row['engine']}"
        lines.append(f"{name}: measured {row['measured']}; extrapolated {row['extrapolated']}")
        if row.get("residency") == "disk":
            lines.append("  per-frame arrays on disk at the target (they do not fit this machine's memory): "
                         + ("no record measured the disk, so its I/O is not priced" if row["disk_seconds_per_iteration"]
                            is None else f"at least {row['disk_seconds_per_iteration']:.3g} s of disk I/O per iteration"
                            + (", more than the compute: the disk sets the pace" if row["disk_seconds_per_iteration"]
                               >= row["seconds_per_iteration"] * 0.999 else ", hidden behind the compute at best")))
        if row.get("other_residency"):
            other = row["other_residency"]
            seconds = other["seconds_per_frame_iteration"]
            lines.append(f"  at the edge of this machine's memory (needs {row['memory_bytes'] / 1e9:.1f} GB of "
                         f"{row['memory_capacity_bytes'] / 1e9:.1f}), measured both ways: this row from the runs "
                         f"{_PLACES[row['residency']]}, {seconds:.3g} s/frame·it from those "
                         f"{_PLACES[other['residency']]} ({seconds / row['seconds_per_frame_iteration']:.2f}×)")
        check = row["hold_out"]
        if row["ladder_over_target"]:
            lines.append(f"  cross-check: the ladder's power law gives {row['ladder_seconds_per_frame_iteration']:.3g}"
                         f" s/frame·it, {row['ladder_over_target']:.2f}× this"
                         + (f" (its hold-out: {check['relative_error']:+.0%} at {check['held_out']})" if check else ""))
        elif check:
            lines.append(f"  hold-out: fitted without {check['held_out']}, predicted {check['predicted_seconds']:.3g} "
                         f"s/frame·it, measured {check['measured_seconds']:.3g} ({check['relative_error']:+.0%})")
    lines.append("ESTIMATE. interval: 95 % bootstrap over the repeats for 'target size' rows, the hold-out error for "
                 "'ladder' rows; devices assume perfect scaling and include the memory model's needs; iterations to "
                 "ε from the largest validated ladder size (* = ε not reached: the iterations run, a lower bound; "
                 "? = no ladder measured).")
    return "\n".join(lines)
