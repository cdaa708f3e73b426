"""The regression gate: BASE against HEAD, per benchmark, for time, memory and accuracy.

Both sides are *samples*, read from ptybench results files (every record's per-iteration seconds, pooled over the
repeats of one configuration) or from asv results of two commits (asv's recorded samples). Time is judged by
``ptybench.timing_stats`` (minimum effect + Mann–Whitney U + a bootstrap interval); memory grows when the median
measured footprint rises by more than ``memory_factor`` and by more than ``memory_floor`` bytes (torch's CPU
allocator moves a 14 MB footprint by 1.8 MB between runs of identical code); accuracy is lost when the median
object error (else the R-factor, for data without truth) rises by more than ``error_tolerance``; a configuration
that ran on BASE and failed on HEAD is a failure. Any of these makes the gate fail.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ptybench.configurations import backend_label, threads_of
from ptybench.engines.errors import InputError
from ptybench.record import Record, as_record
from ptybench.text_table import text_table
from ptybench.timing_stats import DEFAULT_ALPHA, DEFAULT_MIN_EFFECT, Comparison, compare_samples, family_levels

DEFAULT_MEMORY_FACTOR = 1.10
#: Growth below this is not memory growth, whatever its ratio: identical code on torch-CPU measured 14.0 and
#: 15.8 MB (rPIE at 64²×256, 2026-12-07), 1.13×, a false alarm on the factor alone.
DEFAULT_MEMORY_FLOOR = 8 * 2**20
DEFAULT_ERROR_TOLERANCE = 0.05
#: Undisturbed processes a side needs before its timings are judged (fewer: "uncertain").
MIN_PROCESSES = 2
#: Verdicts that fail the gate.
FAILING = ("slower", "memory", "accuracy", "failed")


@dataclass
class Samples:
    """What one side measured for one benchmark."""

    seconds: list[list[float]] = field(default_factory=list)  # per process, per iteration
    memory: list[float] = field(default_factory=list)
    error: list[float] = field(default_factory=list)
    error_name: str = "object error"
    failures: list[str] = field(default_factory=list)
    #: Processes left out of the timing because something outside disturbed them (their record's load flags).
    disturbed: int = 0


@dataclass
class GateRow:
    benchmark: str
    verdicts: list[str]
    time: Comparison | None = None
    memory_ratio: float | None = None
    error_base: float | None = None
    error_head: float | None = None
    error_name: str = ""
    note: str = ""
    #: The levels this row's time was judged at (corrected for the timings judged together).
    alpha: float | None = None
    confidence: float | None = None

    @property
    def fails(self) -> bool:
        return any(verdict in FAILING for verdict in self.verdicts)


def benchmark_label(record: Record) -> str:
    """What is compared across two results files: the configuration, without the repeat or the machine."""
    threads = threads_of(record)
    parts = [record.dataset, record.engine, backend_label(record)]
    if threads:
        parts.append(f"{threads} thr")
    if (record.ranks or 1) > 1:
        parts.append(f"{record.ranks} ranks")
    if record.frames_per_block:
        parts.append(f"block {record.frames_per_block}")
    if record.parameters:
        parts.append(",".join(f"{k}={v}" for k, v in sorted(record.parameters.items())))
    if record.dataset_changes:
        parts.append(",".join(f"{k}={v}" for k, v in sorted(record.dataset_changes.items())))
    if record.launcher:
        parts.append(f"via {record.launcher}")
    if record.host_memory_bytes:  # an emulated host streams from disk: another measurement, never pooled
        parts.append(f"on a {record.host_memory_bytes / 1e9:.3g} GB host")
    return " ".join(str(part) for part in parts)


def samples_from_records(records: Iterable[Record | Mapping[str, Any]]) -> dict[str, Samples]:
    """Every configuration's samples: each ok record's iteration seconds (one process each), its measured memory
    and its quality; failures kept with their status. A process that other processes or the hypervisor disturbed
    (its ``noisy`` load flags) gives no timings: it would move one side only, and a gate would take it for a
    change in the code."""
    from ptybench.configurations import measured_memory

    found: dict[str, Samples] = {}
    for record in map(as_record, records):
        samples = found.setdefault(benchmark_label(record), Samples())
        if record.status != "ok":
            first_line = record.message.splitlines()[0] if record.message else ""
            samples.failures.append(f"{record.status}: {first_line}")
            continue
        seconds = record.iteration_seconds or ([record.seconds_per_iteration] if record.seconds_per_iteration else [])
        bad = [value for value in seconds if not isinstance(value, int | float) or not 0 < value < float("inf")]
        if bad:
            raise InputError(f"results: {benchmark_label(record)} repeat {record.repeat}: iteration_seconds holds "
                             f"{bad[0]!r}, expected positive seconds")
        if seconds and record.noisy:
            samples.disturbed += 1
        elif seconds:
            samples.seconds.append([float(s) for s in seconds])
        memory = measured_memory(record)
        if memory:
            samples.memory.append(float(memory))
        if record.object_error is not None:
            samples.error.append(record.object_error)
        elif record.r_factor is not None:
            samples.error.append(record.r_factor)
            samples.error_name = "R-factor"
    return found


def compare(base: Mapping[str, Samples], head: Mapping[str, Samples], min_effect: float = DEFAULT_MIN_EFFECT,
            alpha: float = DEFAULT_ALPHA, memory_factor: float = DEFAULT_MEMORY_FACTOR,
            error_tolerance: float = DEFAULT_ERROR_TOLERANCE,
            memory_floor: float = DEFAULT_MEMORY_FLOOR, family: int | None = None) -> list[GateRow]:
    """One row per benchmark present on either side. The timings are judged together: each at the levels
    ``family_levels`` gives for their number (``family``, by default the benchmarks with timings on both
    sides), so a gate over 14 benchmarks is no more likely to cry wolf than one over a single benchmark."""
    if memory_factor < 1:
        raise InputError(f"--memory-factor: expected a factor >= 1, got {memory_factor!r}")
    if memory_floor < 0:
        raise InputError(f"--memory-floor: expected bytes >= 0, got {memory_floor!r}")
    if error_tolerance < 0:
        raise InputError(f"--error-tolerance: expected a fraction >= 0, got {error_tolerance!r}")
    timed = [name for name in base if name in head and len(base[name].seconds) >= MIN_PROCESSES
             and len(head[name].seconds) >= MIN_PROCESSES]
    row_alpha, row_confidence = family_levels(alpha, family if family is not None else len(timed))
    rows = []
    for name in sorted(set(base) | set(head)):
        if name not in base or name not in head:
            rows.append(GateRow(name, ["new" if name in head else "gone"]))
            continue
        old, new = base[name], head[name]
        row = GateRow(name, [], error_name=new.error_name)
        if new.failures and not old.failures:
            row.verdicts.append("failed")
            row.note = new.failures[0]
        if old.disturbed or new.disturbed:
            row.note = (row.note + "; " if row.note else "") + (
                f"left out as disturbed: {old.disturbed} BASE, {new.disturbed} HEAD process(es)")
        if len(old.seconds) >= MIN_PROCESSES and len(new.seconds) >= MIN_PROCESSES:
            row.time = compare_samples(old.seconds, new.seconds, min_effect, row_alpha, confidence=row_confidence)
            row.alpha, row.confidence = row_alpha, row_confidence
            kept = (len(old.seconds) - row.time.base_slow_processes, len(new.seconds) - row.time.head_slow_processes)
            if row.time.base_slow_processes or row.time.head_slow_processes:
                row.note = (row.note + "; " if row.note else "") + (
                    f"slow processes left out: {row.time.base_slow_processes} of {len(old.seconds)} BASE, "
                    f"{row.time.head_slow_processes} of {len(new.seconds)} HEAD")
            # One process cannot show how much a process varies: its interval would be its iterations' alone.
            row.verdicts.append(row.time.verdict if min(kept) >= MIN_PROCESSES else "uncertain")
        elif old.seconds and new.seconds:
            row.verdicts.append("uncertain")
            row.note = (row.note + "; " if row.note else "") + (
                f"too few undisturbed processes ({len(old.seconds)} BASE, {len(new.seconds)} HEAD; "
                f"{MIN_PROCESSES} a side needed)")
        if old.memory and new.memory:
            before, after = statistics.median(old.memory), statistics.median(new.memory)
            row.memory_ratio = after / before
            if row.memory_ratio > memory_factor and after - before > memory_floor:
                row.verdicts.append("memory")
        if old.error and new.error:
            row.error_base, row.error_head = statistics.median(old.error), statistics.median(new.error)
            if row.error_head > row.error_base * (1 + error_tolerance) + 1e-6:
                row.verdicts.append("accuracy")
        if not row.verdicts:
            row.verdicts.append("no timings")
        rows.append(row)
    return rows


def format_rows(rows: list[GateRow]) -> str:
    table = []
    for row in rows:
        time = row.time
        table.append([
            row.benchmark, ", ".join(row.verdicts),
            f"{time.ratio:.3f}" if time else "", f"{time.low:.3f}–{time.high:.3f}" if time else "",
            f"{time.p_value:.2g}" if time else "", f"{time.base_samples}/{time.head_samples}" if time else "",
            f"{row.memory_ratio:.3f}" if row.memory_ratio is not None else "",
            f"{row.error_base:.4g} → {row.error_head:.4g}" if row.error_base is not None else "", row.note])
    return text_table(["benchmark", "verdict", "time ratio", "interval", "p", "samples", "memory ratio",
                       "error BASE → HEAD", "note"], table, right=(2, 3, 4, 5, 6))


def summary(rows: list[GateRow]) -> str:
    timed = [row for row in rows if row.time is not None and row.alpha is not None]
    counts: dict[str, int] = {}
    for row in rows:
        for verdict in row.verdicts:
            counts[verdict] = counts.get(verdict, 0) + 1
    failing = [row.benchmark for row in rows if row.fails]
    text = ", ".join(f"{count} {verdict}" for verdict, count in sorted(counts.items()))
    levels = ""
    if len(timed) > 1:
        levels = (f" {len(timed)} timings judged together: each at p < {timed[0].alpha:.2g} and a "
                  f"{100 * timed[0].confidence:.4g} % interval.")
    return (f"{len(rows)} benchmarks: {text}.{levels} " + (f"FAIL: {len(failing)} regressed." if failing
                                                   else "PASS: nothing significantly slower, bigger or less accurate."))


def rounds_of(samples: list[float], per_round: int) -> list[list[float]]:
    """asv's pooled samples of a timing benchmark cut back into its rounds (one fresh process each), which take
    ``per_round`` samples apiece; one group when the count does not divide (a --quick run, older results)."""
    if per_round > 0 and samples and len(samples) % per_round == 0:
        return [samples[start:start + per_round] for start in range(0, len(samples), per_round)]
    return [samples]


def samples_from_asv(results_dir: str, machine: str, commit: str) -> dict[str, Samples]:
    """One commit's asv results as samples: ``time_*`` benchmarks give their recorded samples (``asv run
    --record-samples``: one sample per timed call, pooled over asv's rounds, cut back into one group per round),
    ``peakmem_*`` and ``track_*memory*`` the memory, ``track_object_error`` the accuracy."""
    import itertools

    from asv.results import iter_results_for_machine_and_hash

    from ptybench.benchmarks.common import SAMPLES_PER_ROUND

    found: dict[str, Samples] = {}
    for result in iter_results_for_machine_and_hash(results_dir, machine, commit):
        for key in result.get_all_result_keys():
            module_class, _, method = key.rpartition(".")
            kind, _, what = method.partition("_")
            role = ("time" if kind == "time" else "memory" if kind == "peakmem" or "memory" in what
                    else "error" if what == "object_error" else None)
            if role is None:
                continue  # other tracked figures (ratios, per-frame seconds) are not gated
            params = result.get_result_params(key)
            combos = list(itertools.product(*params)) if params else [()]
            values = result.get_result_value(key, params)
            samples = result.get_result_samples(key, params) or []
            for index, combo in enumerate(combos):
                label = module_class.rpartition(".")[2] + (f"({', '.join(map(str, combo))})" if combo else "")
                side = found.setdefault(label, Samples())
                value = values[index] if index < len(values) else None
                if value is None:
                    side.failures.append(f"{method}: failed or skipped in asv")
                elif role == "time":
                    recorded = samples[index] if index < len(samples) and samples[index] else [value]
                    side.seconds.extend(rounds_of([float(s) for s in recorded], SAMPLES_PER_ROUND))
                elif role == "memory":
                    side.memory.append(float(value))
                else:
                    side.error.append(float(value))
    return found
