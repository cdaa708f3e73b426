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
