"""CXI files: exact round trip, standard paths other codes read, atomic write, clear errors."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from ptybench.datasets import DatasetSpec, load, write_cxi

SPEC = DatasetSpec(kind="nearfield", n_frames=12, frame_shape=(32, 32), photons=1e5, probe_modes=2,
                   beamstop_radius=2.0, seed=5)


def test_cxi_round_trip_is_exact(tmp_path):
    source = load(SPEC)
    path = write_cxi(tmp_path / "d.cxi", source)
    with load(path) as copy:
        assert copy.spec == SPEC
        np.testing.assert_array_equal(copy.frames(), source.frames())
        np.testing.assert_array_equal(copy.frames(3, 7), source.frames(3, 7))
        np.testing.assert_array_equal(copy.positions, source.positions)
        np.testing.assert_array_equal(copy.mask, source.mask)
        np.testing.assert_array_equal(copy.ground_truth().object, source.ground_truth().object)
        np.testing.assert_array_equal(copy.ground_truth().probe, source.ground_truth().probe)
        assert copy.geometry() == source.geometry()
        for name, array in source.arrays().items():
            np.testing.assert_array_equal(copy.arrays()[name], array, err_msg=name)
        np.testing.assert_array_equal(copy.initial_probe(), source.initial_probe())
        assert copy.engine_parameters() == source.engine_parameters()
        assert copy.energy_kev == pytest.approx(source.energy_kev)
        assert copy.distance_m == pytest.approx(source.distance_m)
    assert not (tmp_path / "d.cxi.partial").exists()


def test_cxi_uses_the_standard_paths(tmp_path):
    source = load(SPEC)
    path = write_cxi(tmp_path / "d.cxi", source)
    with h5py.File(path, "r") as f:
        assert f["entry_1/instrument_1/detector_1/data"].shape == (12, 32, 32)
        assert f["entry_1/data_1/data"].shape == (12, 32, 32)        # the soft link
        assert f["entry_1/instrument_1/detector_1/distance"][()] == pytest.approx(source.distance_m)
        assert f["entry_1/instrument_1/detector_1/x_pixel_size"][()] == pytest.approx(source.detector_pixel_m)
        assert f["entry_1/instrument_1/source_1/energy"][()] > 0      # joules
        translation = f["entry_1/sample_1/geometry_1/translation"][()]
        assert translation.shape == (12, 3)
        mask = f["entry_1/instrument_1/detector_1/mask"][()]
        np.testing.assert_array_equal(mask == 0, source.mask)         # CXI: non-zero = bad pixel


def test_foreign_farfield_cxi_without_ptybench_group_still_loads(tmp_path):
    # A foreign file gives no object pixel size: the far-field one, λz/(X·pixel), is assumed.
    source = load(SPEC.with_changes(kind="farfield", probe_modes=1))
    path = write_cxi(tmp_path / "d.cxi", source)
    with h5py.File(path, "a") as f:
        del f["entry_1/ptybench"]
    with load(path) as foreign:
        assert foreign.spec is None and foreign.ground_truth() is None
        assert foreign.describe("x")["kind"] == "file" and foreign.arrays()["diffraction_data"].shape[0] == 12
        # Positions come back from the metric translations (shifted to start at 0).
        expected = source.positions - source.positions.min(axis=0)
        np.testing.assert_allclose(foreign.positions, expected, atol=0.51)
        assert foreign.initial_probe().shape == (1, 32, 32)
        assert foreign.initial_object().shape[1] >= expected[:, 0].max() + 32


def test_missing_or_non_cxi_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load(tmp_path / "missing.cxi")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = 1
    with pytest.raises(ValueError, match="not a CXI"):
        load(other)
