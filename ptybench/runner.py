"""The serial runner: one measurement in a fresh ``python -m ptybench.runner`` process, one record.

The parent (``run_isolated``) starts the child through ptybench.isolation (thread budget set before
imports, timeout kills the process group, the child dies with its parent) and turns every way the child
can end into a record. The child calls ``ptybench.measurement.measure`` with a serial communicator:
the same code every MPI rank runs (ptybench.mpi_run).
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ptybench.emulated_host import emulated_host
from ptybench.isolation import SAFE_PATH, child_environment, death_by_oom_killer, oom_kill_count, run_child
from ptybench.machine_load import LoadWatch, with_load
from ptybench.measurement import DEFAULT_TARGET_ERROR, PROGRESS_VARIABLE, Measurement, measure, time_to_quality
from ptybench.memory_probes import allocation_failure
from ptybench.record import Record

__all__ = ["DEFAULT_TARGET_ERROR", "Measurement", "main", "run_isolated", "time_to_quality"]


def run_isolated(measurement: Measurement, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Measure in a fresh process; always returns a record (its status says how it went), with the
    machine's load around the run and the reasons it is noisy, if any (ptybench.machine_load).
    ``progress(iterations_done, iterations_total)`` is called while it runs, about twice a second."""
    watch = LoadWatch(measurement.threads)
    watch.start()
    record = _run_child_record(measurement, progress)
    return with_load(record, watch.finish())


def _run_child_record(measurement: Measurement, progress: Callable[[int, int], None] | None) -> dict[str, Any]:
    import json

    with tempfile.TemporaryDirectory(prefix="ptybench-run-") as scratch:
        result_path = Path(scratch) / "record.json"
        progress_path = Path(scratch) / "progress"
        extra = {PROGRESS_VARIABLE: str(progress_path)} if progress is not None else None
        environment = child_environment(measurement.threads, measurement.memory_limit_bytes is not None, extra)

        def report() -> None:
            done = _last_progress(progress_path)
            if done is not None:
                progress(*done)

        with contextlib.ExitStack() as stack:
            host = (stack.enter_context(emulated_host(measurement.host_memory_bytes))
                    if measurement.host_memory_bytes is not None else None)
            oom_before = host.oom_kills() if host else oom_kill_count()
            outcome = run_child([sys.executable, *SAFE_PATH, "-m", "ptybench.runner", str(result_path)],
                                environment, measurement.timeout_s, stdin_text=measurement.to_json(),
                                while_waiting=report if progress is not None else None,
                                cgroup_procs=host.procs if host else None)
            oom_after = host.oom_kills() if host else oom_kill_count()
        if progress is not None:
            report()
        if outcome.timed_out:
            return Record.failure(measurement, "timeout", f"no result after {measurement.timeout_s:g} s; killed",
                                  outcome.seconds).to_dict()
        if result_path.exists():
            return json.loads(result_path.read_text())
        kept = _record_on_stdout(outcome.stdout)
        if kept is not None:
            return kept
        oom = death_by_oom_killer(outcome.returncode, oom_before, oom_after)
        if oom is None and outcome.returncode:
            oom = allocation_failure(outcome.stderr)
        if oom is not None:
            return Record.failure(measurement, "oom", oom, outcome.seconds).to_dict()
        return Record.failure(measurement, "error", outcome.why(), outcome.seconds).to_dict()


#: Where the child could not write its record file, it prints the record on one stdout line after this.
RECORD_MARKER = "ptybench-record: "


def _record_on_stdout(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith(RECORD_MARKER):
            try:
                return json.loads(line[len(RECORD_MARKER):])
            except ValueError:
                return None
    return None


def _last_progress(path: Path) -> tuple[int, int] | None:
    try:
        lines = path.read_text().split()
    except OSError:
        return None
    if len(lines) < 2:
        return None
    try:
        return int(lines[-2]), int(lines[-1])
    except ValueError:
        return None


def main(argv: list[str] | None = None) -> int:
    """Child entry point: read a Measurement (JSON) on stdin, write the record to argv[0]."""
    from ptybench.engines.communication import SerialCommunicator
    from ptybench.results import write_json_atomically

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m ptybench.runner RESULT.json < measurement.json", file=sys.stderr)
        return 2
    measurement = Measurement.from_json(sys.stdin.read())
    started = time.time()
    try:
        record = measure(measurement, SerialCommunicator())
    except Exception as error:
        detail = "".join(traceback.format_exception(error)[-3:]).strip()
        record = Record.failure(measurement, "error", f"{type(error).__name__}: {error}\n{detail}",
                                time.time() - started)
    try:
        write_json_atomically(argv[0], record.to_dict())
    except OSError:  # the parent's folder went (a tmp cleaner, a full disk): the measured point is not lost
        print(RECORD_MARKER + json.dumps(record.to_dict(), default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
