"""Procurement: figures of merit, validation, run rules, noise flags, workload, forecast, report, bundle."""

from __future__ import annotations

import copy
import json
import math

import pytest
from synthetic_records import LADDER, MACHINE, TARGET, ladder, power_law_seconds, synthetic_record

from ptybench.cli import main
from ptybench.fom import run_rules_tier, validation
from ptybench.forecast import fit_power_law, forecast, hold_out, parse_rates
from ptybench.html_report import build_report
from ptybench.machine_load import LoadWatch, noisy_reasons, repeat_spread
from ptybench.results import measurement_key
from ptybench.workload import Workload


# --- figures of merit, validation, run rules ---------------------------------------------------------
def test_validation_passes_fails_or_has_no_threshold():
    assert validation(0.05, 0.1)["result"] == "pass"
    assert validation(0.2, 0.1)["result"] == "fail"
    assert validation(None, 0.1)["result"] == "none"
    assert validation(0.05, None)["result"] == "none"
    assert validation(0.05, 0.1, status="diverged")["result"] == "fail"


def test_figures_of_merit_are_rates_and_count_only_validated_runs():
    record = synthetic_record(128, 1024, iterations_to_target=8)
    fom = record["fom"]
    assert fom["throughput"] == pytest.approx(1024 / record["seconds_per_iteration"])
    assert fom["live_rate_hz"] == pytest.approx(fom["throughput"] / 8)
    assert fom["iterations_to_quality"] == 8
    assert synthetic_record(128, 1024, object_error=0.5)["fom"] is None  # failed validation: no FOM
    assert synthetic_record(128, 1024, iterations_to_target=None)["fom"]["live_rate_hz"] is None


def test_run_rules_tier_names_every_reason_for_optimized():
    assert run_rules_tier("DM", "numpy", {}, MACHINE, {}) == ("baseline", [])
    assert run_rules_tier("DM", "numpy", {"photons_per_unit": 2.0}, MACHINE, {})[0] == "baseline"
    assert run_rules_tier("DM", "numpy", {"residency": "disk"}, MACHINE, {})[0] == "baseline"  # placement
    tier, reasons = run_rules_tier("DM", "numpy", {"pbound": 0.1}, {**MACHINE, "git_commit": "abc-dirty"},
                                   {"PTYBENCH_KERNELS": "reference"})
    assert tier == "optimized"
    assert any("pbound" in r for r in reasons) and any("PTYBENCH_KERNELS" in r for r in reasons)
    assert any("dirty" in r for r in reasons)
    assert run_rules_tier("MyEngine", "numpy", {}, MACHINE, {})[0] == "optimized"
    assert run_rules_tier("ePIE-batched", "numpy", {}, MACHINE, {}) == ("baseline", [])  # built in, from the registry


# --- measurement honesty ----------------------------------------------------------------------------
def test_noisy_reasons_flag_busy_neighbours_and_steal():
    quiet = {"cores_available": 2, "before": {"other_busy_cores": 0.1}, "during": {"other_busy_cores": 0.05,
                                                                                   "steal_fraction": 0.0}}
    assert noisy_reasons(quiet) == []
    busy = copy.deepcopy(quiet)
    busy["during"]["other_busy_cores"] = 0.9
    busy["during"]["steal_fraction"] = 0.2
    reasons = noisy_reasons(busy)
    assert len(reasons) == 2  # the run's own spread is judged against its machine's normal, in the summary
    assert any("during" in r for r in reasons) and any("steal" in r for r in reasons)
    assert repeat_spread([1.0, 1.2, 1.1]) == pytest.approx(0.2 / 1.1)
    assert repeat_spread([1.0]) is None


def test_load_watch_measures_the_machine_around_a_run():
    watch = LoadWatch(cores=2, sample_s=0.05)
    watch.start()
    sum(i * i for i in range(200000))
    load = watch.finish()
    assert load["cores_available"] == 2
    assert len(load["before"]["load_average"]) == 3
    assert load["during"]["wall_seconds"] > 0
    assert 0.0 <= load["during"]["steal_fraction"] <= 1.0
    assert load["during"]["other_busy_cores"] >= 0.0


def test_the_first_repeat_keeps_its_old_key_and_later_repeats_get_their_own():
    base = {"dataset": "farfield-64-256", "engine": "DM", "backend": "numpy", "iterations": 5}
    assert measurement_key({**base, "repeat": 0}) == measurement_key(base)
    assert measurement_key({**base, "repeat": 1}) != measurement_key(base)


# --- workload ---------------------------------------------------------------------------------------------
def test_the_shipped_workload_is_complete_and_orders_repeats_outermost(monkeypatch):
    _host(monkeypatch, 1 << 20, 1 << 20)  # everything fits
    workload = Workload.load()
    assert set(workload.profiles) == {"quick", "standard", "full"}
    points = workload.measurements("quick", repeats=2)
    quick = workload.profile("quick")
    ladder = [p for p in points if not p.dataset_changes]
    at_target = [p for p in points if p.dataset_changes]
    assert len(ladder) == 2 * len(quick["datasets"]) * len(quick["engines"])
    assert [p.repeat for p in points] == sorted(p.repeat for p in points)
    assert all(p.validation_threshold is not None and p.target_error == workload.epsilon for p in ladder)
    # the target's own frame size on subsets of its frames, timing only, in every repeat
    assert len(at_target) == 2 * len(quick["target_frames"]) * len(quick["engines"])
    assert {p.dataset for p in at_target} == {workload.target}
    assert {p.dataset_changes["n_frames"] for p in at_target} == set(quick["target_frames"])
    assert all(p.validation_threshold is None and p.parameters == {"evaluate_every": 0} for p in at_target)
    assert workload.threshold("DM", 512) == workload.threshold("DM", 256)  # the next smaller size listed


def _host(monkeypatch, available_gb: float, total_gb: float) -> None:
    monkeypatch.setattr("ptybench.engines.host_memory.host_available_bytes", lambda: int(available_gb * 2**30))
    monkeypatch.setattr("ptybench.engines.host_memory.host_total_bytes", lambda: int(total_gb * 2**30))


@pytest.mark.parametrize(("available_gb", "total_gb", "dm"), [(12, 12, ("disk",)), (1 << 20, 1 << 20, ("resident",)),
                                                           (22, 24, ("resident", "disk"))])
def test_target_size_runs_keep_their_frames_where_the_full_target_would(monkeypatch, available_gb, total_gb, dm):
    """DM on the seed needs 18.8 GB: on a 12 GB host its runs on 16 and 48 frames put their exit waves on disk as
    DM on all 2552 would; on a 24 GB box with 22 free it is at the edge and is measured both ways. ePIE and ML
    (under 8 GB) stay in memory."""
    _host(monkeypatch, available_gb, total_gb)
    workload = Workload.load()
    assert workload.target_residencies("DM", "numpy", None) == dm
    assert workload.target_residencies("ePIE", "numpy", None) == ("resident",)
    at_target = [p for p in workload.measurements("quick", repeats=1) if p.dataset_changes]
    dm_runs = [p.parameters.get("residency", "resident") for p in at_target if p.engine == "DM"]
    assert sorted(dm_runs) == sorted(dm * 2)  # at 16 and at 48 frames
    assert all(p.parameters == {"evaluate_every": 0} for p in at_target if p.engine != "DM")


def test_a_bad_profile_or_workload_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(ValueError, match="--profile"):
        Workload.load().measurements("huge")
    broken = tmp_path / "w.toml"
    broken.write_text('version = "x"\nepsilon = 0.1\nrepeats = 1\n[profiles.a]\nengines = ["DM"]\n'
                      'datasets = ["farfield-64-256"]\n[iterations]\n[thresholds]\n')
    with pytest.raises(ValueError, match=r"iterations\.DM"):
        Workload.load(broken)
    with pytest.raises(FileNotFoundError, match="--workload"):
        Workload.load(tmp_path / "missing.toml")


# --- forecast ---------------------------------------------------------------------------------------------
def test_the_power_law_fit_recovers_a_known_cost_and_its_hold_out_error_is_small():
    points = [{"pixels": d * d, "frames": n, "seconds": power_law_seconds(d, n)} for d, n in LADDER]
    fit = fit_power_law(points)
    assert fit.p == pytest.approx(1.1, abs=1e-6) and fit.q == pytest.approx(-0.05, abs=1e-6)
    check = hold_out(points)
    assert check["held_out"] == "256²×256"
    assert abs(check["relative_error"]) < 1e-6
    assert check["extrapolation"] == pytest.approx(2.0)


def test_forecast_gives_time_devices_and_live_verdict_and_ignores_failed_runs():
    records = ladder()
    rows = forecast(records, TARGET, projections=498, rates=[3e3, 1e4, 1.1e5], target_name="seed")
    assert len(rows) == 1
    row = rows[0]
    expected = power_law_seconds(768, 2552)
    assert row["seconds_per_frame_iteration"] == pytest.approx(expected, rel=1e-6)
    assert row["seconds_per_projection"] == pytest.approx(2552 * 8 * expected, rel=1e-6)
    assert row["tomogram_seconds"] == pytest.approx(498 * row["seconds_per_projection"])
    live = 1 / (8 * expected)
    assert row["live_rate_hz"] == pytest.approx(live, rel=1e-6)
    for label, rate in (("3kHz", 3e3), ("110kHz", 1.1e5)):
        devices = max(math.ceil(rate / live), row["memory_devices"])
        assert row["rates"][label]["devices"] == devices
        assert row["rates"][label]["keeps_up"] == (devices == 1)
    assert row["label"] == "ESTIMATE" and row["uncertainty"] < 1e-6
    # a run that failed validation (absurdly slow here) never enters the fit
    slow = synthetic_record(256, 256, object_error=0.9, scale=50.0)
    again = forecast([*records, slow], TARGET, 498, [3e3])[0]
    assert again["seconds_per_frame_iteration"] == pytest.approx(expected, rel=1e-6)


def test_rates_parse_with_units_and_bad_ones_are_errors():
    assert parse_rates("3kHz, 10kHz,110khz,500") == [3e3, 1e4, 1.1e5, 500.0]
    for bad in ("fast", "-3kHz", ""):
        with pytest.raises(ValueError, match="--rates"):
            parse_rates(bad)


# --- report -----------------------------------------------------------------------------------------------
def test_the_report_compares_machines_and_lists_failures():
    other = {**MACHINE, "label": "box-b", "hostname": "b"}
    records = ladder() + [synthetic_record(d, n, machine=other, repeat=r, scale=2.0) for d, n in LADDER
                          for r in range(3)]
    records.append(synthetic_record(64, 256, engine="ML", object_error=0.9))
    rows = forecast(records, TARGET, 498, [3e3])
    page = build_report(records, rows, reference="box-a")
    for text in ("Machines", "Figures of merit", "Validation", "Forecast and live verdict", "ESTIMATE",
                 "box-a", "box-b", "0.50×", "PASS", "FAIL", "data:image/png;base64,"):
        assert text in page, text
    with pytest.raises(ValueError, match="--reference"):
        build_report(records, rows, reference="box-z")


# --- the bundle, end to end (real runs, tiny workload) -------------------------------------------------------
TINY_WORKLOAD = """
version = "test-1"
epsilon = 0.3
repeats = 2
target = "seed-2552x768"
projections = 10
[profiles.tiny]
engines = ["DM"]
datasets = ["farfield-64-256", "farfield-128-256"]
[iterations]
DM = { warmup = 1, iterations = 3 }
[thresholds]
DM = { "64" = 0.5 }
"""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bundle")
    workload = folder.parent / "tiny.toml"
    workload.write_text(TINY_WORKLOAD)
    code = main(["procure", "--profile", "tiny", "--workload", str(workload), "--out", str(folder / "b"),
                 "--threads", "1", "--label", "test-box", "--no-progress"])
    assert code == 0
    return folder / "b", workload


@pytest.mark.slow
def test_procure_writes_a_verifiable_bundle_and_resumes(bundle, capsys):
    from ptybench.procure import verify_bundle
    from ptybench.results import read_records

    folder, workload = bundle
    manifest = verify_bundle(folder)
    assert manifest["workload_version"] == "test-1" and manifest["machine_label"] == "test-box"
    assert set(manifest["sha256"]) == {"results.jsonl", "forecast.json", "report.html"}
    records = read_records(folder / "results.jsonl")
    assert len(records) == 4 and {r["repeat"] for r in records} == {0, 1}
    for record in records:
        assert record["validation"]["result"] in ("pass", "fail")
        assert record["tier"] in ("baseline", "optimized") and record["load"]["before"]["load_average"]
        assert isinstance(record["noisy"], list)
    rows = json.loads((folder / "forecast.json").read_text())
    assert rows and rows[0]["label"] == "ESTIMATE" and rows[0]["hold_out"] is None  # two sizes: no hold-out
    # resume: nothing measured again
    assert main(["procure", "--profile", "tiny", "--workload", str(workload), "--out", str(folder),
                 "--threads", "1", "--no-progress"]) == 0
    assert len(read_records(folder / "results.jsonl")) == 4
    # a changed file is caught
    report = folder / "report.html"
    report.write_text(report.read_text() + "<!-- edited -->")
    with pytest.raises(ValueError, match=r"report\.html changed"):
        verify_bundle(folder)


@pytest.mark.slow
def test_report_and_forecast_commands_read_bundles_and_files(bundle, tmp_path, capsys):
    folder, _ = bundle
    out = tmp_path / "r.html"
    assert main(["report", str(folder / "results.jsonl"), "--out", str(out)]) == 0
    assert "Validation" in out.read_text()
    assert main(["forecast", str(folder / "results.jsonl"), "--json", "--rates", "3kHz"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["target"] == "seed-2552x768" and "3kHz" in row["rates"]


def test_procure_and_forecast_refuse_bad_input_before_running(tmp_path, capsys):
    assert main(["procure", "--profile", "huge", "--out", str(tmp_path / "x")]) == 2
    assert "--profile" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    results = tmp_path / "r.jsonl"
    results.write_text(json.dumps(synthetic_record(64, 256)) + "\n")
    assert main(["forecast", str(results), "--rates", "quick"]) == 2
    assert "--rates" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nothing")]) == 2


def test_the_table_groups_records_by_machine_and_flags_noisy_and_optimized_runs():
    import pandas as pd

    from ptybench.report import format_table

    other = {**MACHINE, "label": "box-b", "hostname": "b"}
    records = [synthetic_record(64, 256, machine=other), synthetic_record(64, 256),
               {**synthetic_record(128, 256), "noisy": ["CPU steal 9%"], "tier": "optimized", "status": "ok"}]
    for record in records:
        record.setdefault("noisy", [])
    text = format_table(pd.json_normalize(records, max_level=1))
    lines = text.splitlines()
    assert lines[0].startswith("machine")
    body = [line.split()[0] for line in lines[2:5]]
    assert body == ["box-a", "box-a", "box-b"]  # grouped by machine
    assert "noisy optimized" in text and "noisy: box-a farfield-128-256 DM numpy: CPU steal 9%" in text


@pytest.mark.parametrize(("manifest", "message"), [
    ('{"machine_label": "x"}', "no sha256 checksums"),
    ('{"machine_label": "x", "sha256": {}}', "no sha256 checksums"),
    ("[1, 2]", "holds a list, expected an object"),
    ("not json", "manifest.json is not JSON"),
])
def test_a_bundle_that_cannot_be_verified_is_refused(tmp_path, manifest, message):
    from ptybench.procure import verify_bundle

    (tmp_path / "results.jsonl").write_text("")
    (tmp_path / "manifest.json").write_text(manifest)
    with pytest.raises(ValueError, match=message):
        verify_bundle(tmp_path)


@pytest.mark.parametrize("frames", ["[0]", "[16.5]", "\"16\"", "[true]"])
def test_bad_target_frames_in_a_workload_are_refused_naming_the_key(tmp_path, frames):
    from ptybench.workload import DEFAULT_WORKLOAD

    text = DEFAULT_WORKLOAD.read_text().replace("target_frames = [48, 256]", f"target_frames = {frames}")
    path = tmp_path / "w.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"profiles\.quick\.target_frames: expected a list of whole numbers"):
        Workload.load(path)
