"""The ``ptybench`` command: help, version, datasets sub-commands, demo, errors without tracebacks."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import h5py
import numpy as np
import pytest

from ptybench import __version__
from ptybench.cli import main
from ptybench.datasets import load
from ptybench.results import read_records


def test_module_entry_point_prints_version():
    result = subprocess.run([sys.executable, "-m", "ptybench", "--version"], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == f"ptybench {__version__}"


def test_help_names_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for word in ("datasets", "demo", "ptybench demo", "PTYBENCH_CACHE"):
        assert word in out


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "usage: ptybench" in capsys.readouterr().out


def test_datasets_list_shows_named_sets_and_ladders_on_request(capsys):
    assert main(["datasets", "list"]) == 0
    out = capsys.readouterr().out
    assert "seed-2552x768" in out and "farfield-64-256" in out and "farfield-2048-65536" not in out
    assert main(["datasets", "list", "--ladders"]) == 0
    assert "farfield-2048-65536" in capsys.readouterr().out


def test_datasets_info_reports_sizes(capsys):
    assert main(["datasets", "info", "farfield-64-256"]) == 0
    out = capsys.readouterr().out
    assert "256 frames of 64x64" in out and "exit waves" in out


def test_datasets_make_writes_a_readable_cxi(tmp_path, capsys):
    out = tmp_path / "small.cxi"
    assert main(["datasets", "make", "nearfield-64-64", "--out", str(out)]) == 0
    assert "frames/s" in capsys.readouterr().out
    with load(out) as data:
        np.testing.assert_array_equal(data.frames(0, 4), load("nearfield-64-64").frames(0, 4))


def test_unknown_dataset_is_an_error_without_traceback(capsys):
    assert main(["datasets", "info", "farfield-65-256"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ptybench: error: dataset: unknown name") and "Traceback" not in err


def line_points(axis):
    """(label, number of plotted points) of every line on a matplotlib axis."""
    return {line.get_label(): len(line.get_xdata()) for line in axis.get_lines()}


def test_demo_runs_a_small_sweep_with_a_table_and_a_plot(tmp_path, capsys, saved_figures):
    arguments = ["demo", "--datasets", "farfield-64-256", "--engines", "DM,ePIE", "--backends", "numpy",
                 "--iterations", "2", "--out", str(tmp_path), "--no-progress"]
    assert main(arguments) == 0
    out = capsys.readouterr().out
    assert "obj err" in out and str(tmp_path / "scaling.png") in out
    records = read_records(tmp_path / "results.jsonl")
    assert [(r["engine"], r["status"]) for r in records] == [("DM", "ok"), ("ePIE", "ok")]
    assert all(0 < r["object_error"] < 0.5 and r["seconds_per_iteration"] > 0 for r in records)
    (figure,) = saved_figures
    time_vs_n, _, memory_vs_n, _ = figure.axes
    assert (time_vs_n.get_xlabel(), time_vs_n.get_ylabel()) == ("frames N", "s / iteration")
    assert line_points(time_vs_n) == {"DM numpy (det=64)": 1, "ePIE numpy (det=64)": 1}
    assert "memory model" in line_points(memory_vs_n)
    assert main(arguments) == 0  # resumes: nothing new to measure
    assert len(read_records(tmp_path / "results.jsonl")) == 2


def test_engines_with_a_dataset_shows_the_constants_derived_from_it(capsys):
    assert main(["engines", "DM", "--dataset", "nearfield-64-64-lowcount"]) == 0
    out = capsys.readouterr().out
    assert "photons per unit     1 photons per unit (counts)" in out
    floor = float(out.split("Poisson noise floor")[-1].split()[0])
    assert 0.05 < floor < 0.45
    assert f"DM    pbound 'auto' -> {floor:.4g}" in out


def test_engines_lists_every_engine_and_its_keys(capsys):
    assert main(["engines"]) == 0
    out = capsys.readouterr().out
    for word in ("DM keys", "RAAR keys", "ePIE keys", "rPIE keys", "ML keys", "pbound", "noise", "frames_per_block"):
        assert word in out
    assert main(["engines", "XX"]) == 2


def test_run_appends_a_record_and_table_and_plot_read_it(tmp_path, capsys, saved_figures):
    out = tmp_path / "r.jsonl"
    assert main(["run", "--dataset", "farfield-64-256", "--engine", "RAAR", "--iterations", "2", "--warmup", "1",
                 "--threads", "1", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "RAAR" in captured.out and "it/s" not in captured.err and "s/it" not in captured.err  # no bar in pipes
    (record,) = read_records(out)
    assert record["status"] == "ok" and record["engine"] == "RAAR" and record["iterations"] == 2
    assert main(["table", str(out), "--csv", str(tmp_path / "r.csv")]) == 0
    assert "RAAR" in capsys.readouterr().out and (tmp_path / "r.csv").stat().st_size > 100
    assert main(["plot", str(out), "--out", str(tmp_path / "p.png")]) == 0
    (figure,) = saved_figures
    assert (tmp_path / "p.png").exists() and figure.axes[1].get_xlabel() == "detector size (pixels per side)"
    assert line_points(figure.axes[1]) == {"RAAR numpy (N=256)": 1}


def test_run_on_a_cxi_file_reports_fourier_errors_without_ground_truth(tmp_path, capsys):
    cxi = tmp_path / "mine.cxi"
    assert main(["datasets", "make", "nearfield-64-64", "--out", str(cxi)]) == 0
    with h5py.File(cxi, "r+") as handle:  # a user's measured data has no ground truth
        groups = []
        handle.visit(lambda name: groups.append(name) if name.endswith("ground_truth") else None)
        assert groups
        for name in groups:
            del handle[name]
    out = tmp_path / "r.jsonl"
    assert main(["run", "--dataset", str(cxi), "--engine", "DM", "--iterations", "2", "--warmup", "0",
                 "--threads", "1", "--out", str(out)]) == 0
    (record,) = read_records(out)
    assert record["status"] == "ok" and record["object_error"] is None
    assert 0 < record["r_factor"] < 1 and record["err_fmag"] > 0
    assert record["dataset_info"]["propagation"] == "nearfield"


def standard_cxi(tmp_path):
    """A far-field file with only the standard CXI fields, as another code writes it."""
    path = tmp_path / "beamline.cxi"
    assert main(["datasets", "make", "farfield-64-256", "--out", str(path)]) == 0
    with h5py.File(path, "a") as handle:
        for field in ("entry_1/ptybench", "entry_1/instrument_1/detector_1/mask", "entry_1/data_1",
                      "entry_1/image_1", "entry_1/image_2", "entry_1/instrument_1/source_1/illumination"):
            del handle[field]
    return path


def test_info_plan_and_run_work_on_a_file_with_only_standard_cxi_fields(tmp_path, capsys):
    path = standard_cxi(tmp_path)
    assert main(["datasets", "info", str(path)]) == 2  # the regime is not in the file: say what to pass
    assert "?propagation=farfield" in capsys.readouterr().err
    path = f"{path}?propagation=farfield"
    assert main(["datasets", "info", path]) == 0
    assert "CXI file" in capsys.readouterr().out
    assert main(["plan", "--dataset", path, "--device-memory", "1GB", "--backends", "numpy"]) == 0
    assert "DM " in capsys.readouterr().out
    out = tmp_path / "r.jsonl"
    assert main(["run", "--dataset", path, "--engine", "DM", "--iterations", "2", "--warmup", "0",
                 "--threads", "1", "--out", str(out)]) == 0
    (record,) = read_records(out)
    assert record["status"] == "ok" and record["object_error"] is None and 0 < record["r_factor"] < 1
    assert record["dataset_info"]["initial_probe"] == "estimated from the mean diffraction pattern"
    assert record["dataset_info"]["n_frames"] == 256


def test_failed_run_exits_non_zero_but_keeps_the_record(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    assert main(["run", "--dataset", "farfield-64-256", "--engine", "rPIE", "--iterations", "4",
                 "--parameters", '{"rpie_alpha": 0.0}', "--out", str(out)]) == 1
    assert read_records(out)[0]["status"] == "diverged"


@pytest.mark.parametrize(("engine", "parameters", "named"), [
    ("ePIE-batched", '{"batch_frames": 0}', "batch_frames"), ("ePIE", '{"alfa": 1}', "alfa"),
    ("EPIE", "{}", "engine"), ("DM", "[1]", "--parameters")])
def test_run_refuses_bad_parameters_before_measuring(tmp_path, capsys, engine, parameters, named):
    out = tmp_path / "r.jsonl"
    assert main(["run", "--dataset", "farfield-64-256", "--engine", engine, "--parameters", parameters,
                 "--out", str(out)]) == 2
    assert named in capsys.readouterr().err and not out.exists()


def test_plan_answers_the_seed_workload_question(capsys):
    assert main(["plan", "--dataset", "seed-2552x768", "--device-memory", "80GB", "--engines", "DM,ePIE",
                 "--backends", "cupy"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("DM ", "ePIE "))}
    # DM: everything resident on one 80 GB card in bounded blocks (it used to say 229.5 GB and 3 GPUs).
    assert rows["DM"][2] == "resident" and 1 < int(rows["DM"][3]) < 2552 and float(rows["DM"][4]) < 30
    assert rows["DM"][-3] == "1" and rows["ePIE"][-3] == "1"  # devices; then the disk columns, empty here
    assert rows["DM"][-2:] == ["-", "-"]
    assert main(["plan", "--dataset", "seed-2552x768", "--device-memory", "lots"]) == 2
    assert "memory size" in capsys.readouterr().err


def test_plan_json_rows_are_what_tools_read(capsys):
    assert main(["plan", "--dataset", "seed-2552x768", "--device-memory", "16GB", "--engines", "DM",
                 "--backends", "cupy", "--json"]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {"engine", "backend", "residency", "frames_per_block", "device_bytes", "resident_bytes", "streamed_bytes",
            "pinned_host_bytes", "devices_needed"} <= set(row)
    assert row["residency"] == "streamed" and row["fits"] and row["devices_needed"] > 1
    assert row["pinned_host_bytes"] == 2552 * 768 * 768 * (4 + 8)


def test_sweep_without_a_config_or_lists_is_an_error(capsys):
    assert main(["sweep", "--engines", "DM"]) == 2
    assert "--datasets" in capsys.readouterr().err


@pytest.mark.parametrize(("arguments", "message"), [
    (["run", "--dataset", "farfield-64-256", "--engine", "DM", "--out", "{tmp}"], "--out: .* is a directory"),
    (["run", "--dataset", "farfield-64-256", "--engine", "DM", "--out", "{file}/r.jsonl"], "--out: cannot write"),
    (["sweep", "--datasets", "farfield-64-256", "--engines", "DM", "--out", "{tmp}"], "--out: .* is a directory"),
    (["sweep", "--datasets", "farfield-64-256", "--engines", "DM", "--frames-per-block", "a,b", "--out",
      "{tmp}/r.jsonl"], "--frames-per-block: expected comma-separated whole numbers"),
    (["plan", "--dataset", "farfield-64-256", "--device-memory", "infGB"], "memory size: expected a number"),
    (["datasets", "make", "nearfield-64-64", "--out", "{file}/d.cxi"], "Not a directory|File exists"),
    (["datasets", "info", "{file}"], "not a readable HDF5/CXI file"),
    (["run", "--dataset", "nosuch", "--engine", "DM", "--out", "{tmp}/r.jsonl"], "dataset: unknown name 'nosuch'"),
    (["run", "--dataset", "{tmp}/missing.cxi", "--engine", "DM", "--out", "{tmp}/r.jsonl"], "does not exist"),
    (["sweep", "--datasets", "nosuch", "--engines", "DM", "--out", "{tmp}/r.jsonl"], "unknown name 'nosuch'"),
    (["demo", "--datasets", "nosuch"], "unknown name 'nosuch'"),
    (["scale", "--dataset", "nosuch", "--engine", "DM", "--emit-job", "slurm", "--out", "{tmp}/job.sh"],
     "unknown name 'nosuch'"),
    (["run", "--dataset", "farfield-64-256", "--engine", "DM", "--backend", "torch:cuda:abc", "--out",
      "{tmp}/r.jsonl"], "device of torch is"),
    (["sweep", "{tmp}/bad.toml", "--out", "{tmp}/r.jsonl"], "datasets: expected names"),
    (["report", "--projections", "0", "{file}"], "argument --projections: expected a positive whole number"),
    (["forecast", "--projections", "-3", "{file}"], "argument --projections: expected a positive whole number"),
], ids=["run --out dir", "run --out under a file", "sweep --out dir", "fpb letters", "inf memory",
        "make into a file path", "info on a non-HDF5 file", "run unknown dataset", "run missing file",
        "sweep unknown dataset", "demo unknown dataset", "emit-job unknown dataset", "bad device",
        "config with a list for a name", "report --projections 0", "forecast --projections -3"])
def test_user_mistakes_are_one_line_errors_before_any_measurement(tmp_path, capsys, arguments, message):
    a_file = tmp_path / "plain.txt"
    a_file.write_text("not a folder\n")
    (tmp_path / "bad.toml").write_text('datasets = [["farfield-64-256"]]\nengines = ["DM"]\n')
    filled = [a.format(tmp=tmp_path, file=a_file) for a in arguments]
    assert main(filled) == 2
    err = capsys.readouterr().err
    assert err.startswith("ptybench: error:") and "Traceback" not in err
    assert re.search(message, err), err
    assert not any(tmp_path.glob("**/*.jsonl")) or "--frames-per-block" in message


def test_a_sweep_whose_every_point_failed_exits_non_zero(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    code = main(["sweep", "--datasets", "farfield-64-256", "--engines", "DM,ML", "--backends", "cupy",
                 "--iterations", "1", "--warmup", "0", "--out", str(out), "--no-progress"])
    assert code == 1 and "every point failed" in capsys.readouterr().err
    assert [r["status"] for r in read_records(out)] == ["error", "error"]


def test_the_table_prints_decimal_megabytes_like_every_other_size():
    import pandas as pd

    from ptybench.report import summary_frame

    record = {"status": "ok", "backend": "numpy", "device": None, "engine": "DM",
              "memory.host_algorithm_bytes": 5_000_000, "memory.predicted_bytes": 4_000_000}
    frame = summary_frame(pd.DataFrame([record]))
    assert frame["memory_measured_mb"].iloc[0] == pytest.approx(5.0)
    assert frame["memory_predicted_mb"].iloc[0] == pytest.approx(4.0)


def test_the_table_shows_what_a_second_thread_buys():
    import pandas as pd

    from ptybench.report import format_table, summary_frame

    point = {"status": "ok", "dataset": "farfield-64-256", "backend": "numpy", "device": None,
             "frames_per_block_used": 32, "iterations": 4, "parameters.pbound": 0.1}
    records = [{**point, "engine": engine, "backend_info.threads": threads, "seconds_per_iteration": seconds}
               for engine, threads, seconds in (("DM", 1, 0.4), ("DM", 2, 0.25), ("ePIE", 1, 0.3), ("ePIE", 2, 0.3),
                                                 ("ML", 2, 0.5))]
    frame = summary_frame(pd.DataFrame(records))
    assert frame["thread_speedup"].tolist()[:4] == pytest.approx([1.0, 1.6, 1.0, 1.0])
    assert frame["thread_speedup"].isna().iloc[4]          # ML has no one-thread point to compare with
    assert "1.60×" in format_table(pd.DataFrame(records))


def test_sweep_threads_is_a_grid_and_checked():
    from ptybench.sweep import SweepConfig

    config = SweepConfig(datasets=["farfield-64-256"], engines=["DM"], threads=[1, 2])
    assert [point.threads for point in config.measurements()] == [1, 2]
    default = SweepConfig(datasets=["farfield-64-256"], engines=["DM"])
    assert [point.threads for point in default.measurements()] == [None]
    with pytest.raises(ValueError, match="threads: expected whole numbers >= 1, got 0"):
        SweepConfig(datasets=["farfield-64-256"], engines=["DM"], threads=[1, 0])
    assert main(["sweep", "--datasets", "farfield-64-256", "--engines", "DM", "--threads", "1,two"]) == 2


def test_a_bug_keeps_its_traceback_and_debug_shows_a_users_mistake_in_full(monkeypatch, capsys):
    """Only a user's mistake becomes one line: a bug in a command (here a KeyError and a ValueError from inside
    it) propagates with its traceback, and --debug re-raises the user's mistake too."""
    from ptybench.commands import datasets as datasets_command

    def broken(args):
        raise KeyError("a bug")

    monkeypatch.setattr(datasets_command, "list_datasets", broken)
    with pytest.raises(KeyError, match="a bug"):
        main(["datasets", "list"])

    def broken_value(args):
        return int("not a number")  # a ValueError that is no user's input error

    monkeypatch.setattr(datasets_command, "list_datasets", broken_value)
    with pytest.raises(ValueError, match="invalid literal"):
        main(["datasets", "list"])
    assert main(["datasets", "info", "no-such-dataset"]) == 2
    assert "unknown name" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown name"):
        main(["--debug", "datasets", "info", "no-such-dataset"])


@pytest.mark.parametrize(("content", "message"), [
    (b"42\n", "holds a JSON int, expected a record"),
    (b"[1, 2]\n", "holds a JSON list, expected a record"),
    (b'{"dataset": "x"}\n', "no str field 'engine'"),
    (b'{"dataset": "x", "engine": "DM", "backend": "numpy", "status": "ok", "object_error": "low"}\n',
     "object_error is 'low', expected a number"),
    (b"dataset,engine\nfarfield-64-256,DM\n", r":1 is not a JSON record"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "is not text"),
], ids=["number", "list", "missing fields", "string for a number", "csv", "png"])
def test_files_that_are_not_results_are_named_with_the_line(tmp_path, capsys, content, message):
    path = tmp_path / "results.jsonl"
    path.write_bytes(content)
    assert main(["table", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(path) in err
    assert re.search(message, err), err


def test_a_new_command_is_one_module_in_ptybench_commands(tmp_path, monkeypatch, capsys):
    """No list to edit: a module with add_parser() beside the others is a sub-command, listed after them."""
    import ptybench.commands

    (tmp_path / "hello.py").write_text(
        "def add_parser(subparsers):\n"
        "    parser = subparsers.add_parser('hello', help='say hello')\n"
        "    parser.set_defaults(func=lambda args: print('hello from a plug-in command') or 0)\n")
    monkeypatch.setattr(ptybench.commands, "__path__", [*ptybench.commands.__path__, str(tmp_path)])
    monkeypatch.delitem(sys.modules, "ptybench.commands.hello", raising=False)
    assert main(["hello"]) == 0
    assert "hello from a plug-in command" in capsys.readouterr().out
