"""Process isolation: every measurement runs in a child process (one, or one per MPI rank).

Why: the peak-memory reading starts clean, a crash or an out-of-memory kill takes only the child, and
the thread budget is in the environment before NumPy, numba or torch load (their pools size
themselves at import). The child runs in its own process group, which a timeout kills whole (mpiexec
and every rank), and dies with its parent, so a killed sweep leaves nothing computing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: Environment variables that size thread pools at import time.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS")


#: ``python -P``: the folder a user runs in is not put first on sys.path, so a ``numpy.py`` or ``psutil.py``
#: planted there is never imported by a measuring process (``-m`` would otherwise put the working folder first).
SAFE_PATH = ("-P",)


def oom_kill_count(folders: list[Path] | None = None) -> int | None:
    """How many processes the kernel's out-of-memory killer has killed in this process's memory cgroup, or in
    ``folders`` (cgroup v2 ``memory.events``, v1 ``memory.oom_control``); None where neither is readable."""
    from ptybench.engines.host_memory import memory_cgroup_folders

    for folder in memory_cgroup_folders() if folders is None else folders:
        for candidate in (folder / "memory.events", folder / "memory.oom_control"):
            try:
                for entry in candidate.read_text().splitlines():
                    name, _, value = entry.partition(" ")
                    if name == "oom_kill":
                        return int(value)
            except (OSError, ValueError):
                continue
    return None


def death_by_oom_killer(returncode: int | None, before: int | None, after: int | None) -> str | None:
    """What the evidence says when a child died by SIGKILL: the cgroup's oom_kill count rose meanwhile."""
    if returncode != -signal.SIGKILL or before is None or after is None or after <= before:
        return None
    return (f"killed by the kernel's out-of-memory killer (SIGKILL while the memory cgroup's oom_kill count "
            f"went from {before} to {after})")


def child_environment(threads: int | None, memory_limited: bool = False,
                      extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment with the thread budget set; with a memory limit, glibc set up so that the
    address-space cap counts what the algorithm holds: large blocks straight from mmap and back on
    free, one malloc arena (no 64 MB per-thread reservations to fall back on)."""
    environment = dict(os.environ)
    if threads is not None:
        for name in THREAD_VARIABLES:
            environment[name] = str(threads)
    if memory_limited:
        environment["MALLOC_MMAP_THRESHOLD_"] = "65536"
        environment["MALLOC_ARENA_MAX"] = "1"
    environment.setdefault("PYTHONUNBUFFERED", "1")
    environment["PYTHONSAFEPATH"] = "1"  # and for whatever the child starts in turn
    environment.update(extra or {})
    return environment


@dataclass(frozen=True)
class ChildOutcome:
    returncode: int | None
    stderr: str
    timed_out: bool
    seconds: float
    stdout: str = ""
    #: Why ``while_waiting`` stopped the child early (e.g. ranks stalled), if it did.
    stopped: str | None = None

    def why(self, lines: int = 15) -> str:
        """How the child ended, for a failure record: signal or exit status and the end of stderr."""
        tail = "\n".join([line for line in self.stderr.splitlines() if line.strip()][-lines:])
        if self.returncode is not None and self.returncode < 0:
            name = signal.Signals(-self.returncode).name
            hint = " (the kernel's out-of-memory killer sends SIGKILL)" if name == "SIGKILL" else ""
            return f"killed by {name}{hint}\n{tail}"
        return f"exit status {self.returncode}\n{tail}"


def run_child(command: list[str], environment: dict[str, str], timeout_s: float,
              stdin_text: str | None = None, while_waiting: Callable[[], None] | None = None,
              poll_s: float = 0.5, cgroup_procs: Path | None = None) -> ChildOutcome:
    """Run ``command`` isolated; on timeout kill its whole process group. ``while_waiting`` is called
    every ``poll_s`` seconds while the child runs (progress display, stall watch); when it returns a
    reason, the child is killed as on a timeout and the reason is kept in the outcome. ``cgroup_procs``
    (ptybench.emulated_host) puts the child in that cgroup before it starts, so all it allocates counts there."""
    started = time.time()

    def before_exec() -> None:
        _die_with_parent()
        if cgroup_procs is not None:
            cgroup_procs.write_text(str(os.getpid()))

    process = subprocess.Popen(command, stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment,
                               start_new_session=True, preexec_fn=before_exec)
    try:
        return _wait(process, stdin_text, started, timeout_s, while_waiting, poll_s)
    except BaseException:  # Ctrl-C, SIGTERM, an error here: the child's group never outlives the wait
        _kill_group(process)
        raise


def _wait(process: subprocess.Popen, stdin_text: str | None, started: float, timeout_s: float,
          while_waiting: Callable[[], None] | None, poll_s: float) -> ChildOutcome:
    pending_input = stdin_text
    while True:
        remaining = timeout_s - (time.time() - started)
        step = remaining if while_waiting is None else min(poll_s, remaining)
        try:
            stdout, stderr = process.communicate(pending_input, timeout=max(step, 0.0))
            break
        except subprocess.TimeoutExpired:
            pending_input = None  # already sent: communicate() continues where it stopped
            if time.time() - started >= timeout_s:
                _kill_group(process)
                stdout, stderr = process.communicate()
                return ChildOutcome(None, stderr or "", True, time.time() - started, stdout or "")
            if while_waiting is not None:
                reason = while_waiting()
                if reason:
                    _kill_group(process)
                    stdout, stderr = process.communicate()
                    return ChildOutcome(None, stderr or "", True, time.time() - started, stdout or "", reason)
    return ChildOutcome(process.returncode, stderr or "", False, time.time() - started, stdout or "")


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the parent dies (PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
