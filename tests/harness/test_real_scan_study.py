"""The real-scan study: engines on the measured P25 scan, cdtools skipped with a reason when absent, figures
carrying the data's attribution."""

from __future__ import annotations

import json

from ptybench.peers import real_scan


def test_the_study_writes_a_table_figures_and_runs(tmp_path, monkeypatch):
    monkeypatch.setenv(real_scan.CDTOOLS_ENV, str(tmp_path / "no-python"))
    variants = (("ePIE", "ePIE", 1, {}), ("ML, 2 modes", "ML", 2, {}))
    runs = real_scan.study("p25-nearfield", 2, tmp_path, threads=1, variants=variants)
    assert [run.status for run in runs] == ["ok", "ok", "skipped"]
    assert "no Python at" in runs[-1].reason
    assert all(len(run.r_factor) == 2 and 0 < run.final_r < 0.2 for run in runs[:2])
    table = (tmp_path / "table.md").read_text()
    assert "| ptybench | ML, 2 modes |" in table and "skipped" in table
    assert (tmp_path / "r-factor.png").stat().st_size > 10_000 and (tmp_path / "objects.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "runs.json").read_text())[0]["label"] == "ePIE"
