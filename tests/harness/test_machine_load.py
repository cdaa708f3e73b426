"""ptybench/machine_load.py: noise flags calibrated to the machine's own jitter, and a real neighbour seen."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from synthetic_records import synthetic_record

from ptybench.configurations import configuration_key, summarise
from ptybench.machine_load import machine_jitter


def _runs(spreads: list[float], detector: int = 64) -> list[dict]:
    records = []
    for repeat, spread in enumerate(spreads):
        record = synthetic_record(detector, 256, repeat=repeat)
        median = record["seconds_per_iteration"]
        record["seconds_q25"], record["seconds_q75"] = median * (1 - spread / 2), median * (1 + spread / 2)
        record["noisy"] = []
        records.append(record)
    return records


def test_a_machine_that_always_varies_15_percent_is_described_once_and_its_runs_are_not_flagged():
    records = _runs([0.14, 0.15, 0.16]) + _runs([0.15, 0.13, 0.17], detector=128)
    (jitter,) = machine_jitter(records, configuration_key).values()
    assert abs(jitter.iteration_spread - 0.15) < 0.011 and jitter.runs == 6
    assert "normally vary 15%" in jitter.describe()
    assert all(not row["noisy"] for row in summarise(records))


def test_a_run_worse_than_its_machines_normal_is_flagged_and_says_by_how_much():
    records = _runs([0.05, 0.06, 0.05]) + _runs([0.05, 0.04, 0.30], detector=128)
    rows = {row["detector"]: row for row in summarise(records)}
    assert rows[64]["noisy"] == []
    (reason,) = rows[128]["noisy"]
    assert "repeat 2: iterations spread 30%" in reason and "normal 5%" in reason


def test_a_real_process_spinning_on_one_core_flags_the_run_that_shares_the_machine():
    """Not a clamped range: a real neighbour burning a core while a real measurement runs."""
    from ptybench.measurement import Measurement
    from ptybench.runner import run_isolated

    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        record = run_isolated(Measurement(dataset="farfield-64-256", engine="DM", iterations=20, warmup=1,
                                          threads=1, fft_floor=False))
    finally:
        spinner.kill()
        spinner.wait()
    assert record["status"] == "ok", record["message"]
    assert any("other processes used" in reason for reason in record["noisy"]), record["noisy"]
    named = [p["pid"] for p in record["load"]["before"]["busy_processes"]]
    assert spinner.pid in named
    other = record["load"]["during"]["other_busy_cores"]
    assert np.isfinite(other) and other > 0.5
