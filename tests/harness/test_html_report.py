"""The HTML report escapes every field a results file can carry: a record from someone else's folder must not
run script in the reader's browser."""

from __future__ import annotations

import copy

import pytest
from synthetic_records import LADDER, synthetic_record

from ptybench.engines.errors import InputError
from ptybench.html_report import build_report

PAYLOAD = "<script>alert(1)</script>"


def test_a_payload_in_any_field_of_a_failed_record_is_never_written_raw():
    base = synthetic_record(*LADDER[0])
    fields = ["dataset", "engine", "backend", "device", "threads", "repeat", "message", "tier"]
    for name in fields:
        record = copy.deepcopy(base)
        record["status"], record["message"] = "error", "failed"
        record[name] = PAYLOAD
        records = [synthetic_record(*LADDER[1]), record]
        page = build_report(records, [])
        assert PAYLOAD not in page, name


def test_a_status_that_is_not_a_ptybench_status_is_refused_not_rendered():
    record = synthetic_record(*LADDER[0])
    record["status"] = PAYLOAD
    with pytest.raises(InputError, match="record status: expected one of"):
        build_report([record], [])


def test_drawing_the_report_leaves_a_users_matplotlib_backend_alone(tmp_path):
    import matplotlib

    from ptybench.report import plot_scaling
    from ptybench.results import load

    before = matplotlib.get_backend()
    records = [synthetic_record(*point) for point in LADDER]
    build_report(records, [])
    path = tmp_path / "r.jsonl"
    from ptybench import results

    for record in records:
        results.append(path, record)
    plot_scaling(load(path), tmp_path / "s.png")
    assert matplotlib.get_backend() == before and (tmp_path / "s.png").stat().st_size > 0
