"""Synthetic datasets: seed dtypes, determinism, lazy blocks, photon budget, ground truth, mask."""

from __future__ import annotations

import numpy as np
import pytest

from ptybench.datasets import DatasetSpec, get_spec, load, names
from ptybench.datasets.catalogue import DETECTOR_LADDER, FRAME_LADDER, ladder

SMALL = DatasetSpec(kind="farfield", n_frames=40, frame_shape=(32, 32), photons=1e5, seed=3)


def test_arrays_have_the_seed_shapes_and_dtypes(farfield_arrays, farfield_small):
    a = farfield_arrays
    n, (y, x) = farfield_small.n_frames, farfield_small.frame_shape
    assert a["diffraction_data"].shape == (n, y, x) and a["diffraction_data"].dtype == np.uint32
    assert a["initial_object"].ndim == 3 and a["initial_object"].dtype == np.complex64
    assert a["initial_probe"].shape == (1, y, x) and a["initial_probe"].dtype == np.complex64
    assert a["scan_positions"].shape == (n, 2) and a["scan_positions"].dtype == np.float32
    assert a["mask"].shape == (y, x) and a["mask"].dtype == np.bool_
    truth = farfield_small.ground_truth_object()
    assert truth.shape == a["initial_object"].shape and truth.dtype == np.complex64


@pytest.mark.parametrize("kind", ["farfield", "nearfield"])
def test_same_seed_gives_identical_bytes_and_other_seed_differs(kind):
    spec = SMALL.with_changes(kind=kind)
    first, again = load(spec).frames(), load(spec).frames()
    other = load(spec.with_changes(seed=4)).frames()
    assert first.tobytes() == again.tobytes()
    assert not np.array_equal(first, other)


@pytest.mark.parametrize(("start", "stop"), [(0, 1), (5, 17), (39, 40), (0, 40)])
def test_any_block_equals_the_slice_of_the_full_dataset(start, stop):
    data = load(SMALL.with_changes(probe_modes=2))
    full = data.frames()
    np.testing.assert_array_equal(data.frames(start, stop), full[start:stop])


def test_total_counts_match_the_photon_budget_within_poisson_error():
    data = load(SMALL.with_changes(n_frames=64))
    counts = data.frames().astype(np.float64).sum(axis=(1, 2))
    # The probe carries `photons` and the object transmits |O|² ≤ 1: the expected counts per frame are
    # Σ|P·O_j|² (unitary propagator). Check that, and that the noise is Poisson sized.
    expected = data.expected_intensities().astype(np.float64).sum(axis=(1, 2))
    assert np.all(expected <= SMALL.photons * 1.0001)
    assert np.all(expected >= 0.2 * SMALL.photons)
    z = (counts - expected) / np.sqrt(expected)
    assert np.all(np.abs(z) < 6)
    assert abs(z.mean()) < 6 / np.sqrt(len(z))
    np.testing.assert_allclose(np.sum(np.abs(data.ground_truth_probe()) ** 2), SMALL.photons, rtol=1e-5)


def test_ground_truth_has_amplitude_and_phase_structure(farfield_small):
    truth = farfield_small.ground_truth_object()[0][farfield_small.illuminated_region]
    amplitude, phase = np.abs(truth), np.angle(truth)
    assert 0.3 < amplitude.min() < amplitude.max() <= 1.0 + 1e-6
    assert amplitude.std() > 0.05 and phase.std() > 0.2


def test_initial_guesses_are_plausible_but_not_the_ground_truth(farfield_small):
    probe0, truth = farfield_small.initial_probe(), farfield_small.ground_truth_probe()
    assert not np.allclose(probe0, truth)
    np.testing.assert_allclose(np.sum(np.abs(probe0) ** 2), np.sum(np.abs(truth) ** 2), rtol=1e-4)
    correlation = abs(np.vdot(probe0, truth)) / (np.linalg.norm(probe0) * np.linalg.norm(truth))
    assert 0.3 < correlation < 0.99
    obj = farfield_small.initial_object()
    np.testing.assert_allclose(np.mean(obj), 1, atol=1e-3)            # flat on average, no knowledge
    assert 0.005 < np.std(obj) < 0.02                                 # 1 % seeded noise (see docstring)
    np.testing.assert_array_equal(obj, farfield_small.initial_object())  # the same every time


def test_probe_modes_are_orthogonal_with_decreasing_power():
    probe = load(SMALL.with_changes(probe_modes=3)).ground_truth_probe().reshape(3, -1).astype(np.complex128)
    gram = probe.conj() @ probe.T
    off_diagonal = gram - np.diag(np.diag(gram))
    assert np.max(np.abs(off_diagonal)) < 1e-4 * np.max(np.abs(gram))
    powers = np.real(np.diag(gram))
    assert powers[0] > powers[1] > powers[2] > 0


def test_mask_beamstop_and_dead_pixels_read_zero():
    data = load(SMALL.with_changes(beamstop_radius=3.0, dead_pixel_fraction=0.05))
    mask = data.mask
    assert not mask[16, 16]                       # the beam stop covers the zero order
    assert 0.85 < mask.mean() < 0.99
    assert np.all(data.frames()[:, ~mask] == 0)


def test_background_raises_the_counts():
    plain = load(SMALL).expected_intensities(0, 4)
    lifted = load(SMALL.with_changes(background=2.0)).expected_intensities(0, 4)
    np.testing.assert_allclose(lifted - plain, 2.0, atol=1e-2)


def test_positions_keep_every_frame_inside_the_object_and_fermat_is_not_a_grid(farfield_small):
    positions, (a, b) = farfield_small.positions, farfield_small.object_shape
    y, x = farfield_small.frame_shape
    assert positions.min() >= 0
    assert positions[:, 0].max() + y <= a and positions[:, 1].max() + x <= b
    assert len(np.unique(positions[:, 0])) > 50     # no raster rows


def test_overlap_sets_the_scan_step():
    dense, sparse = SMALL.with_changes(overlap=0.8), SMALL.with_changes(overlap=0.5)
    assert dense.scan_step < sparse.scan_step
    assert load(dense).object_shape < load(sparse).object_shape


def test_raster_scan_with_jitter_is_seeded():
    spec = SMALL.with_changes(scan="raster", jitter=1.0)
    np.testing.assert_array_equal(load(spec).positions, load(spec).positions)
    assert not np.array_equal(load(spec).positions, load(spec.with_changes(jitter=0.0)).positions)


def test_catalogue_has_the_ladders_and_the_seed_workload():
    assert {"farfield-64-256", "nearfield-64-64", "seed-2552x768"} <= set(names())
    seed = get_spec("seed-2552x768")
    assert (seed.n_frames, seed.frame_shape) == (2552, (768, 768))
    assert [s.n_frames for _, s in ladder("farfield", detector=128)] == list(FRAME_LADDER)
    assert [s.frame_shape[0] for _, s in ladder("nearfield", n_frames=1024)] == list(DETECTOR_LADDER)
    with pytest.raises(ValueError, match="unknown name"):
        get_spec("farfield-63-256")


def test_lowcount_twins_have_a_fixed_flux_and_mostly_dark_far_field_pixels():
    twins = ladder("farfield", n_frames=1024, regime="lowcount")
    assert [s.frame_shape[0] for _, s in twins] == [d for d in DETECTOR_LADDER if d >= 128]
    assert {s.photons for _, s in twins} == {1e6}
    assert all(name.endswith("-lowcount") for name, _ in twins)
    assert {s.photons for _, s in ladder("nearfield", detector=64, regime="lowcount")} == {1e5}
    frames = load("farfield-128-1024-lowcount").frames(0, 1024)[::32]
    assert (frames == 0).mean() > 0.5
    bright = load("farfield-128-1024").frames(0, 1024)[::32]
    assert (bright == 0).mean() < (frames == 0).mean()
    with pytest.raises(ValueError, match="regime"):
        ladder("farfield", detector=128, regime="dim")


@pytest.mark.slow
def test_a_block_of_the_seed_workload_does_not_materialise_the_dataset():
    data = load("seed-2552x768")
    block = data.frames(1000, 1002)
    assert block.shape == (2, 768, 768) and block.dtype == np.uint32
    assert block.sum() > 0.5 * data.spec.photons
    assert data.object_shape[0] * data.object_shape[1] < 30e6   # object, not 6 GB of frames


def test_spec_round_trips_through_a_dict_and_rejects_unknown_keys():
    spec = SMALL.with_changes(probe_modes=2, fresnel_number=None)
    assert DatasetSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="unknown keys"):
        DatasetSpec.from_dict({**spec.to_dict(), "photon": 1})


@pytest.mark.parametrize(("change", "name"), [({"kind": "xray"}, "kind"), ({"n_frames": 0}, "n_frames"),
                                             ({"overlap": 1.0}, "overlap"), ({"probe_modes": 0}, "probe_modes")])
def test_bad_spec_values_name_the_field(change, name):
    with pytest.raises(ValueError, match=name):
        SMALL.with_changes(**change)


def test_a_lazy_frame_source_reconstructs_exactly_as_the_loaded_frames():
    """The engines read their input block by block, so frames read on slicing give the same run, bit for bit."""
    from ptybench.datasets.base import FrameSource
    from ptybench.engines import Reconstruction

    data = load(SMALL)
    lazy, loaded = data.arrays(lazy=True, start=4, stop=40), data.arrays(start=4, stop=40)
    assert isinstance(lazy["diffraction_data"], FrameSource) and lazy["diffraction_data"].shape == (36, 32, 32)
    np.testing.assert_array_equal(lazy["diffraction_data"][3:9], loaded["diffraction_data"][3:9])
    with pytest.raises(TypeError, match="contiguous slice"):
        lazy["diffraction_data"][::2]
    results = [Reconstruction(**arrays, parameters={"engine": "DM", "iterations": 3}).run()
               for arrays in (lazy, loaded)]
    np.testing.assert_array_equal(results[0].object, results[1].object)
