"""Scan geometry from a file: far field, near field with a parallel or a cone beam, and clear errors where the
file does not say (never a silent far-field guess)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from ptybench.datasets import DatasetSpec, GeometryError, load, write_cxi
from ptybench.datasets.cxi import JOULES_PER_KEV
from ptybench.datasets.geometry import nearfield_geometry, split_options
from ptybench.datasets.spec import HC_KEV_M
from ptybench.engines.validation import frame_corners

FARFIELD = DatasetSpec(kind="farfield", n_frames=12, frame_shape=(32, 32), photons=1e5, seed=5)
DETECTOR = "entry_1/instrument_1/detector_1"


def foreign(tmp_path, name="foreign.cxi", spec=FARFIELD):
    """A file as another code writes it: standard fields only, nothing that states the regime."""
    path = write_cxi(tmp_path / name, load(spec))
    with h5py.File(path, "a") as f:
        for field in ("entry_1/ptybench", "entry_1/image_1", "entry_1/image_2",
                      "entry_1/instrument_1/source_1/illumination"):
            del f[field]
    return path


def test_a_file_that_does_not_state_its_regime_is_an_error_saying_what_to_pass(tmp_path):
    path = foreign(tmp_path)
    with pytest.raises(GeometryError, match=r"does not say whether it is far- or near-field.*\?propagation=farfield"):
        load(path)
    with load(f"{path}?propagation=farfield") as data:
        assert data.scan_geometry.propagation == "farfield" and data.scan_geometry.source == "given"
        assert data.engine_parameters() == {"propagation": "farfield"}


def test_near_field_needs_the_beam(tmp_path):
    path = foreign(tmp_path)
    with pytest.raises(GeometryError, match=r"^beam: near-field data .* beam=parallel .* focus_to_sample_m"):
        load(path, propagation="nearfield")


def test_parallel_beam_object_pixel_is_the_detector_pixel(tmp_path):
    path = foreign(tmp_path)
    with load(f"{path}?propagation=nearfield&beam=parallel") as data:
        geometry = data.scan_geometry
        assert geometry.object_pixel_m == pytest.approx(data.detector_pixel_m)
        wavelength = HC_KEV_M / data.energy_kev
        assert geometry.fresnel_number == pytest.approx(data.detector_pixel_m**2 / (wavelength * data.distance_m))
        assert data.engine_parameters() == {"propagation": "nearfield", "fresnel_number": geometry.fresnel_number}


def test_cone_beam_fresnel_scaling():
    # M = (z1 + z2)/z1; pixel Δ/M; distance z2/M; F = Δ²/(M λ z2)
    geometry = nearfield_geometry(1e-10, 1.0, 50e-6, 0.01, "given")
    assert geometry.magnification == pytest.approx(101.0)
    assert geometry.object_pixel_m == pytest.approx(50e-6 / 101)
    assert geometry.effective_distance_m == pytest.approx(1.0 / 101)
    assert geometry.fresnel_number == pytest.approx((50e-6) ** 2 / (101 * 1e-10 * 1.0))


def test_the_p25_scan_has_its_cone_beam_geometry():
    """The shipped P25 scan: 1.12 m, 55 µm, 3.65 mm behind the focus; the scan spans about 113 x 107 pixels."""
    with load("p25-nearfield") as data:
        geometry = data.scan_geometry
        assert (geometry.propagation, geometry.beam) == ("nearfield", "cone")
        assert geometry.magnification == pytest.approx((3.65e-3 + 1.12) / 3.65e-3, rel=1e-6)
        extent = data.positions.max(axis=0) - data.positions.min(axis=0)
        np.testing.assert_allclose(extent, [107, 113], rtol=0.02)
        assert data.describe("p25-nearfield")["geometry"]["fresnel_number"] == pytest.approx(0.0896, rel=0.01)


def test_unknown_or_contradicting_regimes_are_errors(tmp_path):
    path = write_cxi(tmp_path / "mine.cxi", load(FARFIELD))
    with h5py.File(path, "a") as f:
        f["entry_1/ptybench"].attrs["propagation"] = "sideways"
    with pytest.raises(GeometryError, match=r"propagation: .* says 'sideways'; expected one of"):
        load(path)
    path = write_cxi(tmp_path / "far.cxi", load(FARFIELD))
    with pytest.raises(GeometryError, match=r"'nearfield' given, but .* says 'farfield'"):
        load(path, propagation="nearfield", beam="parallel")
    with pytest.raises(GeometryError, match=r"unknown .*'focus'"):
        load(path, focus=1.0)
    with pytest.raises(GeometryError, match="synthetic dataset"):
        load("farfield-64-256?propagation=farfield")


@pytest.mark.parametrize(("field", "value", "message"), [
    (f"{DETECTOR}/distance", 0.0, "distance: expected a positive length"),
    (f"{DETECTOR}/x_pixel_size", float("nan"), "x_pixel_size: expected a positive length"),
    ("entry_1/instrument_1/source_1/energy", -8 * JOULES_PER_KEV, "energy: expected a positive"),
])
def test_impossible_metadata_is_named(tmp_path, field, value, message):
    path = foreign(tmp_path)
    with h5py.File(path, "a") as f:
        del f[field]
        f[field] = value
    with pytest.raises(ValueError, match=message):
        load(path, propagation="farfield")


def test_nan_translations_are_named(tmp_path):
    path = foreign(tmp_path)
    with h5py.File(path, "a") as f:
        f["entry_1/sample_1/geometry_1/translation"][3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN, infinite or non-numeric translations"):
        load(path, propagation="farfield")


def test_a_comma_in_a_file_name_is_part_of_the_name(tmp_path):
    path = foreign(tmp_path, name="scan,2024.cxi")
    with load(path, propagation="farfield") as data:
        assert data.n_frames == 12


def test_sub_pixel_positions_are_kept_and_rounded_to_the_nearest_pixel(tmp_path):
    path = foreign(tmp_path)
    with h5py.File(path, "a") as f:
        translation = f["entry_1/sample_1/geometry_1/translation"]
        translation[0, 0] += 0.3 * load(FARFIELD).object_pixel_m
    with load(path, propagation="farfield") as data:
        fractions = data.positions - np.round(data.positions)
        assert np.abs(fractions).max() > 0.2  # the fraction survives loading
    np.testing.assert_array_equal(frame_corners(np.array([[0.49, 0.51], [2.5, 3.2]], np.float32)), [[0, 1], [3, 3]])


def test_query_options_split_from_the_path():
    assert split_options("a.cxi?propagation=nearfield&focus_to_sample_m=0.1") == (
        "a.cxi", {"propagation": "nearfield", "focus_to_sample_m": "0.1"})
    with pytest.raises(GeometryError, match="key=value"):
        split_options("a.cxi?nearfield")


def test_a_file_without_a_mask_gets_its_dead_and_hot_pixels_found(tmp_path):
    path = foreign(tmp_path)
    with h5py.File(path, "a") as f:
        del f[f"{DETECTOR}/mask"]
        data = f[f"{DETECTOR}/data"]
        frames = data[()]
        frames[:, 20, 20] = 0            # dead: dark where its neighbours are lit
        frames[:, 25, 3] = 10**6         # hot: far above every neighbour
        data[...] = frames
    with load(path, propagation="farfield") as dataset:
        mask = dataset.mask
        assert not mask[20, 20] and not mask[25, 3]
        assert dataset.mask_source == "estimated from the data: 1 dead, 1 hot pixels masked"


def test_the_p25_masks_found_in_the_data_are_the_files_own():
    from ptybench.datasets.bad_pixels import find_bad_pixels

    with load("p25-nearfield") as data:
        found = find_bad_pixels(data.frames())
        np.testing.assert_array_equal(found.mask, data.mask)


@pytest.mark.parametrize(("change", "message"), [
    (lambda f: f.__setitem__("entry_1/sample_1/geometry_1/translation_short", 0), None),
    ("rows", r"translation in .* has shape \(11, 3\); expected \(12, 3\)"),
    ("no frames", "holds no frames"),
    ("spec", "spec attribute .* is not a JSON dataset spec"),
], ids=["baseline", "N-1 translations", "zero frames", "spec not JSON"])
def test_impossible_file_metadata_is_refused_when_opened(tmp_path, change, message):
    path = write_cxi(tmp_path / "d.cxi", load(FARFIELD))
    with h5py.File(path, "a") as f:
        if change == "rows":
            rows = f["entry_1/sample_1/geometry_1/translation"][()]
            del f["entry_1/sample_1/geometry_1/translation"]
            f["entry_1/sample_1/geometry_1/translation"] = rows[:-1]
        elif change == "no frames":
            del f[f"{DETECTOR}/data"]
            f.create_dataset(f"{DETECTOR}/data", shape=(0, 32, 32), dtype=np.uint32)
        elif change == "spec":
            f["entry_1/ptybench"].attrs["spec"] = "{not json"
        else:
            change(f)
    if message is None:
        with load(path) as data:
            assert data.n_frames == 12
    else:
        with pytest.raises(ValueError, match=message):
            load(path)
