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


MPICH_CLEANUP = ("BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES\nPID 4567 RUNNING AT node7\nEXIT CODE: 9\n"
                 "CLEANING UP REMAINING PROCESSES")


def test_the_rank_that_ended_first_is_named_where_mpich_names_a_rank_it_killed_in_clean_up(tmp_path):
    pid_files(tmp_path, [4567, 4568])  # MPICH names pid 4567 (rank 0), its clean-up's victim
    named = dead_rank(MPICH_CLEANUP, tmp_path, first_ended=[1])
    assert named.startswith("rank 1 (pid 4568 on node7) ended first")
    assert "rank 0" not in named


def test_a_tie_between_ranks_names_every_tied_rank_and_what_mpich_said(tmp_path):
    pid_files(tmp_path, [4567, 4568])
    named = dead_rank(MPICH_CLEANUP, tmp_path, first_ended=[0, 1])
    assert named.startswith("ranks 0, 1 ended within 2 ms of each other; mpiexec names rank 0 (pid 4567")


def test_the_kernel_tells_which_local_rank_ended_first(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from ptybench.rank_exits import RankExits

    sleepers = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) for _ in range(3)]
    try:
        with RankExits(tmp_path, poll_s=0.01) as exits:
            for rank, sleeper in enumerate(sleepers):
                (tmp_path / f"rank-{rank}.pid").write_text(f"{sleeper.pid} {os.uname().nodename}\n")
            (tmp_path / "rank-3.pid").write_text("1 another-node\n")  # not local: never watched
            time.sleep(0.3)  # the watcher opens a pidfd per file
            for rank in (2, 0):
                os.kill(sleepers[rank].pid, signal.SIGKILL)
                sleepers[rank].wait()
                time.sleep(0.2)
        assert exits.first() == [2]
        assert sorted(exits.ended) == [0, 2]  # rank 1 is alive, rank 3 is elsewhere
    finally:
        for sleeper in sleepers:
            sleeper.kill()
            sleeper.wait()
