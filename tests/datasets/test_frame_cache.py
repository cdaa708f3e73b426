"""Generated frames kept on disk: read back equal to generated ones, only for whole small datasets, keyed
so that another spec never reads them, and a damaged file is regenerated rather than trusted."""

from __future__ import annotations

import numpy as np
import pytest

from ptybench.datasets import frame_cache, load
from ptybench.engines.errors import InputError


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PTYBENCH_CACHE", str(tmp_path))
    return tmp_path / "frames"


def test_kept_frames_equal_generated_ones_whole_and_in_part(own_cache):
    data = load("farfield-64-256")
    assert data.frames(10, 20).shape == (10, 64, 64) and not own_cache.exists()  # a part is never kept
    made = data.frames()
    (kept,) = own_cache.iterdir()
    assert np.array_equal(np.load(kept), made)
    assert np.array_equal(data.frames(), made)
    assert np.array_equal(data.frames(100, 140), data._generate(100, 140))


def test_another_spec_or_fft_library_has_another_file():
    first, second = load("farfield-64-256").spec, load("farfield-64-256-masked").spec
    assert frame_cache.cache_path(first, "scipy") != frame_cache.cache_path(second, "scipy")
    assert frame_cache.cache_path(first, "scipy") != frame_cache.cache_path(first, "mkl_fft")


def test_a_damaged_file_is_regenerated_not_trusted(own_cache):
    data = load("farfield-64-256")
    made = data.frames()
    (kept,) = own_cache.iterdir()
    kept.write_bytes(kept.read_bytes()[:1000])
    assert np.array_equal(data.frames(), made)


def test_the_limit_turns_the_cache_off_and_a_bad_limit_names_the_variable(own_cache, monkeypatch):
    monkeypatch.setenv(frame_cache.VARIABLE, "0")
    load("farfield-64-256").frames()
    assert not own_cache.exists()
    monkeypatch.setenv(frame_cache.VARIABLE, "lots")
    with pytest.raises(InputError, match=r"PTYBENCH_FRAME_CACHE_BYTES: expected a number of bytes >= 0.*'lots'"):
        load("farfield-64-256").frames()


def test_a_full_disk_costs_only_the_kept_copy_and_leaves_no_partial_file(own_cache, monkeypatch):
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", full)
    data = load("farfield-64-256")
    assert np.array_equal(data.frames(), data._generate(0, 256))
    assert list(own_cache.iterdir()) == []
