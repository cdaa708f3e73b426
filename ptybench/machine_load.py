"""How busy the machine was around a measurement, and when a timing is too noisy to trust.

A benchmark on a shared machine measures the neighbours too. Like pyperf, ptybench does not hide that:
every record carries the load before and after its run and the CPU time other processes took *during*
it (all CPU time on the machine, from psutil.cpu_times, minus the measuring child's own, from
``getrusage``), and is flagged *noisy* with the reasons when a documented threshold is crossed.

Thresholds (docs/design.md, "Measurement honesty"):

- other processes used ≥ ``OTHER_BUSY_CORES`` × the cores available to the run, before or during it;
- CPU steal (a hypervisor running someone else on our cores) ≥ ``STEAL_FRACTION`` during the run.

How much a run's iterations spread is judged later, against the machine's own normal (``MachineJitter``): a
machine whose iterations always vary 15 % is described once, and a run is flagged only when it spreads more than
``JITTER_FACTOR`` × that normal (and at least ``SPREAD``).
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from typing import Any

#: Busy cores of other processes, as a fraction of the cores the measurement may use.
OTHER_BUSY_CORES = 0.25
#: Fraction of CPU time stolen by the hypervisor during the run.
STEAL_FRACTION = 0.05
#: The least relative spread that is flagged (iterations in a run: IQR/median; repeats: (max − min)/median).
SPREAD = 0.10
#: A run (or a configuration's repeats) is flagged when it spreads more than this many times its machine's normal.
JITTER_FACTOR = 2.0
#: How long the "before" sample watches the machine with nothing of ours running.
SAMPLE_S = 0.3
#: Processes using at least this many percent of one core are named in the record.
NAMED_PROCESS_PERCENT = 10.0


def _machine_cpu_seconds() -> tuple[float, float, float] | None:
    """(busy, total, steal) CPU seconds of the whole machine since boot (psutil; steal where the platform has it)."""
    import psutil

    try:
        times = psutil.cpu_times()
    except (OSError, psutil.Error):
        return None
    steal = getattr(times, "steal", 0.0)
    idle = times.idle + getattr(times, "iowait", 0.0)
    busy = sum(getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq")) + steal
    return busy, busy + idle, steal


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _busy_processes(sample_s: float) -> list[dict[str, Any]]:
    """Other processes using ≥ NAMED_PROCESS_PERCENT of a core over ``sample_s`` (name, pid, percent)."""
    import psutil

    mine = os.getpid()
    processes = [p for p in psutil.process_iter(["name"]) if p.pid != mine]
    for process in processes:
        try:
            process.cpu_percent(None)
        except psutil.Error:
            continue
    time.sleep(sample_s)
    busy = []
    for process in processes:
        try:
            percent = process.cpu_percent(None)
        except psutil.Error:
            continue
        if percent >= NAMED_PROCESS_PERCENT:
            busy.append({"name": process.info["name"], "pid": process.pid, "cpu_percent": round(percent, 1)})
    return sorted(busy, key=lambda p: -p["cpu_percent"])[:5]


class LoadWatch:
    """Brackets one run in a child process: ``start()`` before launching it, ``finish()`` after it was
    waited for. The result goes into the record as ``load``."""

    def __init__(self, cores: int | None = None, sample_s: float = SAMPLE_S) -> None:
        self.cores = cores or len(os.sched_getaffinity(0))
        self.sample_s = sample_s
        self.before: dict[str, Any] = {}

    def start(self) -> None:
        stat_start = _machine_cpu_seconds()
        processes = _busy_processes(self.sample_s)
        stat_end = _machine_cpu_seconds()
        self.before = {"load_average": list(os.getloadavg()), "busy_processes": processes}
        if stat_start and stat_end:
            elapsed = max(stat_end[1] - stat_start[1], 1e-9)  # machine CPU seconds in the sample
            self.before["other_busy_cores"] = round((stat_end[0] - stat_start[0]) / elapsed
                                                    * (os.cpu_count() or 1), 3)
        self._stat = _machine_cpu_seconds()
        self._children = _children_cpu_seconds()
        self._wall = time.perf_counter()

    def finish(self) -> dict[str, Any]:
        """The ``load`` field: before, during (other processes' busy cores, steal) and after."""
        stat = _machine_cpu_seconds()
        wall = time.perf_counter() - self._wall
        during: dict[str, Any] = {"wall_seconds": round(wall, 3)}
        if stat and self._stat:
            busy = stat[0] - self._stat[0]
            total = max(stat[1] - self._stat[1], 1e-9)
            child = _children_cpu_seconds() - self._children
            during["other_busy_cores"] = round(max(0.0, busy - child) / max(wall, 1e-9), 3)
            during["steal_fraction"] = round((stat[2] - self._stat[2]) / total, 4)
        return {"cores_available": self.cores, "before": self.before, "during": during,
                "after": {"load_average": list(os.getloadavg())}}


def noisy_reasons(load: dict[str, Any] | None) -> list[str]:
    """What disturbed this run from outside (empty: nothing seen). Its own spread is judged against the machine's
    normal when records are summarised (``MachineJitter``)."""
    reasons = []
    if load:
        limit = OTHER_BUSY_CORES * load.get("cores_available", 1)
        for phase in ("before", "during"):
            other = load.get(phase, {}).get("other_busy_cores")
            if other is not None and other >= limit:
                names = ", ".join(p["name"] for p in load.get("before", {}).get("busy_processes", [])[:3])
                reasons.append(f"other processes used {other:.2f} cores {phase} the run (limit {limit:.2f})"
                               + (f": {names}" if names else ""))
        steal = load.get("during", {}).get("steal_fraction")
        if steal is not None and steal >= STEAL_FRACTION:
            reasons.append(f"CPU steal {steal:.1%} during the run (limit {STEAL_FRACTION:.0%})")
    return reasons


def iteration_spread(record: Any) -> float | None:
    """IQR / median of a run's iteration times (None without them)."""
    from ptybench.record import as_record

    record = as_record(record)
    median, q25, q75 = record.seconds_per_iteration, record.seconds_q25, record.seconds_q75
    return (q75 - q25) / median if median and q25 is not None and q75 is not None else None


def repeat_spread(seconds: list[float]) -> float | None:
    """(max − min) / median of s/iter over repeats in fresh processes; None for fewer than two."""
    import statistics

    values = [value for value in seconds if value]
    if len(values) < 2:
        return None
    return (max(values) - min(values)) / statistics.median(values)


def with_load(record: dict[str, Any], load: dict[str, Any]) -> dict[str, Any]:
    """``record`` with its ``load`` and ``noisy`` fields set."""
    return {**record, "load": load, "noisy": noisy_reasons(load)}


@dataclass(frozen=True)
class MachineJitter:
    """A machine's normal timing noise, measured from its own runs undisturbed from outside (no load flag): the
    median over those runs of the iterations' IQR/median, and of configurations' repeat spread."""

    machine: str
    runs: int
    iteration_spread: float | None
    repeat_spread: float | None

    def iteration_limit(self) -> float:
        return max(SPREAD, JITTER_FACTOR * (self.iteration_spread or 0.0))

    def repeat_limit(self) -> float:
        return max(SPREAD, JITTER_FACTOR * (self.repeat_spread or 0.0))

    def describe(self) -> str:
        if self.iteration_spread is None:
            return f"{self.machine}: no undisturbed runs to measure its normal jitter"
        text = (f"{self.machine}: a run's iterations normally vary {self.iteration_spread:.0%} (IQR/median, median of "
                f"{self.runs} undisturbed runs)")
        if self.repeat_spread is not None:
            text += f", repeats in fresh processes {self.repeat_spread:.0%} ((max − min)/median)"
        return text + (f"; flagged above {self.iteration_limit():.0%} and {self.repeat_limit():.0%}"
                       if self.repeat_spread is not None else f"; flagged above {self.iteration_limit():.0%}")


def machine_jitter(records: list[Any], key: Any) -> dict[str, MachineJitter]:
    """Each machine's normal jitter from its records (``key``: a record's configuration, to group repeats)."""
    import statistics

    from ptybench.machine import machine_name
    from ptybench.record import as_record

    spreads: dict[str, list[float]] = {}
    repeats: dict[str, dict[Any, list[float]]] = {}
    for record in map(as_record, records):
        if record.status != "ok" or record.noisy:
            continue
        name = machine_name(record.machine)
        spread = iteration_spread(record)
        if spread is not None:
            spreads.setdefault(name, []).append(spread)
        if record.seconds_per_iteration:
            repeats.setdefault(name, {}).setdefault(key(record), []).append(record.seconds_per_iteration)
    found = {}
    for name in set(spreads) | set(repeats):
        values = spreads.get(name, [])
        groups = [value for value in (repeat_spread(g) for g in repeats.get(name, {}).values()) if value is not None]
        found[name] = MachineJitter(name, len(values), statistics.median(values) if values else None,
                                    statistics.median(groups) if groups else None)
    return found
