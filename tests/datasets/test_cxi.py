"""CXI files: exact round trip, standard paths other codes read, atomic write, clear errors."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from ptybench.datasets import CXIDataset, DatasetSpec, load, write_cxi

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
        assert f["entry_1/definition"][()] == b"NXcxi_ptycho"
        assert {f[p].attrs["units"] for p in ("entry_1/instrument_1/source_1/energy",
                                               "entry_1/instrument_1/detector_1/distance",
                                               "entry_1/sample_1/geometry_1/translation")} == {"J", "m"}
        # Where CXI readers look for the initial guesses: illumination -> image_1, the object in image_2.
        np.testing.assert_array_equal(f["entry_1/instrument_1/source_1/illumination"][()], source.initial_probe())
        assert f["entry_1/image_1/data_type"][()] == b"probe" and f["entry_1/image_2/data_type"][()] == b"object"
        np.testing.assert_array_equal(f["entry_1/image_2/data"][()], source.initial_object())
        assert f["entry_1/image_1/process_1/program"][()] == b"ptybench"


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
    with pytest.raises(ValueError, match="lacks the required CXI field /entry_1/instrument_1/detector_1/data"):
        load(other)


FARFIELD_SPEC = SPEC.with_changes(kind="farfield", probe_modes=1)


def standard_only(tmp_path, name="standard.cxi", drop=()):
    """A file with only the standard CXI fields a beamline writes (no ptybench group, no mask)."""
    path = write_cxi(tmp_path / name, load(FARFIELD_SPEC))
    with h5py.File(path, "a") as f:
        for field in ("entry_1/ptybench", "entry_1/instrument_1/detector_1/mask", "entry_1/data_1",
                      "entry_1/image_1", "entry_1/image_2", "entry_1/instrument_1/source_1/illumination", *drop):
            del f[field]
    return path


def test_a_file_with_only_standard_fields_is_a_dataset(tmp_path):
    with load(standard_only(tmp_path), propagation="farfield") as data:
        arrays = data.arrays()
        assert arrays["diffraction_data"].shape == (12, 32, 32)
        # no mask in the file: the beam stop's pixels (dark in every frame, lit around) are found as dead
        dark = ~np.any(arrays["diffraction_data"] > 0, axis=0)
        assert 0 < (~arrays["mask"]).sum() and not np.any(~arrays["mask"] & ~dark)
        assert data.describe("x")["mask"].startswith("estimated from the data")
        assert arrays["initial_probe"].shape == (1, 32, 32) and arrays["initial_object"].shape[0] == 1
        assert data.ground_truth() is None and data.geometry().n_frames == 12
        info = data.describe("standard.cxi")
        assert info["initial_probe"] == "estimated from the mean diffraction pattern" and info["kind"] == "file"


@pytest.mark.parametrize("field", CXIDataset.REQUIRED)
def test_a_missing_required_field_is_named(tmp_path, field):
    path = standard_only(tmp_path, drop=() if field.endswith("/data") else (field,))
    if field.endswith("/data"):
        with h5py.File(path, "a") as f:
            del f[field]
    with pytest.raises(ValueError, match=f"lacks the required CXI field /{field}"):
        load(path)


def test_a_probe_and_object_in_the_standard_places_are_used(tmp_path):
    source = load(SPEC.with_changes(kind="farfield", probe_modes=1))
    path = standard_only(tmp_path)
    with h5py.File(path, "a") as f:
        f["entry_1/instrument_1/source_1/illumination"] = source.ground_truth_probe()[0]
        f["entry_1/image_1/data"] = source.initial_object()[0]
        f["entry_1/image_1/data_type"] = "object"
    with load(f"{path}?propagation=farfield") as data:
        np.testing.assert_array_equal(data.initial_probe()[0], source.ground_truth_probe()[0])
        assert data.initial_object().shape == source.initial_object().shape
        assert data.describe("x")["initial_probe"] == "file"


def test_split_files_complete_each_other(tmp_path):
    """Diffraction in one file, translations and probe in another, as some beamlines write them."""
    full = standard_only(tmp_path, name="full.cxi")
    data_only = standard_only(tmp_path, name="frames.cxi", drop=("entry_1/sample_1",))
    with h5py.File(full, "r") as f, h5py.File(tmp_path / "positions.h5", "w") as g:
        g["entry_1/sample_1/geometry_1/translation"] = f["entry_1/sample_1/geometry_1/translation"][()]
    with pytest.raises(ValueError, match="lacks the required CXI field /entry_1/sample_1"):
        load(data_only)
    with load(f"{data_only},{tmp_path / 'positions.h5'}", propagation="farfield") as combined, \
            load(full, propagation="farfield") as whole:
        np.testing.assert_array_equal(combined.positions, whole.positions)
        assert combined.describe("x")["files"] == [str(data_only), str(tmp_path / "positions.h5")]


def test_unreadable_files_are_one_line_errors(tmp_path):
    flat = standard_only(tmp_path, name="flat.cxi")
    with h5py.File(flat, "a") as f:
        frames = f["entry_1/instrument_1/detector_1/data"][()]
        del f["entry_1/instrument_1/detector_1/data"]
        f["entry_1/instrument_1/detector_1/data"] = frames[0]
    with pytest.raises(ValueError, match=r"is 2-D .* expected \(N, Y, X\) frames"):
        load(flat)
    truncated = tmp_path / "truncated.cxi"
    truncated.write_bytes(standard_only(tmp_path, name="t.cxi").read_bytes()[:3000])
    with pytest.raises(ValueError, match="not a readable HDF5/CXI file"):
        load(truncated)


def test_geometry_of_a_file_without_a_probe_reads_no_frames(tmp_path, monkeypatch):
    """Sizes come from the file's shapes; estimating a probe (which reads frames) waits for arrays()."""
    with load(standard_only(tmp_path), propagation="farfield") as data:
        monkeypatch.setattr(type(data), "frames", lambda *args, **kwargs: pytest.fail("frames were read"))
        geometry = data.geometry()
    assert (geometry.n_frames, geometry.probe_modes, geometry.object_modes) == (12, 1, 1)


def test_translations_far_beyond_any_object_are_named_not_turned_into_infinite_positions(tmp_path):
    """Found by the property test: a 1e-30 m pixel and a 1e30 m translation made positions of 1e60 pixels,
    infinite in float32, and the run would have gone on with them."""
    path = write_cxi(tmp_path / "d.cxi", load(SPEC))
    with h5py.File(path, "a") as f:
        del f["entry_1/ptybench"]  # the standard fields only: positions come from the translations
        del f["entry_1/instrument_1/detector_1/x_pixel_size"]
        f["entry_1/instrument_1/detector_1/x_pixel_size"] = 1e-30
        f["entry_1/sample_1/geometry_1/translation"][0, 0] = 1e30
    with load(path, propagation="nearfield", beam="parallel") as data, \
            pytest.raises(ValueError, match=r"translation in .* spans .* object pixels"):
        data.positions  # noqa: B018
