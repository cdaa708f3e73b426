"""``ptybench report``: one self-contained HTML page (figures embedded, opens from disk, no network).

Sections: machines side by side and their FOMs against a reference machine; validation PASS/FAIL;
time and memory against detector size and N (model marks, out-of-memory points); backends side by
side; scaling curves when multi-rank records are present; forecast and live verdict; noisy and
failed runs with their messages. Only configurations that passed validation enter FOMs and ratios.
"""

from __future__ import annotations

import base64
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from ptybench.configurations import configuration_key, summarise
from ptybench.engines.errors import InputError
from ptybench.forecast import format_duration
from ptybench.machine import machine_fingerprint, machine_name
from ptybench.machine_load import machine_jitter
from ptybench.record import Record, as_record

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


@dataclass(frozen=True)
class Cell:
    """One table cell: text (escaped by the template) and an optional badge class (pass, fail, estimate)."""

    text: str = ""
    css: str = ""


@dataclass(frozen=True)
class Note:
    text: str
    css: str = "note"


@dataclass(frozen=True)
class Item:
    label: str
    text: str


@dataclass
class Table:
    headers: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)  # {"cells": [Cell, ...], "css": row class}
    text_columns: int = 1

    def add(self, cells: list[Any], css: str = "") -> None:
        self.rows.append({"cells": [c if isinstance(c, Cell) else Cell("" if c is None else str(c)) for c in cells],
                          "css": css})


@dataclass
class Section:
    title: str
    notes: list[Note] = field(default_factory=list)
    table: Table | None = None
    image: str | None = None
    items: list[Item] | None = None


def _number(value: Any, fmt: str = "{:.3g}") -> str:
    return "" if value is None else fmt.format(value)


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return f"data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}"


def _machines(records: list[Record]) -> dict[str, dict[str, Any]]:
    machines: dict[str, dict[str, Any]] = {}
    for record in records:
        machine = record.machine or {}
        machines.setdefault(machine_name(machine), machine)
    return machines


def _machines_section(machines: dict[str, dict[str, Any]], manifests: list[dict[str, Any]],
                      records: list[Record]) -> Section:
    workloads = {m.get("machine_label"): m.get("workload_version") for m in manifests}
    jitter = machine_jitter(records, configuration_key)
    table = Table(["machine", "fingerprint", "CPU", "cores", "memory GB", "GPU", "Python", "NumPy", "torch", "commit",
                   "workload", "normal jitter (IQR/median)"], text_columns=3)
    for name, machine in machines.items():
        versions = machine.get("versions") or {}
        table.add([name, machine_fingerprint(machine), machine.get("cpu", ""), machine.get("cores_available", ""),
                   _number((machine.get("memory_bytes") or 0) / 1e9, "{:.1f}"), machine.get("gpu", "—"),
                   versions.get("python", ""), versions.get("numpy", ""), versions.get("torch", "—"),
                   (machine.get("git_commit") or "")[:12], workloads.get(name, "—"),
                   _number((jitter.get(name) and jitter[name].iteration_spread), "{:.0%}")])
    notes = [Note(jitter[name].describe()) for name in machines if name in jitter]
    notes.append(Note("A machine's normal jitter is measured from its own runs that nothing outside disturbed; a run "
                      "is flagged noisy when it spreads more than twice that (and at least 10 %), or when other "
                      "processes or the hypervisor took CPU during it."))
    return Section("Machines", notes, table)


def _fom_section(rows: list[dict[str, Any]], reference: str) -> Section:
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
    table = Table(headers, text_columns=3)
    for (dataset, engine, backend), per_machine in sorted(by_point.items(), key=lambda item: size[item[0]]):
        base = (per_machine.get(reference) or {}).get("fom_throughput")
        cells: list[Any] = [dataset, engine, backend]
        for machine in machines:
            row = per_machine.get(machine) or {}
            value = row.get("fom_throughput")
            if row and not value:
                cells += [Cell("not validated", "fail"), "", "", ""]
                continue
            ratio = value / base if value and base else None
            cells += [_number(value), _number(ratio, "{:.2f}×"), _number(row.get("fom_seconds_to_quality")),
                      _number(row.get("fom_live_rate_hz"))]
        table.add(cells)
    note = (f"Reference machine: {reference}. FOM-T: frame·iterations per second over the timed iterations; FOM-Q: "
            "seconds from the initial guess to object error ε; FOM-S: the detector frame rate this setup keeps up "
            "with (FOM-T / iterations to ε). Medians over repeats that passed validation; a configuration with none "
            'shows "not validated" and no ratio.')
    return Section("Figures of merit", [Note(note)], table)


def _validation_section(rows: list[dict[str, Any]]) -> Section:
    table = Table(["machine", "dataset", "engine", "backend", "thr", "tier", "repeats", "passed", "s/iter median",
                   "min–max", "object error", "threshold", "verdict"], text_columns=6)
    for row in rows:
        if row["passed"] == row["repeats"]:
            verdict = Cell("PASS", "pass")
        elif row["failed"]:
            verdict = Cell(f"FAIL ({row['failed']} of {row['repeats']})", "fail")
        else:
            verdict = Cell("no threshold")
        spread = (f"{row['seconds_min']:.3g}–{row['seconds_max']:.3g}" if row["seconds_min"] is not None else "")
        table.add([row["machine"], row["dataset"], row["engine"], row["backend"], row["threads"] or "", row["tier"],
                   row["repeats"], row["passed"], _number(row["seconds_per_iteration"], "{:.4g}"), spread,
                   _number(row["object_error"], "{:.4f}"), _number(row["threshold"], "{:.3f}"), verdict],
                  css="noisy" if row["noisy"] else "")
    note = ("Median and min–max of s/iter over the repeats (fresh processes); highlighted rows are noisy (reasons "
            'under "Noisy and failed runs").')
    return Section("Validation and run-to-run spread", [Note(note)], table)


def _size_figures(rows: list[dict[str, Any]]) -> Section | None:
    from matplotlib.figure import Figure  # not pyplot: a library must not change a notebook's backend

    engines = sorted({row["engine"] for row in rows})
    if not engines:
        return None
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
    return Section("Time and memory against problem size", image=_png(figure))


def _backends_section(rows: list[dict[str, Any]]) -> Section | None:
    backends = sorted({(row["backend"], str(row["threads"] or "")) for row in rows})
    if len(backends) < 2:
        return None
    grouped: dict[tuple, dict[tuple, dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault((row["machine"], row["dataset"], row["engine"]), {})[
            (row["backend"], str(row["threads"] or ""))] = row
    table = Table(["machine", "dataset", "engine", *[f"{b} {t + ' thr' if t else ''} s/iter" for b, t in backends]],
                  text_columns=3)
    for (machine, dataset, engine), per_backend in sorted(grouped.items()):
        cells: list[Any] = [machine, dataset, engine]
        for backend in backends:
            row = per_backend.get(backend)
            if row is None:
                cells.append("")
            elif not row["passed"]:
                cells.append(Cell("not validated", "fail"))
            else:
                cells.append(_number(row["seconds_per_iteration"], "{:.4g}"))
        table.add(cells)
    return Section("Backends side by side", table=table)


def _scaling_section(records: list[Record]) -> Section | None:
    multi = [r for r in records if (r.ranks or 1) > 1 and r.status == "ok"]
    if not multi:
        return None
    from matplotlib.figure import Figure  # not pyplot: a library must not change a notebook's backend

    serial = {(r.dataset, r.engine, r.backend): r.seconds_per_iteration for r in records
              if (r.ranks or 1) == 1 and r.status == "ok" and not r.dataset_changes}
    figure = Figure(figsize=(6, 4), layout="constrained")
    axis = figure.subplots()
    series: dict[tuple, list[tuple[int, float]]] = {}
    for r in multi:
        base = serial.get((r.dataset, r.engine, r.backend))
        if base and not r.dataset_changes:
            series.setdefault((r.dataset, r.engine, r.backend), []).append((r.ranks, base / r.seconds_per_iteration))
    for (dataset, engine, backend), points in sorted(series.items()):
        points = [(1, 1.0), *sorted(points)]
        axis.plot(*zip(*points, strict=True), "o-", label=f"{engine} {backend} {dataset}")
    top = max([r.ranks for r in multi] + [2])
    axis.plot([1, top], [1, top], "k:", label="ideal")
    axis.set_xlabel("ranks")
    axis.set_ylabel("speedup over 1 rank")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    return Section("Scaling", image=_png(figure))


def _forecast_section(rows: list[dict[str, Any]]) -> Section:
    if not rows:
        return Section("Forecast and live verdict", [Note(
            "No forecast: no validated records at the target's frame size or at two or more detector sizes.")])
    rates = list(rows[0]["rates"])
    table = Table(["machine", "backend", "engine", "thr", "tier", "s/frame·it", "interval", "measured",
                   "extrapolated", "ladder ×", "iterations", "per projection", "tomogram", "memory GB",
                   "devices (memory)", "FOM-S Hz", *[f"live @ {rate}" for rate in rates]], text_columns=5)
    for row in rows:
        interval = (f"{row['interval'][0] - 1:+.0%} / {row['interval'][1] - 1:+.0%}" if row["interval"] else "n/a")
        table.add([
            row["machine"], row["backend"], row["engine"], row["threads"] or "", row["tier"],
            _number(row["seconds_per_frame_iteration"]), interval, row["measured"], row["extrapolated"],
            _number(row["ladder_over_target"], "{:.2f}×"),
            "?" if row["iterations"] is None else f"{row['iterations']:.0f}" + ("" if row["epsilon_reached"] else "*"),
            format_duration(row["seconds_per_projection"]) if row["seconds_per_projection"] else "?",
            format_duration(row["tomogram_seconds"]) if row["tomogram_seconds"] else "?",
            _number((row["memory_bytes"] or 0) / 1e9, "{:.1f}"), row["memory_devices"] or "?",
            _number(row["live_rate_hz"]),
            *[(Cell("keeps up", "pass") if v["keeps_up"] else f"{v['devices'] or '?'} devices")
              for v in row["rates"].values()]])
    target = rows[0]["target"]
    notes = [Note(f"ESTIMATE — target {target}, {rows[0]['projections']} projections.", "estimate"),
             Note("Where runs at the target's own frame size exist, time per iteration is fitted to them as "
                  "a cost per frame plus a cost per object pixel, so only N is extrapolated; the interval is a 95 % "
                  "bootstrap over the repeats. Otherwise a power law in detector pixels and N is fitted to the "
                  "validated ladder and the interval is its hold-out error. 'ladder ×': the ladder's figure over "
                  "the target-size one (a cross-check). Devices assume perfect scaling and include what the memory "
                  "model needs. * = ε not reached in the measured iterations (a lower bound); ? = no ladder.")]
    return Section("Forecast and live verdict", notes, table)


def _problems_section(rows: list[dict[str, Any]], records: list[Record]) -> Section:
    items = []
    for row in rows:
        if row["noisy"]:
            items.append(Item("noisy", f"{row['machine']} {row['dataset']} {row['engine']} {row['backend']}: "
                                       + "; ".join(row["noisy"])))
    for record in records:
        validation = record.validation or {}
        if record.status != "ok" or validation.get("result") == "fail":
            why = record.message or (f"object error {record.object_error:.4f} above {validation.get('threshold')}"
                                     if record.object_error is not None else "")
            items.append(Item(record.status, f"{machine_name(record.machine)} {record.dataset} {record.engine} "
                                             f"{record.backend} repeat {record.repeat}: "
                                             + (why.splitlines()[0] if why else "")))
    return Section("Noisy and failed runs", items=items)


_TEMPLATES = jinja2.Environment(loader=jinja2.PackageLoader("ptybench", "templates"), autoescape=True,
                                undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def build_report(records: list[Record | dict[str, Any]], forecast_rows: list[dict[str, Any]],
                 reference: str | None = None,
                 manifests: list[dict[str, Any]] | None = None, title: str = "ptybench procurement report") -> str:
    """The whole page as one string, rendered by the autoescaping template ``templates/report.html``."""
    records = [as_record(record) for record in records]
    rows = summarise(records)
    machines = _machines(records)
    if reference is not None and reference not in machines:
        raise InputError(f"--reference: expected one of the machines in these results {sorted(machines)}, "
                         f"got {reference!r}")
    reference = reference or (sorted(machines)[0] if machines else "")
    sections = [
        _machines_section(machines, manifests or [], records),
        _fom_section(rows, reference),
        _validation_section(rows),
        _size_figures(rows),
        _backends_section(rows),
        _scaling_section(records),
        _forecast_section(forecast_rows),
        _problems_section(rows, records),
    ]
    return _TEMPLATES.get_template("report.html").render(
        title=title, style=STYLE, script=SCRIPT, generated=time.strftime("%Y-%m-%d %H:%M %Z"),
        n_records=len(records), n_configurations=len(rows), n_machines=len(machines),
        sections=[section for section in sections if section is not None])


def write_report(path: str | Path, records: list[dict[str, Any]], forecast_rows: list[dict[str, Any]],
                 reference: str | None = None, manifests: list[dict[str, Any]] | None = None) -> Path:
    path = Path(path)
    page = build_report(records, forecast_rows, reference, manifests)
    path.parent.mkdir(parents=True, exist_ok=True)
    from ptybench.results import replace_atomically

    return replace_atomically(path, page)
