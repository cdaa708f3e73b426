"""``ptybench report``: one self-contained HTML page (figures embedded, opens from disk, no network).

Sections: machines side by side and their FOMs against a reference machine; validation PASS/FAIL;
time and memory against detector size and N (model marks, out-of-memory points); backends side by
side; scaling curves when multi-rank records are present; forecast and live verdict; noisy and
failed runs with their messages. Only configurations that passed validation enter FOMs and ratios.
"""

from __future__ import annotations

import base64
import html
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ptybench.configurations import summarise
from ptybench.engines.errors import InputError
from ptybench.forecast import format_duration
from ptybench.machine import machine_fingerprint, machine_name

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px;
       color: #222; line-height: 1.4; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .85em; }
th, td { border: 1px solid #ddd; padding: .25em .5em; text-align: right; vertical-align: top; }
th { background: #f3f3f3; } td.text, th.text { text-align: left; }
.pass { color: #176b2c; font-weight: 600; } .fail { color: #b00020; font-weight: 600; }
.noisy { background: #fff4d6; } .estimate { color: #7a4b00; font-weight: 600; }
.note { color: #555; font-size: .9em; } img { max-width: 100%; border: 1px solid #eee; }
"""

#: Runs after load: marks the page ready (the browser test reads it) and numbers the tables.
SCRIPT = """
document.querySelectorAll("table").forEach(function (table, index) { table.dataset.index = String(index); });
document.body.dataset.ready = "yes";
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _number(value: Any, fmt: str = "{:.3g}") -> str:
    return "" if value is None else fmt.format(value)


def _table(headers: list[str], rows: list[list[Any]], text_columns: int = 1,
           row_class: Callable[[int], str] | None = None) -> str:
    head = "".join(f'<th class="{"text" if i < text_columns else ""}">{_e(h)}</th>' for i, h in enumerate(headers))
    body = []
    for index, row in enumerate(rows):
        cells = "".join(f'<td class="{"text" if i < text_columns else ""}">{cell}</td>' for i, cell in enumerate(row))
        css = row_class(index) if row_class else ""
        body.append(f'<tr class="{css}">{cells}</tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return f'<img alt="figure" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _machines(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    machines: dict[str, dict[str, Any]] = {}
    for record in records:
        machine = record.get("machine") or {}
        machines.setdefault(machine_name(machine), machine)
    return machines


def _machines_section(machines: dict[str, dict[str, Any]], manifests: list[dict[str, Any]]) -> str:
    workloads = {m.get("machine_label"): m.get("workload_version") for m in manifests}
    headers = ["machine", "fingerprint", "CPU", "cores", "memory GB", "GPU", "Python", "NumPy", "torch", "commit",
               "workload"]
    rows = []
    for name, machine in machines.items():
        versions = machine.get("versions") or {}
        memory_gb = (machine.get("memory_bytes") or 0) / 1e9
        rows.append([_e(name), _e(machine_fingerprint(machine)), _e(machine.get("cpu", "")),
                     _e(machine.get("cores_available", "")), _number(memory_gb, "{:.1f}"),
                     _e(machine.get("gpu", "—")), _e(versions.get("python", "")), _e(versions.get("numpy", "")),
                     _e(versions.get("torch", "—")), _e((machine.get("git_commit") or "")[:12]),
                     _e(workloads.get(name, "—"))])
    return "<h2>Machines</h2>" + _table(headers, rows, text_columns=3)


def _fom_section(rows: list[dict[str, Any]], reference: str) -> str:
    machines = sorted({row["machine"] for row in rows})
    by_point: dict[tuple, dict[str, dict[str, Any]]] = {}
    size: dict[tuple, tuple] = {}
    for row in rows:
        key = (row["dataset"], row["engine"], row["backend"])
        by_point.setdefault(key, {})[row["machine"]] = row
        size[key] = (row["detector"] or 0, row["n_frames"] or 0, *key)
    headers = ["dataset", "engine", "backend"]
    for machine in machines:
        headers += [f"{machine}: FOM-T frame·it/s", "× ref", "FOM-Q s", "FOM-S Hz"]
    table_rows = []
    for (dataset, engine, backend), per_machine in sorted(by_point.items(), key=lambda item: size[item[0]]):
        base = (per_machine.get(reference) or {}).get("fom_throughput")
        cells: list[Any] = [_e(dataset), _e(engine), _e(backend)]
        for machine in machines:
            row = per_machine.get(machine) or {}
            value = row.get("fom_throughput")
            if row and not value:
                cells += ['<span class="fail">not validated</span>', "", "", ""]
                continue
            ratio = value / base if value and base else None
            cells += [_number(value), _number(ratio, "{:.2f}×"), _number(row.get("fom_seconds_to_quality")),
                      _number(row.get("fom_live_rate_hz"))]
        table_rows.append(cells)
    note = (f'<p class="note">Reference machine: <b>{_e(reference)}</b>. FOM-T: frame·iterations per second over '
            "the timed iterations; FOM-Q: seconds from the initial guess to object error ε; FOM-S: the detector "
            "frame rate this setup keeps up with (FOM-T / iterations to ε). Medians over repeats that passed "
            "validation; a configuration with none shows \"not validated\" and no ratio.</p>")
    return "<h2>Figures of merit</h2>" + note + _table(headers, table_rows, text_columns=3)


def _validation_section(rows: list[dict[str, Any]]) -> str:
    headers = ["machine", "dataset", "engine", "backend", "thr", "tier", "repeats", "passed", "s/iter median",
               "min–max", "object error", "threshold", "verdict"]
    table_rows = []
    for row in rows:
        if row["passed"] == row["repeats"]:
            verdict = '<span class="pass">PASS</span>'
        elif row["failed"]:
            verdict = f'<span class="fail">FAIL ({row["failed"]} of {row["repeats"]})</span>'
        else:
            verdict = "no threshold"
        spread = (f"{row['seconds_min']:.3g}–{row['seconds_max']:.3g}" if row["seconds_min"] is not None else "")
        table_rows.append([_e(row["machine"]), _e(row["dataset"]), _e(row["engine"]), _e(row["backend"]),
                           _e(row["threads"] or ""), _e(row["tier"]), _e(row["repeats"]), _e(row["passed"]),
                           _number(row["seconds_per_iteration"], "{:.4g}"), _e(spread),
                           _number(row["object_error"], "{:.4f}"), _number(row["threshold"], "{:.3f}"), verdict])
    noisy = [i for i, row in enumerate(rows) if row["noisy"]]
    note = ('<p class="note">Median and min–max of s/iter over the repeats (fresh processes); highlighted rows '
            "are noisy (reasons under \"Noisy and failed runs\").</p>")
    return "<h2>Validation and run-to-run spread</h2>" + note + _table(
        headers, table_rows, text_columns=6, row_class=lambda i: "noisy" if i in noisy else "")


def _size_figures(rows: list[dict[str, Any]]) -> str:
    from matplotlib.figure import Figure  # not pyplot: a library must not change a notebook's backend

    engines = sorted({row["engine"] for row in rows})
    if not engines:
        return ""
    setups = sorted({(row["machine"], row["backend"], str(row["threads"] or "")) for row in rows})
    colours = {setup: f"C{i % 10}" for i, setup in enumerate(setups)}
    figure = Figure(figsize=(4.2 * len(engines), 7.5), layout="constrained")
    axes = figure.subplots(2, len(engines), squeeze=False)
    for column, engine in enumerate(engines):
        time_axis, memory_axis = axes[0, column], axes[1, column]
        for setup in setups:
            mine = [row for row in rows if row["engine"] == engine
                    and (row["machine"], row["backend"], str(row["threads"] or "")) == setup]
            label = f"{setup[0]} {setup[1]}" + (f" {setup[2]} thr" if setup[2] else "")
            for frames in sorted({row["n_frames"] for row in mine}):
                line = sorted((row for row in mine if row["n_frames"] == frames and row["seconds_per_iteration"]
                               and row["passed"]), key=lambda row: row["detector"])
                if line:
                    x = [row["detector"] for row in line]
                    y = [row["seconds_per_iteration"] / frames for row in line]
                    errors = [[max(0.0, (row["seconds_per_iteration"] - row["seconds_min"]) / frames) for row in line],
                              [max(0.0, (row["seconds_max"] - row["seconds_per_iteration"]) / frames) for row in line]]
                    time_axis.errorbar(x, y, yerr=errors, marker="o" if frames == min(r["n_frames"] for r in mine)
                                       else "s", color=colours[setup], label=f"{label}, N={frames}", capsize=3)
            sized = sorted((row for row in mine if row["memory_measured_bytes"]),
                           key=lambda row: row["n_frames"] * row["detector"] ** 2)
            if sized:
                memory_axis.plot([row["n_frames"] * row["detector"] ** 2 for row in sized],
                                 [row["memory_measured_bytes"] / 1e6 for row in sized], "o", color=colours[setup],
                                 label=f"{label} measured")
            model = sorted((row for row in mine if row["memory_predicted_bytes"]),
                           key=lambda row: row["n_frames"] * row["detector"] ** 2)
            if model:
                memory_axis.plot([row["n_frames"] * row["detector"] ** 2 for row in model],
                                 [row["memory_predicted_bytes"] / 1e6 for row in model], "k+", markersize=10,
                                 label="memory model" if setup == setups[0] else None)
            for row in mine:
                if "oom" in row["statuses"] and row["memory_predicted_bytes"]:
                    memory_axis.plot([row["n_frames"] * row["detector"] ** 2], [row["memory_predicted_bytes"] / 1e6],
                                     "x", color="red", markersize=12, label="out of memory (at model size)")
        time_axis.set_title(engine)
        time_axis.set_xscale("log", base=2)
        time_axis.set_yscale("log")
        time_axis.set_xlabel("detector side (pixels)")
        time_axis.set_ylabel("seconds per frame·iteration")
        memory_axis.set_xscale("log")
        memory_axis.set_yscale("log")
        memory_axis.set_xlabel("N × detector pixels")
        memory_axis.set_ylabel("algorithm memory (MB)")
        for axis in (time_axis, memory_axis):
            axis.grid(True, which="both", alpha=0.3)
            if axis.get_legend_handles_labels()[0]:
                axis.legend(fontsize=6)
    figure.suptitle("time per frame·iteration (median over repeats, bars: min–max) and memory (measured, model +)")
    return "<h2>Time and memory against problem size</h2>" + _png(figure)


def _backends_section(rows: list[dict[str, Any]]) -> str:
    backends = sorted({(row["backend"], str(row["threads"] or "")) for row in rows})
    if len(backends) < 2:
        return ""
    grouped: dict[tuple, dict[tuple, dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault((row["machine"], row["dataset"], row["engine"]), {})[
            (row["backend"], str(row["threads"] or ""))] = row
    headers = ["machine", "dataset", "engine", *[f"{b} {t + ' thr' if t else ''} s/iter" for b, t in backends]]
    table_rows = []
    for (machine, dataset, engine), per_backend in sorted(grouped.items()):
        cells = [_e(machine), _e(dataset), _e(engine)]
        for backend in backends:
            row = per_backend.get(backend)
            if row is None:
                cells.append("")
            elif not row["passed"]:
                cells.append('<span class="fail">not validated</span>')
            else:
                cells.append(_number(row["seconds_per_iteration"], "{:.4g}"))
        table_rows.append(cells)
    return "<h2>Backends side by side</h2>" + _table(headers, table_rows, text_columns=3)


def _scaling_section(records: list[dict[str, Any]]) -> str:
    multi = [r for r in records if (r.get("ranks") or 1) > 1 and r.get("status") == "ok"]
    if not multi:
        return ""
    from matplotlib.figure import Figure  # not pyplot: a library must not change a notebook's backend

    serial = {(r["dataset"], r["engine"], r["backend"]): r["seconds_per_iteration"] for r in records
              if (r.get("ranks") or 1) == 1 and r.get("status") == "ok" and not r.get("dataset_changes")}
    figure = Figure(figsize=(6, 4), layout="constrained")
    axis = figure.subplots()
    series: dict[tuple, list[tuple[int, float]]] = {}
    for r in multi:
        base = serial.get((r["dataset"], r["engine"], r["backend"]))
        if base and not r.get("dataset_changes"):
            series.setdefault((r["dataset"], r["engine"], r["backend"]), []).append(
                (r["ranks"], base / r["seconds_per_iteration"]))
    for (dataset, engine, backend), points in sorted(series.items()):
        points = [(1, 1.0), *sorted(points)]
        axis.plot(*zip(*points, strict=True), "o-", label=f"{engine} {backend} {dataset}")
    top = max([r["ranks"] for r in multi] + [2])
    axis.plot([1, top], [1, top], "k:", label="ideal")
    axis.set_xlabel("ranks")
    axis.set_ylabel("speedup over 1 rank")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    return "<h2>Scaling</h2>" + _png(figure)


def _forecast_section(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ("<h2>Forecast</h2><p class=\"note\">No forecast: no setup has validated records at two or more "
                "detector sizes.</p>")
    rates = list(rows[0]["rates"])
    headers = ["machine", "backend", "engine", "thr", "tier", "s/frame·it", "± (hold-out)", "iterations",
               "per projection", "tomogram", "memory GB", "devices (memory)", "FOM-S Hz",
               *[f"live @ {rate}" for rate in rates]]
    table_rows = []
    for row in rows:
        check = row["hold_out"]
        error = (f"{row['uncertainty']:.0%} (without {check['held_out']})" if check else "n/a")
        table_rows.append([
            _e(row["machine"]), _e(row["backend"]), _e(row["engine"]), _e(row["threads"] or ""), _e(row["tier"]),
            _number(row["seconds_per_frame_iteration"]), _e(error),
            f"{row['iterations']:.0f}" + ("" if row["epsilon_reached"] else "*"),
            _e(format_duration(row["seconds_per_projection"])), _e(format_duration(row["tomogram_seconds"])),
            _number((row["memory_bytes"] or 0) / 1e9, "{:.1f}"), _e(row["memory_devices"] or "?"),
            _number(row["live_rate_hz"]),
            *[('<span class="pass">keeps up</span>' if v["keeps_up"] else f'{v["devices"]} devices')
              for v in row["rates"].values()]])
    target = rows[0]["target"]
    note = (f'<p class="estimate">ESTIMATE — target {_e(target)}, {rows[0]["projections"]} projections.</p>'
            '<p class="note">A power law in detector pixels and N fitted to the validated ladder; ± is the '
            "relative error of predicting the largest measured detector size from the others (hold-out); the target "
            "lies beyond it (extrapolation). Devices assume perfect scaling and include what the memory model needs. "
            "* = ε not reached in the measured iterations (the iterations run are used: a lower bound).</p>")
    return "<h2>Forecast and live verdict</h2>" + note + _table(headers, table_rows, text_columns=5)


def _problems_section(rows: list[dict[str, Any]], records: list[dict[str, Any]]) -> str:
    items = []
    for row in rows:
        if row["noisy"]:
            items.append(f"<li><b>noisy</b> {_e(row['machine'])} {_e(row['dataset'])} {_e(row['engine'])} "
                         f"{_e(row['backend'])}: {_e('; '.join(row['noisy']))}</li>")
    for record in records:
        if record.get("status") != "ok" or (record.get("validation") or {}).get("result") == "fail":
            why = record.get("message") or (f"object error {record.get('object_error'):.4f} above "
                                            f"{(record.get('validation') or {}).get('threshold')}"
                                            if record.get("object_error") is not None else "")
            items.append(f"<li><b>{_e(record.get('status'))}</b> {_e(machine_name(record.get('machine')))} "
                         f"{_e(record['dataset'])} {_e(record['engine'])} {_e(record['backend'])} repeat "
                         f"{_e(record.get('repeat', 0))}: {_e(str(why).splitlines()[0] if why else '')}</li>")
    body = f"<ul>{''.join(items)}</ul>" if items else '<p class="note">None.</p>'
    return "<h2>Noisy and failed runs</h2>" + body


def build_report(records: list[dict[str, Any]], forecast_rows: list[dict[str, Any]], reference: str | None = None,
                 manifests: list[dict[str, Any]] | None = None, title: str = "ptybench procurement report") -> str:
    """The whole page as one string."""
    rows = summarise(records)
    machines = _machines(records)
    if reference is not None and reference not in machines:
        raise InputError(f"--reference: expected one of the machines in these results {sorted(machines)}, "
                         f"got {reference!r}")
    reference = reference or (sorted(machines)[0] if machines else "")
    sections = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="note">Generated {_e(time.strftime("%Y-%m-%d %H:%M %Z"))} from {len(records)} records, '
        f"{len(rows)} configurations, {len(machines)} machine(s).</p>",
        _machines_section(machines, manifests or []),
        _fom_section(rows, reference),
        _validation_section(rows),
        _size_figures(rows),
        _backends_section(rows),
        _scaling_section(records),
        _forecast_section(forecast_rows),
        _problems_section(rows, records),
    ]
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{STYLE}</style></head><body>{''.join(sections)}<script>{SCRIPT}</script></body></html>")


def write_report(path: str | Path, records: list[dict[str, Any]], forecast_rows: list[dict[str, Any]],
                 reference: str | None = None, manifests: list[dict[str, Any]] | None = None) -> Path:
    path = Path(path)
    page = build_report(records, forecast_rows, reference, manifests)
    path.parent.mkdir(parents=True, exist_ok=True)
    from ptybench.results import replace_atomically

    return replace_atomically(path, page)
