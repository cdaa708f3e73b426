"""Sub-pixel placement (engines/subpixel.py): the shift against SciPy's Fourier shift, its adjoint, and engines
that fit a scan measured at fractional positions better with it than on whole pixels, on NumPy and on torch."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from ptybench.engines import Reconstruction
from ptybench.engines.backends.numpy_backend import NumpyBackend
from ptybench.engines.options import ParameterError
from ptybench.engines.subpixel import SubpixelShifts

FRACTIONS = np.array([[0.0, 0.0], [0.5, -0.25], [-0.4, 0.3]])


def _probe(rng, modes=2, shape=(16, 20)):
    return (rng.normal(size=(modes, *shape)) + 1j * rng.normal(size=(modes, *shape))).astype(np.complex64)


def test_the_shift_is_scipys_fourier_shift_and_zero_leaves_the_probe():
    probe = _probe(np.random.default_rng(1))
    shifted = SubpixelShifts(NumpyBackend(), probe.shape[-2:], FRACTIONS).shifted(probe, slice(None))
    for frame, fraction in enumerate(FRACTIONS):
        for mode in range(probe.shape[0]):
            expected = np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(probe[mode]), fraction))
            np.testing.assert_allclose(shifted[frame, mode], expected, atol=2e-5)
    np.testing.assert_allclose(shifted[0], probe, atol=2e-6)


def test_a_blob_moves_by_the_fraction_along_each_axis():
    rows, cols = np.mgrid[:32, :32]
    blob = np.exp(-((rows - 15.0) ** 2 + (cols - 16.0) ** 2) / 8.0).astype(np.complex64)[None]
    shifted = SubpixelShifts(NumpyBackend(), (32, 32), np.array([[0.5, -0.25]])).shifted(blob, slice(None))[0, 0]
    power = np.abs(shifted) ** 2
    centroid = (np.sum(power * rows) / np.sum(power), np.sum(power * cols) / np.sum(power))
    np.testing.assert_allclose(centroid, (15.5, 15.75), atol=1e-3)


def test_the_probe_update_applies_the_adjoint_of_the_shift():
    """⟨S_j P, T_j⟩ summed over frames equals ⟨P, Σ_j S_j† T_j⟩: the probe's update is the gradient of the model
    that shifted it."""
    rng = np.random.default_rng(2)
    probe, terms = _probe(rng), np.stack([_probe(rng) for _ in FRACTIONS])
    shifts = SubpixelShifts(NumpyBackend(), probe.shape[-2:], FRACTIONS)
    forward = np.vdot(shifts.shifted(probe, slice(None)), terms)
    adjoint = np.vdot(probe, shifts.adjoint_sum(terms, slice(None)))
    np.testing.assert_allclose(forward, adjoint, rtol=1e-5)


def test_a_near_field_hologram_is_moved_back_to_where_the_detector_saw_it(tiny_nearfield):
    """The exit wave with the probe moved by +f is the true one moved by +f across the window; propagated with
    the frame's detector move it gives the true one's hologram (the near-field propagator commutes with a move)."""
    from ptybench.engines.propagation import make_propagator

    backend, rng = NumpyBackend(), np.random.default_rng(4)
    shape = (32, 32)
    true_wave = (rng.normal(size=(1, 1, 1, *shape)) + 1j * rng.normal(size=(1, 1, 1, *shape))).astype(np.complex64)
    shifts = SubpixelShifts(backend, shape, np.array([[0.3, -0.45]]))
    moved_wave = np.fft.ifft2(np.fft.fft2(true_wave) * shifts.ramps(slice(None))[:, :, None]).astype(np.complex64)
    propagator = make_propagator(backend, "nearfield", shape, 0.02)
    np.testing.assert_allclose(propagator.forward(moved_wave, moved=shifts.detector_moves(slice(None))),
                               propagator.forward(true_wave), atol=2e-5)


def _measured_at_fractions(tiny, tiny_arrays, seed=3):
    """The tiny scan measured at its whole-pixel corners plus a fraction in [-0.45, 0.45] of a pixel per axis
    (frames from the true object and probe through the sub-pixel model, noise-free), and those positions."""
    corners = np.rint(tiny_arrays["scan_positions"].astype(np.float64))
    limits = np.array(tiny_arrays["initial_object"].shape[-2:]) - np.array(tiny_arrays["mask"].shape)
    fractions = np.random.default_rng(seed).uniform(-0.45, 0.45, corners.shape)
    positions = np.clip(corners + fractions, 0, limits).astype(np.float32)
    truth = Reconstruction(**{**tiny_arrays, "scan_positions": positions, "initial_object": tiny.ground_truth_object(),
                              "initial_probe": tiny.ground_truth_probe()},
                           parameters={"engine": "DM", "iterations": 0, "probe_power": "given",
                                       "photons_per_unit": 1.0, "positions": "subpixel"})
    problem = truth.problem
    detector = problem.propagator.forward(problem.waves_at(slice(None)))
    intensities = problem.propagator.to_detector(problem.backend.kernels.mode_intensity(detector))
    return {**tiny_arrays, "diffraction_data": intensities.astype(np.float32), "scan_positions": positions}


@pytest.fixture(scope="module")
def fractional_scan(tiny, tiny_arrays):
    return _measured_at_fractions(tiny, tiny_arrays)


def _r_factor(arrays, engine, positions, backend="numpy", iterations=30, **more):
    """The R-factor after ``iterations`` and the result; noise-free data: an exact Fourier projection."""
    stage = {"engine": engine, "iterations": iterations, **({} if engine == "ML" else {"pbound": None})}
    parameters = {"engine": [stage], "photons_per_unit": 1.0, "positions": positions, "backend": backend,
                  "threads": 1, **more}
    result = Reconstruction(**arrays, parameters=parameters).run()
    return result.history[-1].r_factor, result


@pytest.mark.parametrize("engine", ["DM", "RAAR", "ML", "ePIE", "rPIE", "ePIE-batched"])
def test_engines_fit_a_scan_measured_at_fractions_of_a_pixel_better_with_subpixel_placement(fractional_scan,
                                                                                          engine):
    whole, _ = _r_factor(fractional_scan, engine, "nearest")
    shifted, _ = _r_factor(fractional_scan, engine, "subpixel")
    assert shifted < 0.8 * whole, (engine, shifted, whole)


def test_the_truth_fits_its_own_fractional_data_only_with_subpixel_placement(tiny, fractional_scan):
    arrays = {**fractional_scan, "initial_object": tiny.ground_truth_object(),
              "initial_probe": tiny.ground_truth_probe()}
    qualities = {}
    for positions in ("nearest", "subpixel"):
        reconstruction = Reconstruction(**arrays, parameters={"engine": "DM", "iterations": 0, "probe_power": "given",
                                                              "photons_per_unit": 1.0, "positions": positions})
        qualities[positions] = reconstruction.model_quality()[1]
    assert qualities["subpixel"] < 1e-4 and qualities["nearest"] > 0.02, qualities


@pytest.mark.parametrize("engine", ["DM", "ML", "ePIE"])
def test_torch_agrees_with_numpy_with_subpixel_placement(fractional_scan, engine):
    pytest.importorskip("torch")
    numpy_r, numpy_result = _r_factor(fractional_scan, engine, "subpixel", iterations=8)
    torch_r, torch_result = _r_factor(fractional_scan, engine, "subpixel", backend="torch", iterations=8)
    assert torch_r == pytest.approx(numpy_r, rel=1e-3)
    scale = np.max(np.abs(numpy_result.object))
    assert np.max(np.abs(np.asarray(torch_result.object) - numpy_result.object)) < 1e-3 * scale


def test_subpixel_refinement_moves_frames_towards_their_fractional_truth(tiny, fractional_scan):
    """Positions off by 0.4 pixels rms: refined with sub-pixel placement, they come closer than whole pixels can."""
    truth = fractional_scan["scan_positions"].astype(np.float64)
    off = truth + np.random.default_rng(5).normal(0.0, 0.4, truth.shape)
    off -= off.mean(axis=0) - truth.mean(axis=0)
    limits = np.array(fractional_scan["initial_object"].shape[-2:]) - np.array(fractional_scan["mask"].shape)
    arrays = {**fractional_scan, "scan_positions": np.clip(off, 0, limits).astype(np.float32)}
    errors = {}
    for positions in ("nearest", "subpixel"):
        _, result = _r_factor(arrays, "DM", positions, iterations=40, position_refinement_start=10)
        difference = np.asarray(result.positions, dtype=np.float64) - truth
        difference -= difference.mean(axis=0)
        errors[positions] = float(np.sqrt(np.mean(np.sum(difference**2, axis=1))))
    before = off - truth
    before -= before.mean(axis=0)
    assert errors["subpixel"] < 0.5 * float(np.sqrt(np.mean(np.sum(before**2, axis=1)))), errors
    assert errors["subpixel"] < errors["nearest"], errors


def test_an_unknown_placement_is_refused_naming_the_key(tiny_arrays):
    with pytest.raises(ParameterError, match="positions"):
        Reconstruction(**tiny_arrays, parameters={"engine": "DM", "positions": "bilinear"})
