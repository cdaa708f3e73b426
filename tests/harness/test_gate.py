"""ptybench/timing_stats.py and ptybench/gate.py: the regression gate's verdicts on known samples, results files
and asv results. (Its false-alarm and detection rates on this machine are measured by
``python -m ptybench.studies.gate_calibration``, not asserted here: they are timings.)"""

from __future__ import annotations

import json

import numpy as np
import pytest
from synthetic_records import synthetic_record

from ptybench import gate, results
from ptybench.cli import main
from ptybench.engines.errors import InputError
from ptybench.timing_stats import compare_samples


def _processes(rng: np.random.Generator, scale: float, processes: int = 3, iterations: int = 30,
               spread: float = 0.03) -> list[list[float]]:
    """Per-process iteration seconds: a process-level factor and iteration jitter, both multiplicative."""
    return [list(scale * 0.02 * rng.lognormal(0, spread) * rng.lognormal(0, spread, iterations))
            for _ in range(processes)]


def test_identical_distributions_are_not_called_slower_or_faster():
    rng = np.random.default_rng(1)
    verdicts = [compare_samples(_processes(rng, 1.0), _processes(rng, 1.0)).verdict for _ in range(20)]
    assert "slower" not in verdicts and "faster" not in verdicts
    assert verdicts.count("same") >= 10  # the rest "uncertain": 3 processes a side leave a wide interval


def test_a_quarter_slower_is_slower_and_a_quarter_faster_is_faster():
    rng = np.random.default_rng(2)
    slow = compare_samples(_processes(rng, 1.0), _processes(rng, 1.25))
    assert slow.verdict == "slower" and slow.ratio == pytest.approx(1.25, rel=0.06) and slow.low > 1.0
    assert slow.p_value < 0.002
    fast = compare_samples(_processes(rng, 1.25), _processes(rng, 1.0))
    assert fast.verdict == "faster" and fast.high < 1.0


def test_two_samples_cannot_tell_a_small_change_apart():
    """Too few samples: the test cannot reach p < 0.002, so a 10 % difference is 'uncertain', not 'same'."""
    result = compare_samples([0.020, 0.021], [0.022, 0.0225])
    assert result.verdict == "uncertain" and result.p_value > 0.002


def test_a_significant_change_below_the_minimum_effect_is_same():
    rng = np.random.default_rng(3)
    result = compare_samples(_processes(rng, 1.0, 6, 200, 0.005), _processes(rng, 1.02, 6, 200, 0.005))
    assert result.p_value < 0.002 and result.verdict == "same"


def test_bad_samples_and_settings_are_named():
    with pytest.raises(InputError, match="HEAD timings: expected positive finite"):
        compare_samples([0.1, 0.2], [0.1, float("nan")])
    with pytest.raises(InputError, match="alpha"):
        compare_samples([0.1, 0.2], [0.1, 0.2], alpha=2)
    with pytest.raises(InputError, match="BASE timings: expected at least one"):
        compare_samples([[]], [0.1])


def _records(rng, scale=1.0, memory=1.0, error=0.05, status="ok", repeats=3):
    out = []
    for repeat in range(repeats):
        record = synthetic_record(64, 256, repeat=repeat, object_error=error)
        record["iteration_seconds"] = _processes(rng, scale, 1)[0]
        record["memory"]["host_algorithm_bytes"] *= memory
        record["status"] = status
        if status != "ok":
            record["message"] = "killed: out of memory"
        out.append(record)
    return out


def _write(path, records):
    for record in records:
        results.append(path, record)
    return str(path)


@pytest.mark.parametrize(("change", "verdict"), [
    ({}, None), ({"scale": 1.3}, "slower"), ({"memory": 1.3}, "memory"), ({"error": 0.08}, "accuracy"),
    ({"status": "error"}, "failed")])
def test_the_gate_fails_on_slower_bigger_less_accurate_or_failing(tmp_path, capsys, change, verdict):
    rng = np.random.default_rng(4)
    base = _write(tmp_path / "base.jsonl", _records(rng))
    head = _write(tmp_path / "head.jsonl", _records(rng, **change))
    code = main(["compare", base, head])
    text = capsys.readouterr().out
    assert "farfield-64-256 DM numpy 2 thr" in text
    if verdict is None:
        assert code == 0 and "PASS" in text
    else:
        assert code == 1 and verdict in text and "FAIL" in text


def test_json_output_and_benchmarks_on_one_side_only(tmp_path, capsys):
    rng = np.random.default_rng(5)
    base = _write(tmp_path / "base.jsonl", _records(rng))
    other = [dict(r, engine="ML") for r in _records(rng)]
    head = _write(tmp_path / "head.jsonl", _records(rng) + other)
    assert main(["compare", base, head, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(row["verdicts"][0] for row in rows) == ["new", "same"]


def test_a_file_beside_a_revision_or_a_name_that_is_neither_is_one_line(tmp_path, capsys):
    base = _write(tmp_path / "base.jsonl", _records(np.random.default_rng(6)))
    assert main(["compare", base, "HEAD"]) == 2
    assert "both be results files or both git revisions" in capsys.readouterr().err
    assert main(["compare", "no-such-file", "no-such-revision-either"]) == 2
    assert "neither a results file nor a git revision" in capsys.readouterr().err


def test_asv_results_with_recorded_samples_are_read_as_samples(tmp_path):
    """Written with asv's own Results API (what `asv continuous --record-samples` stores), read back per
    benchmark and parameter combination."""
    from asv.results import Results
    from asv.runner import BenchmarkResult

    machine, commit = "box", "a" * 40
    params = [["DM", "ML"], ["numpy"]]
    stored = Results({"machine": machine}, {}, commit, 0, "3.11", "env", {})
    rng = np.random.default_rng(7)
    samples = [list(rng.lognormal(-4, 0.02, 20)), list(rng.lognormal(-3, 0.02, 20))]
    benchmark = {"name": "bench_engines.QuickEngineIteration.time_iteration", "params": params, "version": "1"}
    stored.add_result(benchmark, BenchmarkResult(result=[float(np.median(s)) for s in samples], samples=samples,
                                                 number=[1, 1], errcode=0, stderr="", profile=None),
                      record_samples=True)
    memory = {"name": "bench_engines.QuickEngineIteration.peakmem_iteration", "params": params, "version": "1"}
    stored.add_result(memory, BenchmarkResult(result=[1e8, None], samples=[[1e8], []], number=[1, 1], errcode=0,
                                              stderr="", profile=None))
    stored.save(str(tmp_path))
    (tmp_path / machine / "machine.json").write_text(json.dumps({"machine": machine, "version": 1}))  # asv machine
    found = gate.samples_from_asv(str(tmp_path), machine, commit)
    dm, ml = found["QuickEngineIteration(DM, numpy)"], found["QuickEngineIteration(ML, numpy)"]
    assert dm.seconds == [pytest.approx(samples[0])] and dm.memory == [1e8]
    assert ml.seconds == [pytest.approx(samples[1])] and ml.failures


def test_a_results_file_with_a_broken_timing_is_one_line_naming_the_benchmark(tmp_path, capsys):
    rng = np.random.default_rng(8)
    base = _write(tmp_path / "base.jsonl", _records(rng))
    broken = _records(rng)
    broken[1]["iteration_seconds"][3] = None  # a null where a number belongs (NaN is stored as null)
    head = _write(tmp_path / "head.jsonl", broken)
    assert main(["compare", base, head]) == 2
    err = capsys.readouterr().err
    assert "farfield-64-256 DM numpy 2 thr repeat 1: iteration_seconds holds None" in err
    assert "Traceback" not in err


def test_a_run_on_an_emulated_host_or_over_another_launcher_is_its_own_benchmark():
    """A point streamed from disk on a 2 GB host is not a sample of the same point in memory: neither the gate nor the
    measurement log pools them."""
    from ptybench.history import series
    from ptybench.record import as_record

    in_memory = synthetic_record(128, 1024)
    small_host = {**in_memory, "host_memory_bytes": 2_000_000_000, "seconds_per_iteration": 9.0}
    networked = {**in_memory, "launcher": "netns:1e9"}
    labels = {gate.benchmark_label(as_record(r)) for r in (in_memory, small_host, networked)}
    assert len(labels) == 3 and any(label.endswith("on a 2 GB host") for label in labels)
    assert sorted(len(entries) for entries in series([in_memory, small_host, networked]).values()) == [1, 1, 1]
