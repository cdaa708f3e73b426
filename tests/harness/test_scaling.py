"""Process control of distributed runs without launching any: the stall watch on planted heartbeats, and the
dead rank named from what MPICH, Open MPI and srun print."""

from __future__ import annotations

import time

import pytest

from ptybench.scaling import StallWatch, dead_rank


def beat(folder, rank, done, seconds_ago):
    (folder / f"rank-{rank}.beat").write_text(f"{done} {time.time() - seconds_ago}\n")


def test_the_stall_watch_waits_for_every_rank_then_kills_after_its_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("PTYBENCH_STALL_S", "60")
    watch = StallWatch(tmp_path, ranks=2)
    beat(tmp_path, 0, 3, seconds_ago=500)
    assert watch() is None  # rank 1 has not started iterating: set-up is not watched
    assert "rank(s) 1 never started iterating" in watch.describe()
    beat(tmp_path, 1, 3, seconds_ago=30)
    assert watch() is None  # the newest beat is 30 s old, under the 60 s limit
    beat(tmp_path, 1, 3, seconds_ago=90)
    assert watch().startswith("stalled: no rank finished an iteration for 90 s (limit 60 s)")


def test_the_limit_grows_to_ten_times_the_longest_gap_seen(tmp_path, monkeypatch):
    monkeypatch.setenv("PTYBENCH_STALL_S", "10")
    watch = StallWatch(tmp_path, ranks=1)
    beat(tmp_path, 0, 1, seconds_ago=100)
    watch()  # the first look records the newest beat
    beat(tmp_path, 0, 2, seconds_ago=50)  # a 50 s iteration: the limit becomes 500 s
    assert watch() is None and watch.longest_gap == pytest.approx(50, abs=1)


def pid_files(folder, pids):
    for rank, pid in enumerate(pids):
        (folder / f"rank-{rank}.pid").write_text(f"{pid} node7\n")


@pytest.mark.parametrize(("output", "expected"), [
    ("BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES\nPID 4568 RUNNING AT node7\nEXIT CODE: 9",
     "rank 1 (pid 4568 on node7) was killed by SIGKILL (signal 9); the kernel's out-of-memory killer sends SIGKILL"),
    ("PID 4567 RUNNING AT node7\nKILLED BY SIGNAL: 15 (Terminated)\nsignal 15",
     "rank 0 (pid 4567 on node7) was killed by SIGTERM (signal 15)"),
    ("mpirun noticed that process rank 1 with PID 4568 on node node7 exited on signal 9 (Killed).",
     "rank 1 (pid 4568 on node7) was killed by SIGKILL (signal 9)"),
    ("srun: error: node7: task 1: Killed", "rank 1 (on node7) was killed by SIGKILL (signal 9)"),
    ("srun: error: node3: task 2: Exited with exit code 3", "rank 2 (on node3) exited with code 3"),
    ("all ranks finished", None),
], ids=["mpich SIGKILL", "mpich SIGTERM", "open mpi", "srun killed", "srun exit code", "nothing"])
def test_the_dead_rank_is_named_from_every_launchers_words(tmp_path, output, expected):
    pid_files(tmp_path, [4567, 4568])
    named = dead_rank(output, tmp_path)
    if expected is None:
        assert named is None
    else:
        assert named.startswith(expected)
