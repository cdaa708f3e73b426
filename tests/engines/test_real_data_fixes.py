"""What real scans need of every engine: errors of the returned model, orthogonal probe modes started from one
probe, saturated pixels masked with memory that does not grow with the largest count."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from ptybench.engines import ENGINE_NAMES, Reconstruction
from ptybench.engines.backends.numpy_backend import NumpyBackend
from ptybench.engines.modes import expand_modes, orthogonalising_matrix
from ptybench.engines.photons import noise_floor_sum, poisson_noise_floor
from ptybench.engines.propagation import make_propagator
from ptybench.engines.validation import frame_corners


def independent_errors(arrays, obj, probe, parameters):
    """err_fmag and R-factor of (obj, probe) through the forward model, written here from the definitions."""
    propagator = make_propagator(NumpyBackend(), parameters.get("propagation", "farfield"),
                                 arrays["mask"].shape, parameters.get("fresnel_number"))
    corners = frame_corners(arrays["scan_positions"])
    height, width = arrays["mask"].shape
    mask = arrays["mask"]
    squared = absolute = amplitude_sum = 0.0
    for frame, (row, col) in enumerate(corners):
        view = obj[:, row:row + height, col:col + width]
        waves = (probe[:, None] * view[None])[None].astype(np.complex64)
        detector = propagator.to_detector(propagator.forward(waves.copy(), overwrite=True))
        model = np.sqrt(np.sum(np.abs(detector[0]) ** 2, axis=(0, 1)))
        measured = np.sqrt(arrays["diffraction_data"][frame].astype(np.float64))
        difference = (model - measured)[mask]
        squared += np.sum(difference**2)
        absolute += np.sum(np.abs(difference))
        amplitude_sum += np.sum(measured[mask])
    return squared / (len(corners) * mask.sum()), absolute / amplitude_sum


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_the_recorded_errors_are_those_of_the_returned_object_and_probe(tiny_arrays, engine):
    """DM's own error is that of the Fourier projection's input; the record must be that of what DM returns."""
    parameters = {"engine": engine, "iterations": 3, "probe_update_start": 0}
    result = Reconstruction(**tiny_arrays, parameters=parameters).run()
    err_fmag, r_factor = independent_errors(tiny_arrays, result.object, result.probe, parameters)
    assert result.final.r_factor == pytest.approx(r_factor, rel=2e-3)
    assert result.final.err_fmag == pytest.approx(err_fmag, rel=4e-3)


def test_a_model_from_elsewhere_is_scored_by_the_same_forward_model(tiny_arrays):
    """How a peer's object and probe are scored: passed in as the initial guesses, kept at their scale, no
    iteration run; the sums equal the definitions'."""
    result = Reconstruction(**tiny_arrays, parameters={"engine": "ePIE", "iterations": 2}).run()
    given = {**tiny_arrays, "initial_object": result.object, "initial_probe": result.probe}
    scorer = Reconstruction(**given, parameters={"engine": "ePIE", "iterations": 1, "probe_power": "given"})
    err_fmag, r_factor = scorer.model_quality()
    assert not scorer.history
    assert r_factor == pytest.approx(result.final.r_factor, rel=1e-4)
    assert (err_fmag, r_factor) == pytest.approx(independent_errors(tiny_arrays, result.object, result.probe, {}),
                                                 rel=4e-3)


def test_evaluate_every_skips_evaluations_but_never_the_last(tiny_arrays):
    result = Reconstruction(**tiny_arrays, parameters={"engine": "DM", "iterations": 5, "evaluate_every": 2}).run()
    assert [r.r_factor is not None for r in result.history] == [False, True, False, True, True]
    assert all(np.isfinite(r.engine_r_factor) for r in result.history)
    assert all(r.evaluation_seconds > 0 for r in result.history if r.r_factor is not None)


def test_extra_modes_start_orthogonal_and_weak_from_one_probe(tiny_arrays):
    probe = tiny_arrays["initial_probe"]
    modes = expand_modes(probe, 4)
    np.testing.assert_array_equal(modes[0], probe[0])
    gram = np.einsum("kyx,qyx->kq", np.conj(modes), modes)
    off = np.abs(gram - np.diag(np.diag(gram))).max()
    assert off < 1e-4 * np.abs(gram[0, 0])
    np.testing.assert_allclose(np.diag(gram).real[1:] / gram[0, 0].real, 0.05, rtol=1e-3)
    assert orthogonalising_matrix(modes, np, np.asarray) is None  # orthogonal and sorted: nothing to do


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_probe_modes_come_back_orthogonal_and_sorted(tiny_arrays, engine, backend):
    if backend == "torch":
        pytest.importorskip("torch")
    arrays = {**tiny_arrays, "initial_probe": expand_modes(tiny_arrays["initial_probe"], 3)}
    result = Reconstruction(**arrays, parameters={"engine": engine, "iterations": 3, "probe_update_start": 0,
                                                  "backend": backend}).run()
    flat = result.probe.reshape(3, -1).astype(np.complex128)
    gram = np.conj(flat) @ flat.T
    powers = np.diag(gram).real
    assert np.abs(gram - np.diag(powers)).max() < 1e-3 * powers[0]
    assert np.all(np.diff(powers) <= 1e-6 * powers[0])
    assert np.all(np.isfinite(result.object))


def test_orthogonalising_keeps_the_model_intensity(tiny_arrays):
    """A unitary mixing of the modes leaves Σ_k |D(P_k O)|² unchanged: the data fit is the same."""
    rng = np.random.default_rng(0)
    probe = (rng.standard_normal((3, 8, 8)) + 1j * rng.standard_normal((3, 8, 8))).astype(np.complex64)
    matrix = orthogonalising_matrix(probe, np, np.asarray)
    mixed = np.einsum("kq,qyx->kyx", matrix, probe)
    intensity = np.sum(np.abs(np.fft.fft2(probe)) ** 2, axis=0)
    np.testing.assert_allclose(np.sum(np.abs(np.fft.fft2(mixed)) ** 2, axis=0), intensity, rtol=1e-4)


def test_a_saturated_pixel_is_masked_with_a_warning_not_32_gib(tiny_arrays):
    data = tiny_arrays["diffraction_data"].copy()
    data[3, 5, 7] = np.iinfo(data.dtype).max
    arrays = {**tiny_arrays, "diffraction_data": data}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reconstruction = Reconstruction(**arrays, parameters={"engine": "ePIE", "iterations": 1})
    assert any("1 pixel(s) hold the integer type's largest value" in str(w.message) for w in caught)
    assert reconstruction.calibration()["saturated_pixels_masked"] == 1
    assert reconstruction.problem.valid_pixels == tiny_arrays["mask"].sum() - 1
    assert np.isfinite(reconstruction.run().final.r_factor)


def test_the_noise_floor_of_huge_counts_needs_no_huge_histogram():
    counts = np.array([0, 1, 5, 2**32 - 1], dtype=np.float64)
    assert noise_floor_sum(counts, quantised=True) == pytest.approx(float(np.sum(poisson_noise_floor(counts))))


@pytest.mark.parametrize("name", ["true_object", "true_probe"])
def test_ground_truth_with_nan_is_refused_by_name(tiny, tiny_arrays, name):
    truth = tiny.ground_truth()
    given = {"true_object": truth.object.copy(), "true_probe": truth.probe.copy()}
    given[name][0, 1, 2] = np.nan
    with pytest.raises(ValueError, match=rf"^{name}: expected finite values .* 1 NaN"):
        Reconstruction(**tiny_arrays, parameters={"engine": "DM", "iterations": 1}, **given)


def test_an_array_where_a_number_belongs_is_a_type_error_naming_the_key():
    from ptybench.engines import parse_parameters

    with pytest.raises(TypeError, match=r"parameters\['pbound'\]: expected .* got an array of shape \(2,\)"):
        parse_parameters({"engine": "DM", "pbound": np.array([1.0, 2.0])})
