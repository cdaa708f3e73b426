"""ptybench/history.py and `ptybench history`: dated series, change points on a nightly series, the log."""

from __future__ import annotations

import re

import numpy as np
import pytest
from synthetic_records import synthetic_record

from ptybench import results
from ptybench.cli import main
from ptybench.history import change_points, series

pytest.importorskip("ruptures")


def _nightly(tmp_path, levels: list[float], noise: float = 0.05, seed: int = 0):
    """One record per night: s/iter at the given level (a relative step where the level changes)."""
    rng = np.random.default_rng(seed)
    path = tmp_path / "nightly.jsonl"
    for night, level in enumerate(levels):
        record = synthetic_record(64, 256, repeat=night)
        record["seconds_per_iteration"] = 0.02 * level * float(np.exp(noise * rng.standard_normal()))
        record["created"] = f"2026-11-{night + 1:02d}T03:00:00+0000"
        record["machine"] = {**record["machine"], "git_commit": f"{night:02d}" + "a" * 38}
        results.append(path, record)
    return path


def test_a_step_of_30_percent_in_a_noisy_nightly_series_is_found_at_its_night(tmp_path):
    path = _nightly(tmp_path, [1.0] * 12 + [1.3] * 12)
    ((name, entries),) = series(results.read_records(path)).items()
    (change,) = change_points(name, entries)
    assert change.created.startswith("2026-11-13") and change.ratio == pytest.approx(1.3, rel=0.08)


def test_a_flat_noisy_series_has_no_change_point(tmp_path):
    path = _nightly(tmp_path, [1.0] * 24, seed=3)
    ((name, entries),) = series(results.read_records(path)).items()
    assert change_points(name, entries) == []


def test_history_changes_exits_1_on_a_slowdown_and_writes_the_dated_log(tmp_path, capsys):
    path = _nightly(tmp_path, [1.0] * 10 + [1.4] * 10)
    assert main(["history", str(path), "--changes"]) == 1
    assert "slower" in capsys.readouterr().out
    (tmp_path / "faster").mkdir()
    assert main(["history", str(_nightly(tmp_path / "faster", [1.0] * 10 + [0.7] * 10, seed=1)), "--changes"]) == 0
    log = tmp_path / "log.md"
    assert main(["history", str(path), "--markdown", str(log)]) == 0
    text = log.read_text()
    assert text.startswith("# Measurement log") and "| 2026-11-11 03:00 | 10aaaaaaaaaa |" in text
    assert re.search(r"▲ 1\.[34]\d×", text)
    assert main(["history", str(path)]) == 0
    assert "farfield-64-256 DM numpy" in capsys.readouterr().out


def test_bad_history_options_and_an_empty_log_are_one_line(tmp_path, capsys):
    path = _nightly(tmp_path, [1.0] * 3)
    assert main(["history", str(path), "--penalty", "nan"]) == 2
    assert "--penalty" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["history", str(empty), "--markdown", str(tmp_path / "log.md")]) == 2
    assert "no records" in capsys.readouterr().err and not (tmp_path / "log.md").exists()
