"""The scratch disk's bandwidth: measured with nothing left behind, kept per file system, read back after."""

from __future__ import annotations

import pytest

from ptybench import disk_bandwidth
from ptybench.engines.errors import InputError


def test_a_measurement_leaves_no_file_and_is_kept_for_the_next_plan(tmp_path, monkeypatch):
    monkeypatch.setenv("PTYBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(disk_bandwidth, "PROBE_BYTES", 16 * 2**20)
    measured = disk_bandwidth.cached(str(tmp_path))
    assert measured.read_bytes_per_second > 0 and measured.write_bytes_per_second > 0
    assert [p.name for p in tmp_path.iterdir()] == ["cache"]

    def fail(*args, **kwargs):
        raise AssertionError("measured again")

    monkeypatch.setattr(disk_bandwidth, "measure", fail)
    assert disk_bandwidth.cached(str(tmp_path)) == measured
    assert "GB/s" in measured.describe()


def test_no_kept_bandwidth_is_none_when_measuring_is_not_wanted_and_a_missing_directory_is_named(tmp_path,
                                                                                                 monkeypatch):
    monkeypatch.setenv("PTYBENCH_CACHE", str(tmp_path / "cache"))
    assert disk_bandwidth.cached(str(tmp_path), measure_if_missing=False) is None
    with pytest.raises(InputError, match="scratch_directory: expected an existing directory"):
        disk_bandwidth.measure(str(tmp_path / "nowhere"))


@pytest.mark.parametrize("entry", [{"read_bytes_per_second": "fast"}, {"read_bytes_per_second": -1.0},
                                   {"read_bytes_per_second": float("inf")}, {"unexpected": 1}])
def test_a_damaged_or_planted_cache_entry_is_measured_again_not_trusted(tmp_path, monkeypatch, entry):
    import json
    import os

    monkeypatch.setenv("PTYBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(disk_bandwidth, "PROBE_BYTES", 8 * 2**20)
    whole = {"read_bytes_per_second": 1e9, "write_bytes_per_second": 1e9, "directory": "/x", "measured": "then"}
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "disk-bandwidth.json").write_text(
        json.dumps({str(os.stat(tmp_path).st_dev): {**whole, **entry} if "unexpected" not in entry else entry}))
    measured = disk_bandwidth.cached(str(tmp_path))
    assert measured.measured != "then" and 0 < measured.read_bytes_per_second < float("inf")


def test_a_disk_that_cannot_be_measured_after_the_run_keeps_the_record(monkeypatch, tiny_scratch_measurement):
    record = tiny_scratch_measurement
    assert record.status == "ok" and record.disk["read_bytes_per_iteration"] > 0
    assert "disk_read_bytes_per_second" not in record.disk and "read_hidden_share" not in record.disk


@pytest.fixture
def tiny_scratch_measurement(monkeypatch, tmp_path):
    """A serial measurement on disk whose bandwidth measurement fails with a full disk."""
    import errno

    from ptybench.engines.communication import SerialCommunicator
    from ptybench.measurement import Measurement, measure

    def full(directory):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(disk_bandwidth, "cached", full)
    return measure(Measurement(dataset="farfield-64-256", engine="ePIE", iterations=1, warmup=0, threads=1,
                               fft_floor=False, parameters={"residency": "disk", "scratch_directory": str(tmp_path)}),
                   SerialCommunicator())
