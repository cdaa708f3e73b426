"""The documentation builds with MkDocs in strict mode: every link and image it names resolves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_docs_build_without_warnings(tmp_path):
    pytest.importorskip("mkdocs")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "guide" / "index.html").is_file()


def test_the_readme_links_resolve():
    """README links are to files in the repository (GitHub renders them); each must exist."""
    import re

    text = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#\s]+)\)", text):
        if "://" not in target:
            assert (ROOT / target).exists(), target


def test_the_measurement_log_is_generated_from_the_committed_results_files():
    """docs/measurement-log.md is `make measurement-log`'s output, not prose: regenerating it changes nothing."""
    pytest.importorskip("ruptures")
    from ptybench.history import change_points, markdown_log, series
    from ptybench.results import read_records

    sources = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "docs" / "measurements").glob("*.jsonl"))
    assert sources, "no results files in docs/measurements/"
    histories = series(read_records([ROOT / source for source in sources]))
    changes = [change for name, entries in histories.items() for change in change_points(name, entries)]
    assert markdown_log(histories, changes, sources) == (ROOT / "docs" / "measurement-log.md").read_text()
