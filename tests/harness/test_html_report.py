"""The HTML report escapes every field a results file can carry: a record from someone else's folder must not
run script in the reader's browser."""

from __future__ import annotations

import copy

from synthetic_records import LADDER, synthetic_record

from ptybench.html_report import build_report

PAYLOAD = "<script>alert(1)</script>"


def test_a_payload_in_any_field_of_a_failed_record_is_never_written_raw():
    base = synthetic_record(*LADDER[0])
    fields = ["dataset", "engine", "backend", "device", "threads", "repeat", "status", "message", "tier"]
    for name in fields:
        record = copy.deepcopy(base)
        record["status"], record["message"] = "error", "failed"
        record[name] = PAYLOAD
        records = [synthetic_record(*LADDER[1]), record]
        page = build_report(records, [])
        assert PAYLOAD not in page, name
