"""The regression gate on two git revisions: asv builds both commits and runs the benchmarks with their samples
recorded, the timing benchmarks in interleaved rounds (one fresh process per round and commit); ptybench's gate
judges the samples (``ptybench.gate``), asv's own verdict is not used.

A benchmark whose time the first look cannot call (*uncertain*: too few undisturbed processes, or an interval
too wide) gets a **second look**: twice as many rounds again of its timing benchmark (that parameter
combination only), appended to the first, and the gate judges all of them. On the 2-core box a quarter of the processes
run 1.3–2× slow with nothing visible in the guest (docs/guide.md, "The regression gate"): the second look turns
those comparisons into a call without making every comparison pay for it.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from ptybench import gate
from ptybench.benchmarks.common import PRELOAD_VARIABLE
from ptybench.engines.errors import InputError


def revision(text: str) -> str:
    """The commit hash of a git revision of the repository in the working directory."""
    done = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{text}^{{commit}}"], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise InputError(f"compare: {text!r} is neither a results file nor a git revision of this repository")
    return done.stdout.strip()


def asv_executable() -> str:
    beside = Path(sys.executable).parent / "asv"  # the environment's own asv, even when its bin is not on PATH
    asv = str(beside) if beside.is_file() else shutil.which("asv")
    if asv is None:
        raise InputError("compare: git revisions need asv (pip install 'ptybench[bench]'); or pass results files")
    return asv


def timing_benchmarks(labels: list[str]) -> str:
    """asv's --bench regular expression for the timing benchmarks of these gate rows only: a row
    ``Class('DM', 'numpy')`` is asv's ``module.Class.time_name('DM', 'numpy')`` (asv selects parameter
    combinations by regular expression on that name)."""
    patterns = []
    for label in sorted(labels):
        cls, bracket, params = label.partition("(")
        patterns.append(rf"{re.escape(cls)}\.time_\w+" + (re.escape(bracket + params) if bracket else "$"))
    return "|".join(patterns)


#: Fresh processes per configuration of the record benchmarks (``track_*``) in a gate run: memory and accuracy
#: come from there, time from the timing rounds (ptybench/benchmarks/bench_records.py, RUNS).
RECORD_RUNS = 1


#: The second look's rounds per first-look round. On the 2-core box 4 + 8 rounds caught every 10 % and 25 %
#: slowdown in 20 comparisons of each with no false alarm, 4 + 4 19 of 20 each (docs/guide.md, "The regression
#: gate"); with each benchmark built once per process the 4 + 8 gate took 7.5 minutes, environments included.
SECOND_LOOK_FACTOR = 2


#: Threads of every benchmark in a gate run. On the 2-core box, with 2 threads 5 of 8 processes a side ran more
#: than 1.10x slower than the side's fastest and 13 of 14 timing comparisons of identical code stayed uncertain
#: (one was called slower); the gate's false-alarm and detection rates were measured with one thread.
GATE_THREADS = 1


#: The asv methods the gate judges (``gate.samples_from_asv``'s roles) less ``peakmem_``: the records' measured
#: footprint is the memory it judges, and a forked benchmark's peak RSS also counts the modules its server
#: preloaded. What it does not judge (FFT-floor ratios, the records' seconds, the 2-rank cost) is not run.
JUDGED_METHODS = r"time_\w+|track_\w*memory\w*|track_object_error"


def gated_benchmarks(bench: str) -> str:
    """asv's --bench regular expression for the benchmarks of ``bench`` that the gate judges (JUDGED_METHODS)."""
    return rf"^(?=[\w.]*\.(?:{JUDGED_METHODS})\b).*(?:{bench})"


def run_asv(asv: str, base_hash: str, head_hash: str, bench: str, rounds: int, append: bool = False,
            threads: int = GATE_THREADS) -> None:
    """``asv continuous`` on both commits, samples recorded, rounds interleaved between them (the benchmarks read
    their rounds, runs and threads from PTYBENCH_BENCH_*: ptybench/benchmarks/common.py). Benchmarks are forked
    from asv's server with NumPy, numba, torch and the engines imported once (``benchmarks.common.preload``),
    not spawned each with its own imports."""
    command = [asv, "continuous", "--append-samples" if append else "--record-samples", "--interleave-rounds",
               "--launch-method", "forkserver", "--factor", "1000", "--no-only-changed", "--bench", bench,
               base_hash, head_hash]
    subprocess.run(command, check=False, env={**os.environ, "PTYBENCH_BENCH_ROUNDS": str(rounds),
                                              "PTYBENCH_BENCH_RUNS": str(RECORD_RUNS),
                                              "PTYBENCH_BENCH_THREADS": str(threads), PRELOAD_VARIABLE: "1"})


def read_samples(base_hash: str, head_hash: str) -> tuple[dict[str, gate.Samples], dict[str, gate.Samples]]:
    from asv.util import load_json

    config = load_json("asv.conf.json", js_comments=True)  # asv's own reader of its commented JSON
    machine = platform.node()
    results_dir = config.get("results_dir", ".asv/results")
    return (gate.samples_from_asv(results_dir, machine, base_hash),
            gate.samples_from_asv(results_dir, machine, head_hash))


def compare_revisions(base: str, head: str, bench: str, rounds: int, second_look: bool = True,
                      threads: int = GATE_THREADS, second_look_rounds: int | None = None,
                      **judge: Any) -> list[gate.GateRow]:
    """The gate's rows for two revisions; ``judge``: ``gate.compare``'s thresholds. The second look takes
    ``second_look_rounds`` more rounds (default: SECOND_LOOK_FACTOR times the first look's)."""
    more = second_look_rounds or SECOND_LOOK_FACTOR * rounds
    base_hash, head_hash = revision(base), revision(head)
    asv = asv_executable()
    subprocess.run([asv, "machine", "--yes"], check=True, capture_output=True)
    run_asv(asv, base_hash, head_hash, gated_benchmarks(bench), rounds, threads=threads)
    rows = gate.compare(*read_samples(base_hash, head_hash), **judge)
    uncertain = {row.benchmark for row in rows if "uncertain" in row.verdicts}
    if second_look and uncertain:
        print(f"second look: {len(uncertain)} benchmark(s) uncertain, {more} more rounds of their timing",
              flush=True)
        run_asv(asv, base_hash, head_hash, timing_benchmarks(sorted(uncertain)), more, append=True,
                threads=threads)
        rows = gate.compare(*read_samples(base_hash, head_hash), **judge)
        for row in rows:
            if row.benchmark in uncertain:
                row.note = (row.note + "; " if row.note else "") + f"second look: {rounds + more} rounds a side"
    return rows
