"""The results store: schema round trip, atomic lines, truncated tails, loading into pandas."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ptybench import results


def sample_record(**changes):
    record = {"dataset": "farfield-64-256", "engine": "DM", "backend": "numpy", "device": None, "ranks": 1,
              "threads": 2, "frames_per_block": None, "iterations": 5, "warmup": 2, "parameters": {"pbound": 0.25},
              "status": "ok", "seconds_per_iteration": 0.031, "stages": {"propagation": 0.01},
              "memory": {"host_peak_bytes": 123, "predicted_bytes": 120}, "object_error": np.float32(0.05),
              "iteration_seconds": np.array([0.03, 0.032]), "r_factor": math.nan}
    record.update(changes)
    return record


def test_a_record_round_trips_with_schema_and_key(tmp_path):
    path = tmp_path / "r.jsonl"
    stored = results.append(path, sample_record())
    (read,) = results.read_records(path)
    assert read == json.loads(json.dumps(stored))
    assert read["schema"] == results.SCHEMA_VERSION and len(read["key"]) == 16
    assert read["r_factor"] is None                      # NaN is stored as missing, never as NaN
    assert read["object_error"] == pytest.approx(0.05) and read["iteration_seconds"] == [0.03, 0.032]


def test_key_depends_on_what_was_measured_not_on_the_outcome():
    a = results.measurement_key(sample_record())
    assert a == results.measurement_key(sample_record(status="oom", seconds_per_iteration=9.0))
    assert a != results.measurement_key(sample_record(engine="ML"))
    assert a != results.measurement_key(sample_record(parameters={"pbound": None}))


def test_load_flattens_nested_fields_into_columns(tmp_path):
    path = tmp_path / "r.jsonl"
    results.append(path, sample_record())
    results.append(path, sample_record(engine="ML", status="diverged"))
    frame = results.load(path)
    assert list(frame["engine"]) == ["DM", "ML"]
    assert frame["memory.host_peak_bytes"].tolist() == [123, 123]
    assert frame["stages.propagation"].tolist() == [0.01, 0.01]


def test_a_truncated_last_line_is_skipped_and_the_next_append_starts_a_new_line(tmp_path):
    path = tmp_path / "r.jsonl"
    results.append(path, sample_record())
    with open(path, "a") as stream:
        stream.write('{"schema": 1, "engine": "RAA')   # a writer killed mid-line
    with pytest.warns(UserWarning, match="incomplete record"):
        assert len(results.read_records(path)) == 1
    results.append(path, sample_record(engine="ML"))
    with pytest.warns(UserWarning):
        engines = [r["engine"] for r in results.read_records(path)]
    assert engines == ["DM", "ML"]


@pytest.mark.parametrize("bad", [{"status": "fine"}, {"status": None}])
def test_unknown_status_is_refused(tmp_path, bad):
    with pytest.raises(ValueError, match="status"):
        results.append(tmp_path / "r.jsonl", sample_record(**bad))


def test_newer_schema_and_missing_file_are_clear_errors(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"schema": results.SCHEMA_VERSION + 1, "status": "ok"}) + "\n")
    with pytest.raises(ValueError, match="newer"):
        results.read_records(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        results.read_records(tmp_path / "missing.jsonl")
