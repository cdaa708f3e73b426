"""The asv suite: its configuration checks out, and a quick benchmark runs through asv --python=same."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ASV = shutil.which("asv", path=str(Path(sys.executable).parent)) or shutil.which("asv")
pytestmark = pytest.mark.skipif(ASV is None, reason="asv is not installed (pip install '.[bench]')")


def asv_config(tmp_path: Path) -> Path:
    """The project's asv.conf.json with results and HTML in tmp_path (the repository stays clean)."""
    text = "\n".join(line for line in (ROOT / "asv.conf.json").read_text().splitlines()
                     if not line.strip().startswith("//"))
    config = json.loads(text)
    config.update(repo=str(ROOT), benchmark_dir=str(ROOT / config["benchmark_dir"]),
                  results_dir=str(tmp_path / "results"), html_dir=str(tmp_path / "html"),
                  env_dir=str(tmp_path / "env"))
    path = tmp_path / "asv.conf.json"
    path.write_text(json.dumps(config))
    return path


def run_asv(tmp_path: Path, *arguments: str, timeout: float = 600) -> subprocess.CompletedProcess:
    environment = {**os.environ, "HOME": str(tmp_path), "OMP_NUM_THREADS": "1", "PTYBENCH_BENCH_THREADS": "1"}
    return subprocess.run([ASV, *arguments, "--config", str(asv_config(tmp_path))], capture_output=True, text=True,
                          timeout=timeout, cwd=tmp_path, env=environment)


def test_asv_check_passes(tmp_path):
    result = run_asv(tmp_path, "check", "--python=same")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No problems found" in result.stdout


def test_a_quick_benchmark_runs_through_asv_with_python_same(tmp_path):
    """Two engines of the grid (asv selects parameter sets by regular expression): the rest of the grid is
    the same code path, and each engine is timed in the asv benchmarks themselves."""
    assert run_asv(tmp_path, "machine", "--yes", "--machine", "ptybench-test").returncode == 0
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    result = run_asv(tmp_path, "run", "--python=same", "--quick", "--machine", "ptybench-test",
                     "--set-commit-hash", commit, "--bench", r"QuickEngineIteration\.time_iteration\('(DM|ePIE)'")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    files = [p for p in (tmp_path / "results" / "ptybench-test").glob("*.json") if p.name != "machine.json"]
    (results_file,) = files
    stored = json.loads(results_file.read_text())["results"]["bench_engines.QuickEngineIteration.time_iteration"]
    values = stored[0]
    from ptybench.benchmarks.common import CPU_BACKENDS, QUICK_DATASETS
    from ptybench.engines.registry import engine_names

    assert len(values) == len(engine_names()) * len(CPU_BACKENDS) * len(QUICK_DATASETS)
    measured = [v is not None and math.isfinite(v) for v in values]  # unselected: None or NaN
    assert all(v > 0 for v, m in zip(values, measured, strict=True) if m)
    names = [name for name in engine_names() for _ in CPU_BACKENDS for _ in QUICK_DATASETS]
    timed = {name for name, m in zip(names, measured, strict=True) if m}
    assert timed == {"DM", "ePIE"}  # the selected engines, and only those
