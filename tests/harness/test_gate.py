"""ptybench/timing_stats.py and ptybench/gate.py: the regression gate's verdicts on known samples, results files
and asv results. (Its false-alarm and detection rates on this machine are measured by
``python -m ptybench.studies.gate_calibration``, not asserted here: they are timings.)"""

from __future__ import annotations

import json

import numpy as np
import pytest
from synthetic_records import synthetic_record

from ptybench import gate, results, timing_stats
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
    # Each round of a timing benchmark takes SAMPLES_PER_ROUND samples: 20 are two rounds, two processes.
    assert dm.seconds == [pytest.approx(samples[0][:10]), pytest.approx(samples[0][10:])] and dm.memory == [1e8]
    assert ml.seconds == [pytest.approx(samples[1][:10]), pytest.approx(samples[1][10:])] and ml.failures


def test_a_second_look_selects_only_the_uncertain_parameter_combinations():
    import re

    from ptybench import asv_gate

    pattern = asv_gate.timing_benchmarks(["QuickEngineIteration('DM', 'numpy', 'farfield-64-256')",
                                          "QuickStrongScaling"])
    grid = "('DM', 'numpy', 'farfield-64-256')"
    names = [f"bench_engines.QuickEngineIteration.time_iteration{grid}",
             f"bench_engines.QuickEngineIteration.time_iteration{grid.replace('DM', 'ML')}",
             f"bench_engines.QuickEngineIteration.peakmem_iteration{grid}",
             "bench_records.QuickStrongScaling.time_x", "bench_records.QuickStrongScaling.track_y"]
    assert [name for name in names if re.search(pattern, name)] == [names[0], names[3]]


def test_the_gate_runs_the_quick_benchmarks_it_judges_forked_from_a_preloaded_server(monkeypatch):
    import re

    from ptybench import asv_gate
    from ptybench.benchmarks.common import PRELOAD_VARIABLE

    pattern = asv_gate.gated_benchmarks("Quick")
    grid = "('DM', 'numpy', 'farfield-64-256')"
    names = [f"bench_engines.QuickEngineIteration.time_iteration{grid}",
             f"bench_engines.QuickEngineIteration.peakmem_iteration{grid}",
             f"bench_records.QuickMeasured.track_algorithm_memory{grid}",
             f"bench_engines.FullEngineIteration.time_iteration{grid}",
             f"bench_records.QuickMeasured.track_object_error{grid}",
             f"bench_records.QuickMeasured.track_fft_floor_ratio{grid}",
             f"bench_records.QuickMeasured.track_seconds_per_frame_iteration{grid}",
             "bench_records.QuickStrongScaling.track_two_rank_cost"]
    assert [name for name in names if re.search(pattern, name)] == [names[0], names[2], names[4]]
    seen = {}
    monkeypatch.setattr(asv_gate.subprocess, "run", lambda command, check, env: seen.update(command=command, env=env))
    asv_gate.run_asv("asv", "a" * 40, "b" * 40, pattern, 3, threads=1)
    command = seen["command"]
    assert command[command.index("--launch-method") + 1] == "forkserver" and command[-2:] == ["a" * 40, "b" * 40]
    assert seen["env"][PRELOAD_VARIABLE] == "1" and seen["env"]["PTYBENCH_BENCH_ROUNDS"] == "3"


def test_the_preload_imports_the_engines_and_backends_without_running_anything():
    import sys
    import threading

    from ptybench.benchmarks.common import preload

    before = threading.active_count()
    names = preload()
    assert {"numpy", "numba", "ptybench.engines"} <= set(names) and all(name in sys.modules for name in names)
    assert threading.active_count() == before  # no thread of its own: nothing for a fork to lose


def test_pooled_asv_samples_are_cut_into_rounds_only_where_the_count_divides():
    assert gate.rounds_of([1.0, 2.0, 3.0, 4.0], 2) == [[1.0, 2.0], [3.0, 4.0]]
    assert gate.rounds_of([1.0, 2.0, 3.0], 2) == [[1.0, 2.0, 3.0]]  # a --quick run: one group
    assert gate.rounds_of([], 2) == [[]]


def _side(rng, processes, scale=1.0):
    return {"QuickEngineIteration(DM, numpy)": gate.Samples(
        seconds=[list(scale * rng.lognormal(np.log(0.02), 0.02, 10)) for _ in range(processes)])}


@pytest.mark.parametrize(("first_processes", "second_look_rounds"), [(1, 8), (1, None), (4, None)])
def test_an_uncertain_first_look_gets_a_second_look_of_the_timing_benchmarks(monkeypatch, first_processes,
                                                                             second_look_rounds):
    """asv faked: one process a side cannot be judged (uncertain), so the gate runs more rounds of the timing
    benchmarks only (by default twice the first look's), appended, and judges all of them; a first look that can
    be judged is final."""
    from ptybench import asv_gate

    rng = np.random.default_rng(11)
    looks = iter([(_side(rng, first_processes), _side(rng, first_processes, 1.25)),
                  (_side(rng, 8), _side(rng, 8, 1.25))])
    calls = []
    monkeypatch.setattr(asv_gate, "revision", lambda text: text)
    monkeypatch.setattr(asv_gate, "asv_executable", lambda: "asv")
    monkeypatch.setattr(asv_gate.subprocess, "run", lambda *args, **kwargs: None)  # `asv machine --yes`
    monkeypatch.setattr(asv_gate, "run_asv", lambda asv, base, head, bench, rounds, append=False, threads=1:
                        calls.append((bench, rounds, append, threads)))
    monkeypatch.setattr(asv_gate, "read_samples", lambda base, head: next(looks))
    (row,) = asv_gate.compare_revisions("main", "HEAD", "Quick", 4, second_look_rounds=second_look_rounds)
    assert row.verdicts == ["slower"]
    if first_processes == 1:
        assert calls == [(asv_gate.gated_benchmarks("Quick"), 4, False, 1),
                         (r"QuickEngineIteration\.time_\w+\(DM,\ numpy\)", 8, True, 1)]
        assert "second look: 12 rounds a side" in row.note
    else:
        assert calls == [(asv_gate.gated_benchmarks("Quick"), 4, False, 1)] and "second look" not in row.note


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


@pytest.fixture
def gate_study():
    """The study module; importing it registers its slowed plug-in engines, which later tests must not see."""
    import sys

    from ptybench.engines.registry import engine_names, unregister

    before = set(engine_names())
    from ptybench.studies import gate_calibration

    yield gate_calibration
    for name in set(engine_names()) - before:
        unregister(name)
    sys.modules.pop("ptybench.studies.slower_engines", None)
    sys.modules.pop("ptybench.studies.gate_calibration", None)


def test_the_gate_study_judges_a_first_look_and_a_second_look_only_where_the_first_is_uncertain(tmp_path,
                                                                                                 gate_study):
    """The calibration study's analysis on written records (no measuring): comparison 0's first look has too
    few fast processes on the slowed side to be judged; its second look (all ten) calls it slower; comparison 1
    is called on its first look. Identical code is never called slower or faster."""
    gate_calibration = gate_study

    rng = np.random.default_rng(12)
    slow_first = {0: [1, 2, 3, 4]}  # comparison -> processes of the 10 % HEAD that ran 1.6x slow (of the first 5)

    def records(label_scale, label, comparisons=2, processes=10):
        out = []
        for comparison in range(comparisons):
            for process in range(processes):
                repeat = comparison * processes + process
                factor = 1.6 if label == "slower 10 %" and process in slow_first.get(comparison, []) else 1.0
                seconds = list(0.02 * label_scale * factor * rng.lognormal(0, 0.01, 20))
                record = synthetic_record(64, 256, repeat=repeat)
                record.update(engine=gate_calibration.slower_name("DM", 10) if label == "slower 10 %" else "DM",
                              iteration_seconds=seconds, seconds_per_iteration=float(np.median(seconds)),
                              wall_seconds=1.7)
                out.append(record)
        return out

    for label, scale in (("base", 1.0), ("identical", 1.0), ("slower 10 %", 1.10)):
        for record in records(scale, label):
            results.append(gate_calibration._file(tmp_path, label), record)
    table, details = gate_calibration.analyse(tmp_path, "DM", 2, 10, first_look=5, slowdowns=(10,))
    slower = [d for d in details if d["variant"] == "slower 10 %"]
    assert [(d["verdict"], d["final"]) for d in slower] == [("uncertain", "slower"), ("slower", "slower")]
    identical = [d["final"] for d in details if d["variant"] == "identical"]
    assert "slower" not in identical and "faster" not in identical
    assert "5 (+5 in 1)" in table and "second look" in table
    # a gate of 3 + 3 rounds sees the first six of each comparison's ten: comparison 0's first look has one fast
    # process of three on the slowed side (uncertain), its second look two of six (enough to call it)
    table, details = gate_calibration.analyse(tmp_path, "DM", 2, 6, first_look=3, slowdowns=(10,),
                                              measured_processes=10)
    slower = [d for d in details if d["variant"] == "slower 10 %"]
    assert [(d["verdict"], d["final"]) for d in slower] == [("uncertain", "slower"), ("slower", "slower")]
    assert "3 (+3 in 1)" in table and len(details) == 4


def test_memory_growth_must_beat_the_factor_and_the_floor():
    """Identical code on torch-CPU measured 14.0 and 15.8 MB (1.13x): the factor alone cried wolf."""
    def side(megabytes):
        return {"bench": gate.Samples(memory=[megabytes * 1e6])}

    assert gate.compare(side(14.0), side(15.8))[0].verdicts == ["no timings"]
    assert gate.compare(side(14.0), side(25.0))[0].verdicts == ["memory"]
    assert gate.compare(side(14.0), side(15.8), memory_floor=0)[0].verdicts == ["memory"]
    with pytest.raises(InputError, match="--memory-floor"):
        gate.compare(side(1), side(1), memory_floor=-1)


def test_timings_judged_together_are_each_judged_at_bonferroni_levels():
    """14 benchmarks at p < 0.002 and 99 % intervals would call identical code slower or faster several times as
    often as one; each is judged at alpha/14 and a 1 − 0.01/14 interval instead (the summary says so)."""
    from ptybench.timing_stats import family_levels

    assert family_levels(0.002, 14) == pytest.approx((0.002 / 14, 1 - 0.01 / 14))
    assert family_levels(0.002, 0) == (0.002, pytest.approx(0.99))
    rng = np.random.default_rng(13)
    base = {f"bench {i}": gate.Samples(seconds=_processes(rng, 1.0, 4, 10)) for i in range(14)}
    head = {f"bench {i}": gate.Samples(seconds=_processes(rng, 1.3 if i == 0 else 1.0, 4, 10)) for i in range(14)}
    rows = gate.compare(base, head)
    assert [row.alpha for row in rows] == [pytest.approx(0.002 / 14)] * 14
    assert rows[0].verdicts == ["slower"]  # a 30 % slowdown still shows
    assert "14 timings judged together" in gate.summary(rows) and "99.93 % interval" in gate.summary(rows)
    (alone,) = gate.compare({"bench 1": base["bench 1"]}, {"bench 1": head["bench 1"]})
    assert alone.alpha == 0.002 and alone.confidence == pytest.approx(0.99)
    # The wider interval draws enough resamples for its tails: 20 at least in each.
    low, high = timing_stats.ratio_interval(base["bench 1"].seconds, head["bench 1"].seconds, confidence=1 - 0.01 / 14)
    narrow = timing_stats.ratio_interval(base["bench 1"].seconds, head["bench 1"].seconds)
    assert low <= narrow[0] <= narrow[1] <= high


def test_a_two_level_bootstrap_of_identical_processes_is_a_point():
    groups = [np.full(10, 0.02), np.full(7, 0.02)]
    assert timing_stats.ratio_interval(groups, [np.full(12, 0.03)]) == (pytest.approx(1.5), pytest.approx(1.5))


@pytest.mark.parametrize("value", ["abc", "0", "-2", "1.5"])
def test_a_bad_benchmark_count_in_the_environment_is_a_clear_error(monkeypatch, value):
    from ptybench.benchmarks.common import count_from_environment

    monkeypatch.setenv("PTYBENCH_BENCH_ROUNDS", value)
    with pytest.raises(ValueError, match=f"PTYBENCH_BENCH_ROUNDS: expected a whole number >= 1, got '{value}'"):
        count_from_environment("PTYBENCH_BENCH_ROUNDS", 4)
    monkeypatch.setenv("PTYBENCH_BENCH_ROUNDS", " 6 ")
    assert count_from_environment("PTYBENCH_BENCH_ROUNDS", 4) == 6
    monkeypatch.delenv("PTYBENCH_BENCH_ROUNDS")
    assert count_from_environment("PTYBENCH_BENCH_ROUNDS", 4) == 4


def test_a_bad_memory_floor_is_refused_while_parsing(capsys):
    assert main(["compare", "a.jsonl", "b.jsonl", "--memory-floor", "8QB"]) == 2
    err = capsys.readouterr().err
    assert "--memory-floor" in err and "8QB" in err and "Traceback" not in err


@pytest.mark.parametrize("arguments", [["--processes", "8", "--measured-processes", "10"],  # without --analyse-only
                                       ["--processes", "8", "--measured-processes", "6", "--analyse-only"],
                                       ["--processes", "4", "--first-look", "5"]])
def test_the_gate_study_refuses_process_counts_that_do_not_fit_naming_the_option(gate_study, capsys, arguments):
    with pytest.raises(SystemExit) as exit_info:
        gate_study.main(arguments)
    assert exit_info.value.code == 2
    assert "--measured-processes" in capsys.readouterr().err or "--first-look" in arguments


def test_a_second_look_of_no_rounds_is_refused_while_parsing(capsys):
    assert main(["compare", "main", "HEAD", "--second-look-rounds", "0"]) == 2
    err = capsys.readouterr().err
    assert "--second-look-rounds" in err and "'0'" in err and "Traceback" not in err


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("0", False), ("", False), ("yes", None)])
def test_the_preload_variable_is_0_or_1_or_a_clear_error_naming_it(monkeypatch, value, expected):
    from ptybench.benchmarks.common import PRELOAD_VARIABLE, preload_requested

    monkeypatch.setenv(PRELOAD_VARIABLE, value)
    if expected is None:
        with pytest.raises(ValueError, match=f"{PRELOAD_VARIABLE}: expected 0 or 1, got 'yes'"):
            preload_requested()
    else:
        assert preload_requested() is expected


def test_the_gate_study_analysing_a_folder_without_its_results_names_the_missing_files(gate_study, capsys,
                                                                                     tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        gate_study.main(["--out", str(tmp_path), "--analyse-only", "--slowdowns", "10"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--analyse-only" in err and "Traceback" not in err
    assert str(tmp_path / "base.jsonl") in err and str(tmp_path / "slower-10.jsonl") in err
