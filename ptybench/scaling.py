"""Strong and weak scaling: MPI launches, Amdahl/Gustafson/Karp–Flatt fits, an all-reduce cost model.

Strong scaling keeps the dataset fixed and adds ranks; weak scaling keeps frames per rank fixed, so N
(and the scanned area) grow with the ranks. Each point is ``mpiexec -n K python -m mpi4py -m
ptybench.mpi_run`` under a timeout, appended to the results store like any other measurement.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ptybench.engines.environment import env_number
from ptybench.engines.errors import InputError
from ptybench.isolation import SAFE_PATH, child_environment, run_child
from ptybench.launchers import Launcher, MPIUnavailable, mpiexec_path  # noqa: F401  (re-exported)
from ptybench.measurement import HEARTBEAT_VARIABLE, Measurement
from ptybench.rank_exits import RankExits
from ptybench.record import Record


def mpi_command(ranks: int, module: str, *arguments: str, launcher: Launcher | None = None) -> list[str]:
    """Always through ``-m mpi4py``: an exception on one rank then aborts every rank (no hang)."""
    program = [sys.executable, *SAFE_PATH, "-m", "mpi4py", "-m", module, *arguments]
    return (launcher or Launcher()).command(ranks, program)


def run_mpi(measurement: Measurement, arrays_path: str | None = None,
            extra_environment: dict[str, str] | None = None, launcher: Launcher | None = None) -> dict[str, Any]:
    """One distributed measurement with ``measurement.ranks`` ranks; always returns a record, with the
    machine's load around it (ptybench.machine_load) and where its ranks ran (``launch``)."""
    from ptybench.launchers import placement
    from ptybench.machine_load import LoadWatch, with_load

    launcher = launcher or Launcher()
    measurement = dataclasses.replace(measurement, ranks=int(measurement.ranks))
    watch = LoadWatch()
    watch.start()
    record = _run_mpi_record(measurement, arrays_path, extra_environment, launcher)
    record["launch"] = {**launcher.describe(), **placement(record.get("per_rank") or [])}
    return with_load(record, watch.finish())


def _run_mpi_record(measurement: Measurement, arrays_path: str | None,
                    extra_environment: dict[str, str] | None, launcher: Launcher) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ptybench-mpi-") as scratch:
        config, result = Path(scratch) / "measurement.json", Path(scratch) / "record.json"
        config.write_text(measurement.to_json())
        command = mpi_command(measurement.ranks, "ptybench.mpi_run", str(config), str(result),
                              *([arrays_path] if arrays_path else []), launcher=launcher)
        environment = child_environment(measurement.threads, measurement.memory_limit_bytes is not None,
                                        {**dict(launcher.environment), HEARTBEAT_VARIABLE: scratch,
                                         **(extra_environment or {})})
        watch = StallWatch(Path(scratch), measurement.ranks)
        with RankExits(Path(scratch)) as exits:
            outcome = run_child(command, environment, measurement.timeout_s, while_waiting=watch, poll_s=1.0)
        if outcome.timed_out:
            why = outcome.stopped or f"no result after {measurement.timeout_s:g} s; killed"
            return Record.failure(measurement, "timeout", f"{why}; {watch.describe()}", outcome.seconds).to_dict()
        if outcome.returncode == 0 and result.exists():
            return json.loads(result.read_text())
        lines = [line for line in outcome.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if "Error" in line or "rank" in line.lower()]
        message = "\n".join((errors or lines)[-12:])
        dead = dead_rank(outcome.stdout + outcome.stderr, Path(scratch), exits.first())
        return Record.failure(measurement, "error", f"{dead or f'mpiexec exit status {outcome.returncode}'}\n"
                              f"{message}".strip(), outcome.seconds).to_dict()


class StallWatch:
    """Kills a distributed run in which no rank has finished an iteration for much longer than iterations
    take (a cut link, a hung collective): the record then names each rank and where it stopped, instead
    of the job waiting for its timeout. Starts once every rank has beaten once (set-up is not watched).
    The limit is the longer of ``PTYBENCH_STALL_S`` (default 120 s) and 10× the longest gap seen."""

    def __init__(self, folder: Path, ranks: int) -> None:
        self.folder = folder
        self.ranks = ranks
        self.minimum_s = env_number("PTYBENCH_STALL_S", 120.0, minimum=1.0)
        self.longest_gap = 0.0
        self.last_newest: float | None = None

    def beats(self) -> dict[int, tuple[int, float]]:
        found = {}
        for path in self.folder.glob("rank-*.beat"):
            try:
                done, when = path.read_text().split()
                found[int(path.stem.removeprefix("rank-"))] = (int(done), float(when))
            except (OSError, ValueError):
                continue
        return found

    def describe(self) -> str:
        beats = self.beats()
        if not beats:
            return "no rank reached its first iteration"
        now = time.time()
        parts = [f"rank {rank} after iteration {done} ({now - when:.0f} s ago)"
                 for rank, (done, when) in sorted(beats.items())]
        missing = [str(rank) for rank in range(self.ranks) if rank not in beats]
        return "; ".join(parts + ([f"rank(s) {', '.join(missing)} never started iterating"] if missing else []))

    def __call__(self) -> str | None:
        beats = self.beats()
        if len(beats) < self.ranks:
            return None
        newest = max(when for _, when in beats.values())
        if self.last_newest is not None and newest > self.last_newest:
            self.longest_gap = max(self.longest_gap, newest - self.last_newest)
        self.last_newest = newest
        limit = max(self.minimum_s, 10 * self.longest_gap)
        idle = time.time() - newest
        if idle > limit:
            return f"stalled: no rank finished an iteration for {idle:.0f} s (limit {limit:.0f} s); killed"
        return None


def dead_rank(launcher_output: str, scratch: Path, first_ended: list[int] | None = None) -> str | None:
    """"rank 1 (pid 123 on node7) was killed by SIGKILL": from what the launcher printed. MPICH names a PID
    (every rank wrote its PID beside the record, ptybench.mpi_run, so the PID names the rank) and a signal or
    exit code; Open MPI's mpirun names the rank, PID, node and signal; srun names the node and task (rank).

    MPICH names the lowest rank that ended badly, which may be one its clean-up killed after the real
    victim; ``first_ended`` (ptybench.rank_exits, the local ranks in the order the kernel saw them end)
    then names the rank that went first, and a tie names every tied rank."""
    import re

    pids = {}
    for path in scratch.glob("rank-*.pid"):
        number, _, host = path.read_text().strip().partition(" ")
        pids[path.stem.removeprefix("rank-")] = (number, host)
    ranks = {pid: rank for rank, (pid, _host) in pids.items()}
    mpich = re.search(r"PID (\d+) RUNNING AT (\S+)", launcher_output)
    if mpich is not None:
        code = re.search(r"signal (\d+)", launcher_output) or re.search(r"EXIT CODE: (\d+)", launcher_output)
        how = _how(int(code.group(1)) if code else None)
        if len(first_ended or []) == 1:
            rank = str(first_ended[0])
            pid, host = pids.get(rank, ("?", "?"))
            return f"rank {rank} (pid {pid} on {host}) ended first, and mpiexec stopped the others; a rank {how}"
        if first_ended:
            tied = ", ".join(str(rank) for rank in first_ended)
            return (f"ranks {tied} ended within 2 ms of each other; mpiexec names rank "
                    f"{ranks.get(mpich.group(1), '?')} (pid {mpich.group(1)} on {mpich.group(2)}): {how}")
        return f"rank {ranks.get(mpich.group(1), '?')} (pid {mpich.group(1)} on {mpich.group(2)}) {how}"
    open_mpi = re.search(r"process rank (\d+) with PID (\d+) on node (\S+) exited on signal (\d+)",
                         launcher_output)
    if open_mpi is not None:
        rank, pid, node, signal_number = open_mpi.groups()
        return f"rank {rank} (pid {pid} on {node}) {_how(int(signal_number))}"
    srun = re.search(r"srun: error: (\S+): tasks? (\d+)[^:]*: (Killed|Terminated|Exited with exit code (\d+))",
                     launcher_output)
    if srun is not None:
        node, rank, what, code = srun.groups()
        number = 9 if what == "Killed" else 15 if what == "Terminated" else None
        how = _how(number) if number is not None else f"exited with code {code}"
        return f"rank {rank} (on {node}) {how}"
    return None


def _how(number: int | None) -> str:
    """"was killed by SIGKILL (signal 9)…" for a signal number, "exited with code N" otherwise."""
    import signal as signals

    if number is None:
        return "ended"
    try:
        name = signals.Signals(number).name
    except ValueError:
        return f"exited with code {number}"
    how = f"was killed by {name} (signal {number})"
    return how + ("; the kernel's out-of-memory killer sends SIGKILL" if name == "SIGKILL" else "")


def scaling_points(base: Measurement, mode: str, ranks: list[int], frames_per_rank: int | None = None
                   ) -> list[Measurement]:
    """Strong: the same dataset for every K. Weak: N = frames_per_rank·K (default: the dataset's N / K₀)."""
    if mode not in ("strong", "weak"):
        raise InputError(f"mode: expected 'strong' or 'weak', got {mode!r}")
    if not ranks or any(int(k) != k or k < 1 for k in ranks):
        raise InputError(f"ranks: expected positive integers, got {ranks!r}")
    if mode == "strong":
        return [dataclasses.replace(base, ranks=k) for k in ranks]
    if frames_per_rank is None:
        from ptybench.datasets import get_spec
        frames_per_rank = get_spec(base.dataset).n_frames // min(ranks)
    return [dataclasses.replace(base, ranks=k, dataset_changes={**base.dataset_changes,
                                                                "n_frames": frames_per_rank * k}) for k in ranks]


# --- fits ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AmdahlFit:
    """T(K) = T1·(s + (1 − s)/K)."""

    serial_fraction: float
    t1: float

    def time(self, ranks: Any) -> Any:
        ranks = np.asarray(ranks, dtype=float)
        return self.t1 * (self.serial_fraction + (1 - self.serial_fraction) / ranks)

    def speedup(self, ranks: Any) -> Any:
        return self.t1 / self.time(ranks)


def fit_amdahl(ranks: Any, seconds: Any) -> AmdahlFit:
    """Least squares of T = a + b/K (a = T1·s, b = T1·(1 − s)); s clipped to [0, 1]."""
    ranks, seconds = np.asarray(ranks, dtype=float), np.asarray(seconds, dtype=float)
    if len(np.unique(ranks)) < 2:
        raise InputError("ranks: an Amdahl fit needs times at two or more rank counts")
    design = np.stack([np.ones_like(ranks), 1 / ranks], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, seconds, rcond=None)
    t1 = a + b
    return AmdahlFit(float(np.clip(a / t1, 0.0, 1.0)) if t1 > 0 else 1.0, float(t1))


def fit_gustafson(ranks: Any, scaled_speedup: Any) -> float:
    """Serial fraction s of S(K) = K − s·(K − 1), by least squares (weak scaling)."""
    ranks, scaled_speedup = np.asarray(ranks, dtype=float), np.asarray(scaled_speedup, dtype=float)
    weights = ranks - 1
    if not np.any(weights > 0):
        raise InputError("ranks: a Gustafson fit needs a point with more than one rank")
    return float(np.clip(np.sum(weights * (ranks - scaled_speedup)) / np.sum(weights**2), 0.0, 1.0))


def karp_flatt(speedup: Any, ranks: Any) -> Any:
    """Experimentally determined serial fraction e = (1/S − 1/K)/(1 − 1/K); NaN at K = 1."""
    speedup, ranks = np.asarray(speedup, dtype=float), np.asarray(ranks, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ranks > 1, (1 / speedup - 1 / ranks) / (1 - 1 / ranks), np.nan)


@dataclass(frozen=True)
class AllreduceModel:
    """Ring all-reduce on K ranks: t = 2(K − 1)·α + 2(K − 1)/K · bytes/β."""

    latency_s: float
    bandwidth_bytes_per_s: float

    def seconds(self, n_bytes: float, ranks: int) -> float:
        if ranks <= 1:
            return 0.0
        return 2 * (ranks - 1) * self.latency_s + 2 * (ranks - 1) / ranks * n_bytes / self.bandwidth_bytes_per_s


#: Sizes from which the all-reduce time is bandwidth-bound: β is fitted on these (and α on the smallest).
BANDWIDTH_SIZES_BYTES = 2**20


def fit_allreduce(sizes_bytes: Any, seconds: Any, ranks: int) -> AllreduceModel:
    """α and β of t = 2(K − 1)·α + 2(K − 1)/K·bytes/β from all-reduce times at one rank count: β from the
    slope over the sizes ≥ 1 MB (small messages ride a link's burst allowance and caches, so a fit over all
    sizes let them set the slope: a 1 Gbit/s link read as 3.2 Gbit/s), α from the smallest size."""
    if ranks < 2:
        raise InputError(f"ranks: the all-reduce model needs two or more ranks, got {ranks}")
    sizes, seconds = np.asarray(sizes_bytes, dtype=float), np.asarray(seconds, dtype=float)
    order = np.argsort(sizes)
    sizes, seconds = sizes[order], seconds[order]
    large = sizes >= BANDWIDTH_SIZES_BYTES
    if large.sum() < 2:
        large = np.ones_like(sizes, dtype=bool)
    c1, _ = np.polyfit(sizes[large], seconds[large], 1)
    bandwidth = (2 * (ranks - 1) / ranks) / max(c1, 1e-30)
    latency = max(seconds[0] - 2 * (ranks - 1) / ranks * sizes[0] / bandwidth, 0.0) / (2 * (ranks - 1))
    return AllreduceModel(float(latency), float(bandwidth))


def predict_strong(compute_fit: AmdahlFit, model: AllreduceModel, bytes_per_iteration: float,
                   ranks: list[int]) -> list[dict[str, float]]:
    """Seconds per iteration at ``ranks``: Amdahl-fitted compute plus modelled all-reduce (a prediction)."""
    rows = []
    for k in ranks:
        compute = float(compute_fit.time(k))
        communication = model.seconds(bytes_per_iteration, k)
        total = compute + communication
        rows.append({"ranks": k, "compute_s": compute, "communication_s": communication, "seconds": total,
                     "speedup": compute_fit.t1 / total, "efficiency": compute_fit.t1 / total / k})
    return rows


def run_allreduce_benchmark(ranks: int = 2, timeout_s: float = 120.0, launcher: Launcher | None = None,
                            extra_environment: dict[str, str] | None = None) -> dict[str, Any]:
    """Time MPI all-reduce of float32 buffers from 4 KB to 64 MB on ``ranks`` ranks (ptybench.mpi_bench),
    started by the same launcher as the measurements (the same fabric)."""
    with tempfile.TemporaryDirectory(prefix="ptybench-allreduce-") as scratch:
        result = Path(scratch) / "allreduce.json"
        command = mpi_command(ranks, "ptybench.mpi_bench", str(result), launcher=launcher)
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL,
                                   env={**os.environ, "OMP_NUM_THREADS": "1",
                                        **dict((launcher or Launcher()).environment), **(extra_environment or {})})
        if completed.returncode != 0 or not result.exists():
            raise RuntimeError(f"all-reduce benchmark failed (exit {completed.returncode}): "
                               f"{completed.stderr.strip()[-2000:]}")
        data = json.loads(result.read_text())
    model = fit_allreduce(data["bytes"], data["seconds"], ranks)
    data.update(latency_s=model.latency_s, bandwidth_bytes_per_s=model.bandwidth_bytes_per_s)
    return data


def scaling_table(records: list[dict[str, Any]], mode: str) -> list[dict[str, Any]]:
    """Speedup, efficiency and Karp–Flatt per point, relative to the smallest rank count measured."""
    ok = sorted((r for r in records if r.get("status") == "ok"), key=lambda r: r["ranks"])
    if not ok:
        return []
    base = ok[0]
    rows = []
    for record in ok:
        k, k0 = record["ranks"], base["ranks"]
        ratio = base["seconds_per_iteration"] / record["seconds_per_iteration"]
        # strong: S = K₀·T₀/T; weak (work ∝ K): scaled speedup S = K·T₀/T, efficiency T₀/T
        speedup = ratio * k0 if mode == "strong" else ratio * k
        efficiency = speedup / k
        rows.append({"ranks": k, "n_frames": record["dataset_info"]["n_frames"],
                     "seconds": record["seconds_per_iteration"], "compute_s": record.get("compute_seconds"),
                     "communication_s": record.get("communication_seconds"), "speedup": speedup,
                     "efficiency": efficiency, "karp_flatt": float(karp_flatt(speedup, k)) if k > 1 else math.nan,
                     "object_error": record.get("object_error")})
    return rows
