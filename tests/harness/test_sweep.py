"""Sweeps: configuration, resumption after a killed measurement or a killed sweep, failures as data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from ptybench.cli import main
from ptybench.results import measurement_key, read_records
from ptybench.sweep import SweepConfig, pending, run_sweep

TINY_SWEEP = ["--datasets", "farfield-64-256", "--engines", "DM,ePIE,ML", "--backends", "numpy",
              "--iterations", "1", "--warmup", "0", "--threads", "1", "--no-progress"]


def sweep_command(out, *extra):
    return [sys.executable, "-m", "ptybench", "sweep", *TINY_SWEEP, "--out", str(out), *extra]


def wait_for(predicate, timeout=60.0, interval=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not reached in time")


def measuring_child(parent):
    """The runner child once it runs ptybench.runner (not the instant between fork and exec)."""
    for child in parent.children():
        try:
            if "ptybench.runner" in " ".join(child.cmdline()):
                return child
        except psutil.Error:
            continue
    return None


def keys_of(out):
    config = SweepConfig(datasets=["farfield-64-256"], engines=["DM", "ePIE", "ML"], iterations=1, warmup=0,
                         threads=1, out=str(out))
    return {measurement_key(m.identity()) for m in config.measurements()}


def test_killed_measurement_is_recorded_and_the_sweep_goes_on_then_resumes(tmp_path):
    out = tmp_path / "r.jsonl"
    sweep = subprocess.Popen(sweep_command(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parent = psutil.Process(sweep.pid)
    child = wait_for(lambda: measuring_child(parent))
    child.send_signal(signal.SIGKILL)                     # the measurement dies, not the sweep
    assert sweep.wait(timeout=120) == 0
    records = read_records(out)
    assert len(records) == 3
    assert sorted(r["status"] for r in records) == ["error", "ok", "ok"]
    assert "SIGKILL" in next(r["message"] for r in records if r["status"] == "error")
    assert main(["sweep", *TINY_SWEEP, "--out", str(out), "--retry-failed"]) == 0
    records = read_records(out)
    ok = Counter(r["key"] for r in records if r["status"] == "ok")
    assert set(ok) == keys_of(out) and set(ok.values()) == {1}   # none lost, none twice


def test_killed_sweep_leaves_no_orphan_and_resumes_without_loss_or_duplicates(tmp_path):
    out = tmp_path / "r.jsonl"
    sweep = subprocess.Popen(sweep_command(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parent = psutil.Process(sweep.pid)
    wait_for(lambda: out.exists() and out.read_text().count("\n") >= 1)
    child = wait_for(lambda: next(iter(parent.children()), None))
    os.kill(sweep.pid, signal.SIGKILL)                      # the sweep itself dies mid-measurement
    sweep.wait(timeout=30)
    wait_for(lambda: not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, timeout=10)
    before = read_records(out)
    assert 1 <= len(before) < 3 and all(r["status"] == "ok" for r in before)
    result = subprocess.run(sweep_command(out), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"{len(before)} already in" in result.stdout
    records = read_records(out)                             # every line parses
    assert records[:len(before)] == before                  # nothing rewritten
    assert Counter(r["key"] for r in records) == Counter(keys_of(out))


def test_two_sweeps_on_one_file_measure_every_point_once(tmp_path):
    """Each point is claimed before it is measured: the second sweep skips what the first is measuring."""
    out = tmp_path / "r.jsonl"
    sweeps = [subprocess.Popen(sweep_command(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
              for _ in range(2)]
    for sweep in sweeps:
        assert sweep.wait(timeout=300) == 0, sweep.stderr.read()
    records = read_records(out)
    assert Counter(r["key"] for r in records) == Counter(keys_of(out))   # three points, once each
    assert not any((tmp_path / "r.jsonl.claims").iterdir())              # no claim left behind


def _claim_each(out, log, measurements, barrier):
    from ptybench.sweep import claim

    barrier.wait()
    for measurement in measurements:
        with claim(out, measurement) as mine:
            if mine:
                key = measurement_key(measurement.identity())
                with open(log, "a") as stream:
                    stream.write(f"start {key}\n")
                time.sleep(0.002)
                with open(log, "a") as stream:
                    stream.write(f"end {key}\n")


def test_a_claim_is_held_by_one_process_at_a_time_under_contention(tmp_path):
    """Many processes racing for the same points: no two ever hold one point at once."""
    import multiprocessing

    out, log = str(tmp_path / "r.jsonl"), str(tmp_path / "log")
    config = SweepConfig(datasets=["farfield-64-256"], engines=["DM", "RAAR", "ePIE", "rPIE", "ML"],
                         frames_per_block=[0, 8, 16, 32, 64, 128], out=out)
    points = config.measurements()
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(6)
    workers = [context.Process(target=_claim_each, args=(out, log, points, barrier)) for _ in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    holders: Counter = Counter()
    for line in Path(log).read_text().splitlines():
        event, key = line.split()
        holders[key] += 1 if event == "start" else -1
        assert holders[key] in (0, 1), f"two processes held {key} at once"
    assert len(holders) == len(points) and set(holders.values()) == {0}


def test_a_claim_held_by_a_live_sweep_blocks_and_a_killed_ones_is_taken_over(tmp_path):
    """A real second process holds the claim (its flock): refused while it lives, free the moment it is killed
    (the kernel drops the lock; no stale claim file to time out)."""
    from ptybench.sweep import claim

    config = SweepConfig(datasets=["farfield-64-256"], engines=["DM"], out=str(tmp_path / "r.jsonl"))
    (point,) = config.measurements()
    (tmp_path / "r.jsonl.claims").mkdir()
    path = tmp_path / "r.jsonl.claims" / measurement_key(point.identity())
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time\n"
                               "fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR)\n"
                               "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(120)",
                               str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with claim(config.out, point) as mine:
            assert not mine
    finally:
        holder.kill()
        holder.wait()
    with claim(config.out, point) as mine:
        assert mine
        with claim(config.out, point) as again:      # held by a live process (this one) now
            assert not again


def test_out_of_memory_is_data_and_the_sweep_continues(tmp_path, faulty_engine, monkeypatch):
    """An engine that runs out of memory (the test engine, deterministically: under a real limit a dataset now
    streams from disk instead, tests/engines/test_scratch.py) is an 'oom' record, and the next point runs."""
    for name, value in faulty_engine(0, "memory").items():
        monkeypatch.setenv(name, value)
    config = SweepConfig(datasets=["farfield-64-256"], engines=["Faulty", "DM"], iterations=1, warmup=0, threads=1,
                         out=str(tmp_path / "r.jsonl"))
    records = run_sweep(config, progress=False)
    assert [(r["engine"], r["status"]) for r in records] == [("Faulty", "oom"), ("DM", "ok")]
    assert "deliberate out-of-memory" in records[0]["message"]
    assert pending(config.measurements(), config.out) == []


def test_sweep_config_from_toml_with_flag_overrides(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text('datasets = ["farfield-64-256"]\nengines = ["DM", "ML"]\nbackends = ["numpy", "torch:cuda"]\n'
                    'frames_per_block = [0, 32]\niterations = 4\n[parameters]\npbound = 0.5\n')
    config = SweepConfig.from_toml(path, iterations=7)
    points = config.measurements()
    assert len(points) == 1 * 2 * 2 * 2 and {p.iterations for p in points} == {7}
    assert {(p.backend, p.device) for p in points} == {("numpy", None), ("torch", "cuda")}
    assert {p.frames_per_block for p in points} == {None, 32} and points[0].parameters == {"pbound": 0.5}
    path.write_text('datasets = ["a"]\nengines = ["DM"]\nspeed = "max"\n')
    with pytest.raises(ValueError, match="unknown key"):
        SweepConfig.from_toml(path)


def test_each_engine_gets_the_keys_it_takes_and_its_own_table(tmp_path):
    """One file for DM's bound and ML's noise model; run-wide keys go to every engine."""
    path = tmp_path / "sweep.toml"
    path.write_text('datasets = ["farfield-64-256"]\nengines = ["DM", "ePIE", "ML"]\n[parameters]\n'
                    'photons_per_unit = 1.0\nprobe_update_start = 3\n'
                    '[parameters.DM]\npbound = 0.1\n[parameters.ML]\nnoise = "poisson"\n')
    by_engine = {m.engine: m.parameters for m in SweepConfig.from_toml(path).measurements()}
    assert by_engine == {"DM": {"photons_per_unit": 1.0, "probe_update_start": 3, "pbound": 0.1},
                         "ePIE": {"photons_per_unit": 1.0, "probe_update_start": 3},
                         "ML": {"photons_per_unit": 1.0, "probe_update_start": 3, "noise": "poisson"}}


@pytest.mark.parametrize(("parameters", "message"), [
    ({"noise": "poisson"}, "no selected engine .* takes 'noise'"),
    ({"DN": {"pbound": 0.1}}, "parameters.DN: not an engine"),
    ({"DM": {"pbound": -1}}, "for DM: .*pbound"),
    ({"ML": {"pbound": 0.1}}, "for ML: .*unknown key"),      # checked although ML is not selected
    ({"DM": 0.1}, "parameters.DM: expected a table"),
])
def test_a_sweep_parameter_no_engine_takes_is_an_error_before_anything_runs(parameters, message):
    with pytest.raises(ValueError, match=message):
        SweepConfig(datasets=["farfield-64-256"], engines=["DM", "ePIE"], parameters=parameters)


def test_the_cli_exits_2_on_a_parameter_no_engine_takes(tmp_path, capsys):
    path = tmp_path / "sweep.toml"
    path.write_text('datasets = ["farfield-64-256"]\nengines = ["ePIE"]\n[parameters]\nnoise = "poisson"\n')
    out = tmp_path / "r.jsonl"
    assert main(["sweep", str(path), "--out", str(out), "--no-progress"]) == 2
    assert "takes 'noise'" in capsys.readouterr().err and not out.exists()


def test_the_sweep_reads_each_stored_byte_about_once_however_long_it_runs(tmp_path, monkeypatch):
    """Before every point the sweep checks whether another sweep stored it; that check reads only what was
    appended since the last one (a byte offset), so the cost per point does not grow with the file."""
    from ptybench import results
    from ptybench.measurement import Measurement
    from ptybench.sweep import run_points

    read = []
    original = results.StoredKeys.refresh

    def counting(self):
        before = self.offset
        result = original(self)
        read.append(self.offset - before)
        return result

    monkeypatch.setattr(results.StoredKeys, "refresh", counting)
    points = [Measurement(dataset="farfield-64-256", engine="DM", iterations=1, repeat=r) for r in range(600)]

    def stub(measurement):
        return {**measurement.identity(), "status": "ok", "message": "", "seconds_per_iteration": 0.1}

    records = run_points(points, tmp_path / "r.jsonl", progress=False, run=stub)
    assert len(records) == 600 and len(read_records(tmp_path / "r.jsonl")) == 600
    size = (tmp_path / "r.jsonl").stat().st_size
    assert sum(read) <= size  # every byte read once (quadratic re-reading would be ~300x the size)
    assert pending(points, tmp_path / "r.jsonl") == []


@pytest.mark.parametrize("repeats", [0, -1, True, 1.5])
def test_repeats_must_be_a_whole_number_of_processes(repeats):
    from ptybench.sweep import SweepConfig

    with pytest.raises(ValueError, match="repeats: expected a whole number >= 1"):
        SweepConfig(datasets=["farfield-64-256"], engines=["DM"], repeats=repeats)


def test_repeats_are_outermost_so_points_interleave():
    from ptybench.sweep import SweepConfig

    points = SweepConfig(datasets=["farfield-64-256"], engines=["DM", "ML"], repeats=2).measurements()
    assert [(p.repeat, p.engine) for p in points] == [(0, "DM"), (0, "ML"), (1, "DM"), (1, "ML")]
