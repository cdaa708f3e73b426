"""ptybench/isolation.py: how every measuring child is started, watched, timed out and killed."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from ptybench.isolation import ChildOutcome, child_environment, death_by_oom_killer, run_child


def test_the_thread_budget_and_safe_path_reach_the_child():
    environment = child_environment(3, memory_limited=True, extra={"EXTRA": "x"})
    outcome = run_child([sys.executable, "-c", "import os; print(os.environ['OMP_NUM_THREADS'], "
                         "os.environ['PYTHONSAFEPATH'], os.environ['MALLOC_ARENA_MAX'], os.environ['EXTRA'])"],
                        environment, 60)
    assert outcome.returncode == 0 and outcome.stdout.split() == ["3", "1", "1", "x"]


def test_a_timeout_kills_the_childs_whole_process_group(tmp_path):
    """The child starts a grandchild that would outlive a plain kill; the group kill takes both."""
    marker = tmp_path / "grandchild.pid"
    script = ("import subprocess, sys, time; "
              f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
              f"open({str(marker)!r}, 'w').write(str(p.pid)); time.sleep(60)")
    outcome = run_child([sys.executable, "-c", script], child_environment(None), timeout_s=3)
    assert outcome.timed_out and outcome.returncode is None
    grandchild = int(marker.read_text())
    for _ in range(50):  # the kernel reaps it shortly after the group's SIGKILL
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"grandchild {grandchild} outlived the timeout")


def test_a_watcher_that_gives_a_reason_stops_the_child_and_the_reason_is_kept():
    calls = []

    def watcher():
        calls.append(1)
        return "ranks stalled" if len(calls) >= 2 else None

    outcome = run_child([sys.executable, "-c", "import time; time.sleep(60)"], child_environment(None), 60,
                        while_waiting=watcher, poll_s=0.2)
    assert outcome.timed_out and outcome.stopped == "ranks stalled" and outcome.seconds < 30


def test_how_a_child_ended_is_said_with_the_signal_and_stderr():
    killed = ChildOutcome(-signal.SIGKILL, "line 1\nlast words\n", False, 1.0)
    assert killed.why().startswith("killed by SIGKILL (the kernel's out-of-memory killer sends SIGKILL)")
    assert "last words" in killed.why()
    assert ChildOutcome(3, "boom", False, 1.0).why() == "exit status 3\nboom"


def test_an_oom_kill_is_named_only_when_the_cgroup_counted_one():
    assert death_by_oom_killer(-signal.SIGKILL, 4, 5).startswith("killed by the kernel's out-of-memory killer")
    assert death_by_oom_killer(-signal.SIGKILL, 4, 4) is None
    assert death_by_oom_killer(-signal.SIGKILL, None, 5) is None
    assert death_by_oom_killer(1, 4, 5) is None
