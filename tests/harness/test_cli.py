"""The ``ptybench`` command: help, version, datasets sub-commands, demo, errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from ptybench import __version__
from ptybench.cli import main
from ptybench.datasets import load


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


def test_demo_writes_a_table_and_a_plot(tmp_path, capsys):
    assert main(["demo", "--engines", "DM,ePIE", "--iterations", "3", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "object error" in out and str(tmp_path / "demo.png") in out
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert [row["engine"] for row in rows] == ["DM", "ePIE"]
    assert all(0 < row["object_error"] < 1.5 and row["s_per_iter"] > 0 for row in rows)
    assert (tmp_path / "demo.png").stat().st_size > 10_000


def test_engines_lists_every_engine_and_its_keys(capsys):
    assert main(["engines"]) == 0
    out = capsys.readouterr().out
    for word in ("DM keys", "RAAR keys", "ePIE keys", "rPIE keys", "ML keys", "pbound", "noise", "frames_per_block"):
        assert word in out
    assert main(["engines", "XX"]) == 2
