"""An emulated host (``--host-memory``): a memory cgroup around the measuring child, with the page cache
counted. Real cgroups where this machine lets us make them (root on cgroup v1); refusals everywhere."""

from __future__ import annotations

import pytest

from ptybench import emulated_host
from ptybench.engines.errors import InputError
from ptybench.measurement import Measurement, require_emulated_host
from ptybench.results import measurement_key
from ptybench.runner import run_isolated

needs_cgroup = pytest.mark.skipif(emulated_host.problem() is not None,
                                  reason=f"no memory cgroup can be made here: {emulated_host.problem()}")


def point(dataset="farfield-128-4096", host="350MB", **changes):
    from ptybench.memory_model import parse_bytes

    return Measurement(dataset=dataset, engine="ePIE", iterations=1, warmup=0, threads=1, fft_floor=False,
                       timeout_s=300, host_memory_bytes=parse_bytes(host) if host else None, **changes)


@needs_cgroup
@pytest.mark.slow
def test_data_larger_than_the_emulated_host_are_read_from_disk_and_the_record_says_which_host():
    record = run_isolated(point())  # 268 MB of counts, a 350 MB host: the engines stream them from disk
    assert record["status"] == "ok", record["message"]
    assert record["residency"] == "disk"
    assert record["disk"]["read_bytes_per_iteration"] == pytest.approx(4096 * 128 * 128 * 4)
    assert record["host_memory_bytes"] == 350 * 10**6
    assert record["machine"]["memory_limit_bytes"] <= 350 * 10**6  # the child saw its host, not the machine
    assert not list(emulated_host._parent()[0].glob("ptybench-host-*"))  # the cgroup went with the run


@needs_cgroup
def test_a_host_too_small_to_start_python_is_an_oom_record_from_its_own_cgroups_count():
    record = run_isolated(point(dataset="farfield-64-256", host="40MB"))
    assert record["status"] == "oom"
    assert "out-of-memory killer" in record["message"]


def test_an_emulated_host_is_its_own_point_and_an_old_point_keeps_its_key():
    plain, hosted = point(host=None), point()
    assert measurement_key(plain.identity()) != measurement_key(hosted.identity())
    assert measurement_key({**plain.identity(), "host_memory_bytes": None}) == \
        measurement_key({k: v for k, v in plain.identity().items() if k != "host_memory_bytes"})


def test_an_emulated_host_is_refused_before_anything_runs_where_it_cannot_be_made(monkeypatch):
    monkeypatch.setattr(emulated_host, "memory_cgroup_folders", lambda: [])
    with pytest.raises(InputError, match="host_memory: expected a memory cgroup"):
        require_emulated_host(point())
    with pytest.raises(InputError, match="single-process run, got 2 ranks"):
        require_emulated_host(point(ranks=2))
    require_emulated_host(point(host=None))  # no host asked for: nothing to check


def test_a_sweep_gives_every_point_the_host_from_its_toml_key(tmp_path):
    from ptybench.sweep import SweepConfig

    config_file = tmp_path / "sweep.toml"
    config_file.write_text('datasets = ["farfield-64-256"]\nengines = ["DM", "ePIE"]\nhost_memory = "2GB"\n')
    points = SweepConfig.from_toml(str(config_file)).measurements()
    assert [p.host_memory_bytes for p in points] == [2 * 10**9, 2 * 10**9]
