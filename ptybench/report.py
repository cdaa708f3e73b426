"""Results as tables and figures: the summary a sweep prints, and time/memory vs N and detector size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ptybench.text_table import text_table

#: Summary columns: (header, DataFrame column or derived name, format).
SUMMARY_COLUMNS = (
    ("machine", "machine_label", "{}"), ("dataset", "dataset", "{}"), ("engine", "engine", "{}"),
    ("backend", "backend_label", "{}"),
    ("fpb", "frames_per_block_used", "{:.0f}"), ("thr", "threads_used", "{:.0f}"), ("status", "status", "{}"),
    ("s/iter", "seconds_per_iteration", "{:.4g}"), ("spread", "spread", "{}"),
    ("vs 1 thr", "thread_speedup", "{:.2f}×"),
    ("frame·it/s", "frame_iterations_per_second", "{:.3g}"), ("FFT×", "fft_floor_ratio", "{:.1f}"),
    ("mem MB", "memory_measured_mb", "{:.1f}"), ("model MB", "memory_predicted_mb", "{:.1f}"),
    ("meas/model", "memory.measured_over_predicted", "{:.2f}"),
    ("obj err", "object_error", "{:.4f}"), ("R", "r_factor", "{:.4f}"),
    ("t→target s", "seconds_to_target", "{:.3g}"), ("valid", "validation.result", "{}"),
    ("flags", "flags", "{}"),
)


def summary_frame(frame: Any) -> Any:
    """Add the derived columns of the summary (backend label, throughput, memory in MB = 10⁶ bytes, as
    everywhere in ptybench: --memory-limit, plan and dataset sizes)."""
    frame = frame.copy()
    if frame.empty:
        return frame

    def column(name: str) -> Any:
        return frame[name] if name in frame else np.full(len(frame), np.nan)

    device = column("device").astype(object)
    frame["backend_label"] = [b if d is None or (isinstance(d, float) and np.isnan(d)) else f"{b}:{d}"
                              for b, d in zip(frame["backend"], device, strict=True)]
    seconds = column("seconds_per_iteration").astype(float)
    frame["frame_iterations_per_second"] = column("dataset_info.n_frames").astype(float) / seconds
    q25, q75 = column("seconds_q25").astype(float), column("seconds_q75").astype(float)
    frame["spread"] = [f"{a:.3g}–{b:.3g}" if np.isfinite(a) and np.isfinite(b) else ""
                       for a, b in zip(q25, q75, strict=True)]
    device_peak = column("memory.device_peak_bytes").astype(float)
    host_algorithm = column("memory.host_algorithm_bytes").astype(float)
    frame["memory_measured_mb"] = np.where(np.isfinite(device_peak), device_peak, host_algorithm) / 1e6
    frame["memory_predicted_mb"] = column("memory.predicted_bytes").astype(float) / 1e6
    frame["threads_used"] = column("backend_info.threads").astype(float)
    labels = column("machine.label").astype(object)
    hosts = column("machine.hostname").astype(object)
    frame["machine_label"] = [label if isinstance(label, str) else host if isinstance(host, str) else ""
                              for label, host in zip(labels, hosts, strict=True)]
    noisy = column("noisy").astype(object)
    tiers = column("tier").astype(object)
    frame["flags"] = [" ".join(flag for flag, on in (("noisy", isinstance(n, list) and bool(n)),
                                                     ("optimized", t == "optimized")) if on)
                      for n, t in zip(noisy, tiers, strict=True)]
    frame["thread_speedup"] = _thread_speedup(frame, seconds)
    return frame


def _thread_speedup(frame: Any, seconds: Any) -> np.ndarray:
    """s/iter on one thread over s/iter here, for points also measured on one thread (sweep --threads 1,2):
    how much a second core buys each engine."""
    names = ["dataset", "engine", "backend_label", "frames_per_block_used", "iterations",
             *sorted(c for c in frame.columns if str(c).startswith("parameters"))]
    columns = [frame[name].astype(str).tolist() if name in frame else [""] * len(frame) for name in names]
    keys = list(zip(*columns, strict=True))
    ok = (frame["status"] == "ok").to_numpy()
    single = {key: value for key, value, threads, good in
              zip(keys, seconds, frame["threads_used"], ok, strict=True) if threads == 1 and good}
    return np.array([single.get(key, np.nan) / value if good else np.nan
                     for key, value, good in zip(keys, seconds, ok, strict=True)])


def format_table(frame: Any) -> str:
    """A plain-text table, one row per record; missing values are blank, failures show their status."""
    frame = summary_frame(frame)
    if frame.empty:
        return "(no records)"
    frame = frame.sort_values("machine_label", kind="stable")  # records from several machines: grouped
    headers = [header for header, _, _ in SUMMARY_COLUMNS]
    rows = []
    for _, record in frame.iterrows():
        row = []
        for _, name, fmt in SUMMARY_COLUMNS:
            value = record.get(name)
            missing = value is None or (isinstance(value, float) and not np.isfinite(value))
            row.append("" if missing else fmt.format(value))
        rows.append(row)
    lines = [text_table(headers, rows)]
    failures = frame[frame["status"] != "ok"]
    for _, record in failures.iterrows():
        message = str(record.get("message") or "").splitlines()
        lines.append(f"  {record['status']}: {record['dataset']} {record['engine']} {record['backend_label']}: "
                     f"{message[0] if message else ''}")
    for _, record in frame.iterrows():
        reasons = record.get("noisy")
        if isinstance(reasons, list) and reasons:
            lines.append(f"  noisy: {record['machine_label']} {record['dataset']} {record['engine']} "
                         f"{record['backend_label']}: {'; '.join(reasons)}")
    return "\n".join(lines)


def plot_scaling(frame: Any, out: str | Path) -> Path:
    """Time per iteration and memory vs N (frames) and vs detector size, one line per engine/backend.

    Out-of-memory points are drawn as crosses at the size that failed: the memory wall, visible.
    """
    from matplotlib.figure import Figure  # not pyplot: a library must not change a notebook's backend

    frame = summary_frame(frame)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(11, 8), layout="constrained")
    axes = figure.subplots(2, 2)
    if frame.empty:
        figure.savefig(out, dpi=110)
        return out
    frame["n_frames"] = frame["dataset_info.n_frames"].astype(float)
    frame["detector"] = frame["dataset_info.height"].astype(float)
    panels = (("n_frames", "seconds_per_iteration", axes[0, 0], "frames N", "s / iteration"),
              ("detector", "seconds_per_iteration", axes[0, 1], "detector size (pixels per side)", "s / iteration"),
              ("n_frames", "memory_measured_mb", axes[1, 0], "frames N", "algorithm memory (MB)"),
              ("detector", "memory_measured_mb", axes[1, 1], "detector size (pixels per side)",
               "algorithm memory (MB)"))
    # colour = engine, line style = backend, marker = the size held fixed along the line
    engines = sorted(frame["engine"].unique())
    backends = sorted(frame["backend_label"].unique())
    colours = {engine: f"C{i % 10}" for i, engine in enumerate(engines)}
    styles = {backend: ("-", "--", ":", "-.")[i % 4] for i, backend in enumerate(backends)}
    markers = "osD^v<>"
    for x_name, y_name, axis, x_label, y_label in panels:
        other = "detector" if x_name == "n_frames" else "n_frames"
        other_values = sorted(frame[other].unique())
        for (engine, backend), group in frame.groupby(["engine", "backend_label"]):
            # one line per value of the other size, so each line varies one size only
            for other_value, line in group.groupby(other):
                ok = line[line["status"] == "ok"].sort_values(x_name)
                label = f"{engine} {backend} ({'N' if other == 'n_frames' else 'det'}={other_value:.0f})"
                marker = markers[other_values.index(other_value) % len(markers)]
                if len(ok):
                    axis.plot(ok[x_name], ok[y_name], marker=marker, color=colours[engine],
                              linestyle=styles[backend], label=label)
                failed = line[line["status"] == "oom"]
                if len(failed):
                    axis.plot(failed[x_name], np.full(len(failed), axis.get_ylim()[1]), "x", color="red",
                              label=f"{engine} {backend}: out of memory")
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel(x_label)
        axis.set_ylabel(y_label)
        axis.grid(True, which="both", alpha=0.3)
        if y_name == "memory_measured_mb" and "memory_predicted_mb" in frame:
            model = frame[frame["status"] == "ok"].sort_values(x_name)
            axis.plot(model[x_name], model["memory_predicted_mb"], "k+", label="memory model")
    for axis in (axes[0, 0], axes[1, 0]):
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7)
    figure.suptitle("ptybench: time and memory vs problem size")
    figure.savefig(out, dpi=110)
    return out


def plot_scaling_curves(rows: list[dict[str, Any]], mode: str, out: str | Path, amdahl: Any = None,
                        prediction: list[dict[str, float]] | None = None, title: str = "") -> Path:
    """Strong: speedup vs ranks with ideal and fitted Amdahl; weak: efficiency vs ranks. Right: compute
    and communication seconds per iteration as stacked bars. Predicted points are hollow and labelled."""
    from matplotlib.figure import Figure  # not pyplot: a library must not change a notebook's backend

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    (left, right) = figure.subplots(1, 2)
    ranks = np.array([row["ranks"] for row in rows], dtype=float)
    top = max([*ranks, *[p["ranks"] for p in prediction or []]], default=1)
    grid = np.linspace(1, top, 200)
    if mode == "strong":
        left.plot(grid, grid, "k:", label="ideal")
        left.plot(ranks, [row["speedup"] for row in rows], "o-", label="measured")
        if amdahl is not None:
            left.plot(grid, amdahl.speedup(grid), "--", label=f"Amdahl fit, s = {amdahl.serial_fraction:.3f}")
        if prediction:
            ks = [p["ranks"] for p in prediction]
            speedups = np.array([p["speedup"] for p in prediction])
            left.plot(ks, speedups, "o", mfc="none", label="prediction (per-stage model)")
            uncertainty = prediction[0].get("uncertainty")
            if uncertainty:  # the hold-out error as a band: speedup = T1 / (T·(1 ± u))
                left.fill_between(ks, speedups / (1 + uncertainty), speedups / max(1 - uncertainty, 1e-3),
                                  alpha=0.2, label=f"hold-out uncertainty ±{uncertainty:.0%}")
        left.set_ylabel("speedup")
    else:
        left.axhline(1.0, color="k", linestyle=":", label="ideal")
        left.plot(ranks, [row["efficiency"] for row in rows], "o-", label="measured (T₁/T_K)")
        left.set_ylabel("weak-scaling efficiency")
        left.set_ylim(0, 1.1)
    left.set_xlabel("ranks")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    labels = [str(int(k)) for k in ranks]
    compute = [row.get("compute_s") or 0.0 for row in rows]
    communication = [row.get("communication_s") or 0.0 for row in rows]
    right.bar(labels, compute, label="compute")
    right.bar(labels, communication, bottom=compute, label="communication")
    right.set_xlabel("ranks")
    right.set_ylabel("seconds per iteration (slowest rank's compute)")
    right.legend(fontsize=8)
    figure.suptitle(title or f"{mode} scaling")
    figure.savefig(out, dpi=110)
    return out
