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
