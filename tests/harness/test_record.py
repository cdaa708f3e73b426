"""ptybench/record.py: one record type for every outcome."""

from __future__ import annotations

import pytest

from ptybench.measurement import Measurement
from ptybench.record import RECORD_FIELDS, SCHEMA_VERSION, Record
from ptybench.results import KEY_FIELDS, measurement_key


def test_a_failure_record_has_every_field_and_the_measurement_key():
    measurement = Measurement(dataset="farfield-64-256", engine="ML", threads=1, parameters={"noise": "poisson"})
    record = Record.failure(measurement, "timeout", "killed", 12.5).to_dict()
    assert set(record) == {"schema", *RECORD_FIELDS} and record["schema"] == SCHEMA_VERSION
    assert (record["status"], record["message"], record["wall_seconds"]) == ("timeout", "killed", 12.5)
    assert record["seconds_per_iteration"] is None and record["machine"]["cores_available"] >= 1
    assert set(KEY_FIELDS) <= set(record)
    assert measurement_key(record) == measurement_key(measurement.identity())


def test_an_unknown_status_is_refused():
    with pytest.raises(ValueError, match="record status"):
        Record.of(Measurement(dataset="farfield-64-256", engine="DM"), status="fine")


def test_a_stored_record_reads_back_as_a_record_with_typed_fields():
    """Readers use Record fields, not dict.get chains: an old schema's missing fields are None, storage fields go."""
    from ptybench.record import as_record

    old = {"schema": 1, "key": "abc", "dataset": "farfield-64-256", "engine": "DM", "backend": "numpy",
           "iterations": 5, "status": "ok", "seconds_per_iteration": 0.5, "field_from_the_future": 1}
    record = as_record(old)
    assert isinstance(record, Record)
    assert (record.engine, record.ranks, record.warmup, record.parameters, record.noisy) == ("DM", 1, 0, {}, None)
    assert record.seconds_per_iteration == 0.5 and not hasattr(record, "field_from_the_future")
    assert as_record(record) is record
    assert Record.from_dict(record.to_dict()) == record


def test_a_launcher_is_part_of_the_key_only_when_it_changes_what_is_measured():
    """`scale` under an emulated network is another point; plain runs keep the keys they had before the field."""
    plain = Measurement(dataset="farfield-64-256", engine="DM", ranks=2)
    before = {name: value for name, value in plain.identity().items() if name not in ("launcher", "repeat")}
    assert measurement_key(plain.identity()) == measurement_key(before)
    emulated = Measurement(dataset="farfield-64-256", engine="DM", ranks=2, launcher="emulated-network")
    assert measurement_key(emulated.identity()) != measurement_key(plain.identity())
