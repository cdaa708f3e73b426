"""The runner: every way a measurement can end becomes a record; the memory model against measurements."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from ptybench.measurement import Measurement, time_to_quality
from ptybench.runner import run_isolated


def test_an_ok_record_has_times_memory_floor_errors_and_machine():
    record = run_isolated(Measurement(dataset="farfield-64-256", engine="DM", iterations=3, warmup=1, threads=1))
    assert record["status"] == "ok", record.get("message")
    assert len(record["iteration_seconds"]) == 3 and record["iterations_done"] == 4
    assert record["seconds_q25"] <= record["seconds_per_iteration"] <= record["seconds_q75"]
    assert {"propagation", "fourier_projection", "overlap_update"} <= set(record["stages"])
    assert record["fft_floor_seconds"] > 0 and record["fft_floor_ratio"] > 1
    memory = record["memory"]
    assert memory["host_peak_bytes"] > memory["host_baseline_bytes"] > 0
    assert memory["host_algorithm_bytes"] > 0 and memory["predicted_bytes"] > 0
    assert 0 < record["object_error"] < 1 and 0 < record["r_factor"] < 1
    assert record["dataset_info"]["n_frames"] == 256 and record["dataset_info"]["height"] == 64
    assert record["machine"]["cores_available"] >= 1 and "numpy" in record["machine"]["versions"]
    assert record["backend_info"]["kernels"] == "NumbaKernels"     # which kernels and FFT ran are data
    assert record["backend_info"]["fft"].split()[0] in ("scipy", "mkl")


def test_a_memory_limit_below_the_footprint_is_recorded_as_oom():
    record = run_isolated(Measurement(dataset="farfield-64-1024", engine="DM", iterations=1, warmup=0,
                                      memory_limit_bytes=10 * 2**20, threads=1))
    assert record["status"] == "oom", record.get("message")
    assert "MemoryError" in record["message"]
    assert record["oom_size"]["n_frames"] == 1024 and record["oom_size"]["frame_shape"] == [64, 64]


def test_a_diverging_configuration_is_recorded_as_diverged():
    # rPIE without its a·max|P|² floor divides by |P|², which vanishes at the probe's edge
    record = run_isolated(Measurement(dataset="farfield-64-256", engine="rPIE", iterations=5, warmup=0,
                                      parameters={"rpie_alpha": 0.0}, threads=1))
    assert record["status"] == "diverged"
    assert "rPIE" in record["message"] and re.search(r"NaN/Inf|blew up", record["message"])


def test_a_measurement_past_its_timeout_is_killed_and_recorded():
    record = run_isolated(Measurement(dataset="farfield-64-256", engine="DM", iterations=50, timeout_s=0.5))
    assert record["status"] == "timeout" and "0.5 s" in record["message"]


def test_bad_input_in_the_child_is_an_error_record_with_the_message():
    record = run_isolated(Measurement(dataset="farfield-65-256", engine="DM", iterations=1))
    assert record["status"] == "error" and "unknown name" in record["message"]


@pytest.mark.parametrize("bad", [{"iterations": 0}, {"threads": 0}, {"timeout_s": 0}, {"frames_per_block": -1}])
def test_bad_measurements_are_value_errors_naming_the_field(bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        Measurement(dataset="farfield-64-256", engine="DM", **bad)


def test_time_to_quality_counts_iterations_and_seconds_until_the_target():
    history = [SimpleNamespace(seconds=1.0, object_error=e) for e in (0.5, 0.2, 0.09, 0.05)]
    assert time_to_quality(history, 0.1) == (3, 3.0)
    assert time_to_quality(history, 0.01) == (None, None)
    assert time_to_quality(history, None) == (None, None)


def test_a_hard_address_space_limit_from_the_batch_system_is_respected(tmp_path):
    """`ulimit -v` (a hard RLIMIT_AS) must not turn runs into errors, with or without --memory-limit."""
    import json
    import resource
    import subprocess
    import sys

    def batch_limit():
        resource.setrlimit(resource.RLIMIT_AS, (3 * 10**9, 3 * 10**9))

    out = tmp_path / "r.jsonl"
    for extra in ([], ["--memory-limit", "500MB"]):
        subprocess.run([sys.executable, "-m", "ptybench", "run", "--dataset", "farfield-64-256", "--engine", "DM",
                        "--iterations", "1", "--warmup", "0", "--threads", "1", "--out", str(out), *extra],
                       preexec_fn=batch_limit, capture_output=True, timeout=300)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["status"] for r in records] == ["ok", "ok"], [r["message"] for r in records]


def test_progress_is_reported_while_the_child_measures():
    seen = []
    record = run_isolated(Measurement(dataset="farfield-64-256", engine="ML", iterations=6, warmup=1, threads=1,
                                      fft_floor=False), progress=lambda done, total: seen.append((done, total)))
    assert record["status"] == "ok"
    assert seen and seen[-1] == (7, 7) and all(total == 7 for _, total in seen)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_a_record_whose_folder_vanished_comes_back_on_stdout(tmp_path, monkeypatch, capsys):
    """A tmp cleaner removed the parent's folder while a point was measured (12 minutes lost once): the child
    prints the record instead, and the parent reads it from there."""
    import io

    from ptybench import runner

    measurement = Measurement(dataset="farfield-64-256", engine="DM", iterations=1, warmup=0, threads=1,
                              fft_floor=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(measurement.to_json()))
    assert runner.main([str(tmp_path / "gone" / "record.json")]) == 0
    record = runner._record_on_stdout(capsys.readouterr().out)
    assert record["status"] == "ok" and record["engine"] == "DM" and record["iterations_done"] == 1
    assert runner._record_on_stdout("noise\nptybench-record: {broken") is None
