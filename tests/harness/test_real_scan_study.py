"""The real-scan study: engines on the measured P25 scan, cdtools and pty-chi skipped with a reason when absent,
figures carrying the data's attribution; another code's model scored by ptybench's forward model."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from ptybench.datasets import load
from ptybench.engines import Reconstruction
from ptybench.peers import real_scan


def test_the_study_writes_a_table_figures_and_runs(tmp_path, monkeypatch):
    monkeypatch.setenv(real_scan.CDTOOLS_ENV, str(tmp_path / "no-python"))
    monkeypatch.setenv("PTYBENCH_PTYCHI_PYTHON", str(tmp_path / "no-python"))
    variants = (("ePIE", "ePIE", 1, {}), ("ML, 2 modes", "ML", 2, {}))
    runs = real_scan.study("p25-nearfield", 2, tmp_path, threads=1, variants=variants)
    assert [run.status for run in runs] == ["ok", "ok"] + ["skipped"] * 5
    assert [run.label for run in runs[2:]] == ["pty-chi DM", "pty-chi LSQML", "cdtools", "cdtools, positions as given",
                                               "cdtools, ptybench's model"]
    assert all("no Python at" in run.reason for run in runs[2:])
    assert all(len(run.r_factor) == 2 and 0 < run.final_r < 0.2 for run in runs[:2])
    table = (tmp_path / "table.md").read_text()
    assert "| ptybench | ML, 2 modes |" in table and "skipped" in table
    assert (tmp_path / "r-factor.png").stat().st_size > 10_000 and (tmp_path / "objects.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "runs.json").read_text())[0]["label"] == "ePIE"


def test_another_codes_model_is_scored_as_ptybench_scores_its_own():
    """A model handed over in photons (as the export gives it to pty-chi) scores what the run recorded."""
    with load("p25-nearfield") as data:
        arrays = data.arrays()
        parameters = {**data.engine_parameters(), "engine": "ePIE", "iterations": 2}
    result = Reconstruction(**arrays, parameters=parameters).run()
    frames = arrays["diffraction_data"]
    per_unit = real_scan.photon_scale(frames, np.issubdtype(frames.dtype, np.integer), None).photons_per_unit
    ((r_factor, noise_ratio),) = real_scan.score_models(
        "p25-nearfield", [(result.object[0], result.probe[0] * np.sqrt(per_unit))])
    assert r_factor == pytest.approx(result.final.r_factor, rel=1e-4)
    assert noise_ratio > 1


def test_a_ptychi_that_cannot_run_is_a_failed_run_with_its_last_words(tmp_path, monkeypatch):
    """This Python has no pty-chi: the run is 'failed', the reason says why, nothing is raised."""
    monkeypatch.setenv("PTYBENCH_PTYCHI_PYTHON", sys.executable)
    run, obj = real_scan.run_ptychi("p25-nearfield", "DM", 2, 1, tmp_path, timeout=120)
    assert run.status == "failed" and obj is None
    assert "No module named" in run.reason and (tmp_path / "ptychi-dm.log").is_file()


@pytest.mark.skipif(not real_scan.cdtools_python().is_file(), reason="cdtools' venv is absent (`make peers`)")
def test_cdtools_ablation_holds_what_ptybench_does_not_fit(tmp_path):
    """'ptybench's model': no background, weights as in the file, every frame at a whole pixel and kept there."""
    label, extra, fits = real_scan.CDTOOLS_VARIANTS[2]
    run, obj = real_scan.run_cdtools("p25-nearfield", 2, 1, tmp_path, label, extra, fits, timeout=300)
    assert run.status == "ok" and run.label == label and obj is not None
    with np.load(tmp_path / "cdtools-fixed-whole_pixels.npz") as result:
        positions = result["translations_px"]
        assert np.abs(positions - np.round(positions)).max() < 1e-3
        assert np.abs(result["translations_px_initial"] - positions).max() > 0.1  # the file's are sub-pixel
        assert np.all(result["background"] == 0) and np.all(result["weights"] == 1)


@pytest.mark.skipif(not real_scan.cdtools_python().is_file(), reason="cdtools' venv is absent (`make peers`)")
def test_an_unknown_cdtools_parameter_to_hold_is_a_failed_run_naming_it(tmp_path):
    run, obj = real_scan.run_cdtools("p25-nearfield", 1, 1, tmp_path, "held", {"fixed": ["bg"]}, "", timeout=120)
    assert run.status == "failed" and obj is None and "expected some of" in run.reason and "bg" in run.reason
