"""The HTML report in a real browser: headless Chromium renders it from disk with no network, runs its
script without a console message, and shows the tables (`.ci/run` installs chromium)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from synthetic_records import LADDER, MACHINE, TARGET, ladder, synthetic_record

from ptybench.forecast import forecast
from ptybench.html_report import write_report

CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(name)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium: `apt-get install -y chromium` "
                                                          "(.ci/run installs it)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--enable-logging=stderr", "--v=0"]


def chromium(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, *arguments], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    other = {**MACHINE, "label": "box-b", "hostname": "b"}
    records = ladder() + [synthetic_record(d, n, machine=other, repeat=r, scale=2.0) for d, n in LADDER
                          for r in range(3)]
    records.append({**synthetic_record(128, 256, engine="ML", object_error=0.9), "noisy": ["CPU steal 9%"]})
    path = tmp_path_factory.mktemp("report") / "report.html"
    write_report(path, records, forecast(records, TARGET, 498, [3e3, 1.1e5]), reference="box-a")
    return path


def test_the_report_renders_to_a_screenshot(report):
    shot = report.parent / "shot.png"
    done = chromium("--window-size=1300,2000", f"--screenshot={shot}", report.as_uri())
    assert shot.exists(), done.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 50_000  # a blank page compresses to a few kB


def test_the_report_runs_without_console_messages_and_shows_its_tables(report):
    done = chromium("--dump-dom", report.as_uri())
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert console == []
    dom = done.stdout
    assert 'data-ready="yes"' in dom  # the page's script ran to its end
    assert len(re.findall(r"<table", dom)) >= 4
    text = re.sub(r"<[^>]+>", " ", dom)
    for expected in ("Figures of merit", "Validation", "PASS", "FAIL", "ESTIMATE", "box-b", "0.50×",
                     "keeps up", "CPU steal 9%"):
        assert expected in text, expected
