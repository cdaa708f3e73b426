"""Reconstruction of known ground truth, bright and photon-starved; scale invariance; ML gradient, DM fixed
point, probe modes. The bars are object errors (docs/algorithms.md, "Error metrics")."""

from __future__ import annotations

import numpy as np
import pytest

from ptybench.datasets import load
from ptybench.engines import Reconstruction, parse_parameters
from ptybench.engines.backends import backend_status
from ptybench.engines.ml import MaximumLikelihoodEngine

#: Bright far field (farfield-64-256), flat start, 100 iterations.
FARFIELD_BARS = {"DM": 0.035, "RAAR": 0.045, "ePIE": 0.035, "rPIE": 0.025, "ML": 0.022, "DM>ML": 0.03,
                 # batches of 64 (4 updates per iteration here): measured 0.019 and 0.038
                 "ePIE-batched": 0.025, "rPIE-batched": 0.045}
NEARFIELD_BARS = {"DM": 0.10, "ePIE": 0.10}
#: Low count (farfield-128-1024-lowcount: 1e6 photons/frame, ~63 % of pixels zero), flat start,
#: 30 iterations. Measured 0.051 / 0.063 / 0.043 / 0.039 / 0.047 (README, "Engines").
LOWCOUNT_FARFIELD_BARS = {"DM": 0.06, "RAAR": 0.075, "ePIE": 0.08, "rPIE": 0.05, "ML": 0.06,
                          "ePIE-batched": 0.045, "rPIE-batched": 0.055}  # measured 0.035, 0.044
LOWCOUNT_ITERATIONS = 30
#: The PIE family meets the same bars in fewer iterations (measured 2026-12-07: ePIE 0.045 and ePIE-batched
#: 0.038 at 15, rPIE 0.043 and rPIE-batched 0.050 at 20), so the suite stops them there: a stricter test, and
#: the slowest engines per iteration on this set cost half the time.
LOWCOUNT_ITERATIONS_OF = {"ePIE": 15, "ePIE-batched": 15, "rPIE": 20, "rPIE-batched": 20}
#: Low-count near field (nearfield-64-64-lowcount: 1e5 photons/frame), 100 iterations.
LOWCOUNT_NEARFIELD_BARS = {"DM": 0.14, "RAAR": 0.15, "ePIE": 0.09, "rPIE": 0.12, "ML": 0.10}
#: Data scaled by these factors (probe by the square root) must reconstruct as well as the counts.
SCALES = (1e-6, 1e-3, 1e3)


def engine_parameters(name: str) -> dict:
    if name == "DM>ML":
        return {"engine": [{"engine": "DM", "iterations": 50}, {"engine": "ML", "iterations": 50}]}
    return {"engine": name, "iterations": 100}


def reconstruct(data, arrays, parameters):
    """The bars are object errors: the returned model's R-factor is evaluated after the last iteration only."""
    return Reconstruction(**arrays, parameters={"evaluate_every": 0, **parameters, **data.engine_parameters()},
                          true_object=data.ground_truth_object(), true_probe=data.ground_truth_probe()).run()


@pytest.fixture(scope="module")
def nearfield_small():
    data = load("nearfield-64-64")
    return data, data.arrays()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("engine", list(FARFIELD_BARS))
def test_farfield_engines_reach_their_object_error_bar(farfield_small, farfield_arrays, engine, backend):
    """Every backend meets the same bar (torch skips, with the reason, where it is not installed)."""
    status = backend_status(((backend, "cpu"),))[0]
    if not status.available:
        pytest.skip(status.reason)
    result = reconstruct(farfield_small, farfield_arrays, {**engine_parameters(engine), "backend": backend})
    error = result.final.object_error
    assert error <= FARFIELD_BARS[engine], f"{engine} on {backend}: object error {error:.4f} > {FARFIELD_BARS[engine]}"


@pytest.mark.slow
@pytest.mark.parametrize("engine", list(NEARFIELD_BARS))
def test_nearfield_engines_reach_their_object_error_bar(nearfield_small, engine):
    data, arrays = nearfield_small
    error = reconstruct(data, arrays, engine_parameters(engine)).final.object_error
    assert error <= NEARFIELD_BARS[engine], f"{engine}: object error {error:.4f} > {NEARFIELD_BARS[engine]}"


@pytest.fixture(scope="module")
def lowcount_farfield():
    data = load("farfield-128-1024-lowcount")
    return data, data.arrays()


@pytest.fixture(scope="module")
def lowcount_nearfield():
    data = load("nearfield-64-64-lowcount")
    return data, data.arrays()


@pytest.mark.slow
@pytest.mark.parametrize("engine", list(LOWCOUNT_FARFIELD_BARS))
def test_photon_starved_farfield_engines_reach_their_bar(lowcount_farfield, engine):
    data, arrays = lowcount_farfield
    assert (arrays["diffraction_data"] == 0).mean() > 0.5          # the regime: most pixels see no photon
    iterations = LOWCOUNT_ITERATIONS_OF.get(engine, LOWCOUNT_ITERATIONS)
    error = reconstruct(data, arrays, {"engine": engine, "iterations": iterations}).final.object_error
    assert error <= LOWCOUNT_FARFIELD_BARS[engine], f"{engine}: object error {error:.4f}"


@pytest.mark.slow
def test_data_derived_bound_beats_the_bright_data_constant_when_photon_starved(lowcount_farfield):
    """The finding behind the default: a bound of 1/4 stalls DM (0.125 after 10 iterations, 0.118 after
    30; the data's floor, 0.119, gives 0.086 and 0.051)."""
    data, arrays = lowcount_farfield
    constant = reconstruct(data, arrays, {"engine": "DM", "iterations": 10, "pbound": 0.25}).column("object_error")
    assert constant[-1] > 1.5 * LOWCOUNT_FARFIELD_BARS["DM"]


@pytest.mark.slow
@pytest.mark.parametrize("engine", list(LOWCOUNT_NEARFIELD_BARS))
def test_photon_starved_nearfield_engines_reach_their_bar(lowcount_nearfield, engine):
    data, arrays = lowcount_nearfield
    error = reconstruct(data, arrays, {"engine": engine, "iterations": 100}).final.object_error
    assert error <= LOWCOUNT_NEARFIELD_BARS[engine], f"{engine}: object error {error:.4f}"


@pytest.mark.parametrize("engine", ["DM", "RAAR", "ePIE", "rPIE", "ePIE-batched", "rPIE-batched", "ML"])
def test_every_engine_is_invariant_to_the_scale_of_the_data(tiny, tiny_arrays, engine):
    """Processed data (scaled, float) reconstruct like the counts: within 10 % over nine decades."""
    parameters = {"engine": engine, "iterations": 15}
    reference = reconstruct(tiny, tiny_arrays, parameters).final.object_error
    for scale in SCALES:
        arrays = dict(tiny_arrays,
                      diffraction_data=(tiny_arrays["diffraction_data"] * scale).astype(np.float32),
                      initial_probe=(tiny_arrays["initial_probe"] * np.sqrt(scale)).astype(np.complex64))
        result = reconstruct(tiny, arrays, parameters)
        assert result.final.object_error == pytest.approx(reference, rel=0.10), (engine, scale)
        assert np.all(np.isfinite(result.probe))


def test_returned_probe_is_in_the_units_of_the_data(tiny, tiny_arrays):
    scale = 1e-3
    arrays = dict(tiny_arrays, diffraction_data=(tiny_arrays["diffraction_data"] * scale).astype(np.float32),
                  initial_probe=(tiny_arrays["initial_probe"] * np.sqrt(scale)).astype(np.complex64))
    raw = reconstruct(tiny, tiny_arrays, {"engine": "DM", "iterations": 5}).probe
    scaled = reconstruct(tiny, arrays, {"engine": "DM", "iterations": 5}).probe
    np.testing.assert_allclose(scaled, raw * np.sqrt(scale), rtol=1e-3, atol=1e-3 * np.abs(raw).max() * np.sqrt(scale))


@pytest.mark.slow
def test_two_probe_modes_beat_one_on_partially_coherent_data():
    """The object, not the R-factor: with the noise-floor bound both fit the data to the noise
    (R-factor 0.125 either way), but one mode puts the incoherent part into the object."""
    data = load("farfield-64-256-2modes")
    errors = {}
    for modes in (1, 2):
        arrays = data.arrays(probe_modes=modes)
        errors[modes] = reconstruct(data, arrays, {"engine": "DM", "iterations": 60}).final.object_error
    assert errors[2] < 0.85 * errors[1], errors


@pytest.mark.slow
def test_masked_dataset_still_reconstructs():
    data = load("farfield-64-256-masked")
    error = reconstruct(data, data.arrays(), {"engine": "DM", "iterations": 100}).final.object_error
    assert error <= 0.10


def test_noise_free_data_at_the_solution_is_a_fixed_point_of_dm(tiny):
    arrays = tiny.arrays()
    arrays["diffraction_data"] = tiny.expected_intensities()            # float32, no noise
    arrays["initial_object"] = tiny.ground_truth_object()
    arrays["initial_probe"] = tiny.ground_truth_probe()
    for engine in ("DM", "RAAR"):
        result = reconstruct(tiny, arrays, {"engine": engine, "iterations": 10, "probe_update_start": 0,
                                            "photons_per_unit": 1.0, "evaluate_every": 1})
        assert result.column("object_error").max() < 2e-3, engine
        assert result.column("err_fmag").max() < 1e-6 * arrays["diffraction_data"].mean(), engine


@pytest.mark.parametrize("noise", ["gaussian", "poisson"])
@pytest.mark.parametrize("target", ["object", "probe"])
def test_ml_gradient_equals_a_finite_difference_gradient(tiny, noise, target):
    arrays = tiny.arrays()
    # A point away from the solution, so the gradient is large compared to float32 rounding.
    rng = np.random.default_rng(1)
    arrays["initial_object"] = (tiny.ground_truth_object() * np.exp(0.3j * rng.standard_normal(
        tiny.object_shape))).astype(np.complex64)
    parameters = {"engine": "ML", "noise": noise}
    reconstruction = Reconstruction(**arrays, parameters=parameters)
    problem = reconstruction.problem
    engine = MaximumLikelihoodEngine(problem, parse_parameters(parameters).stages[0].options)
    gradient_object, gradient_probe, _ = engine.gradients()
    base = problem.object.copy() if target == "object" else problem.probe.copy()
    gradient = gradient_object if target == "object" else gradient_probe
    direction = (rng.standard_normal(base.shape) + 1j * rng.standard_normal(base.shape)).astype(np.complex64)
    direction *= np.float32(np.linalg.norm(base) / np.linalg.norm(direction))

    def loss_at(t: float) -> float:
        value = (base + np.float32(t) * direction).astype(np.complex64)
        if target == "object":
            problem.object = value
        else:
            problem.probe = value
        return engine.gradients()[2]

    step = 1e-3
    finite_difference = (loss_at(step) - loss_at(-step)) / (2 * step)
    # dL = Re⟨g, dO⟩ with g = Σ P* D⁻¹[2 (∂L/∂Î) D ψ] (docs/algorithms.md).
    analytic = float(np.sum(np.real(np.conj(gradient) * direction), dtype=np.float64))
    assert finite_difference == pytest.approx(analytic, rel=2e-2)


#: ML in mini-batches of 32 frames (blocks of 16, so 8 batches per pass) on farfield-64-256, flat start:
#: measured 0.049 after 10 passes (full gradient 0.091) and 0.024 after 100 (full gradient 0.019: the
#: per-batch steps keep some of each batch's noise, so they lead early and the full gradient late).
MINIBATCH = {"engine": "ML", "batch_frames": 32, "frames_per_block": 16}


def test_ml_mini_batches_lead_the_full_gradient_early(farfield_small, farfield_arrays):
    full = reconstruct(farfield_small, farfield_arrays, {"engine": "ML", "iterations": 10}).final.object_error
    batched = reconstruct(farfield_small, farfield_arrays, {**MINIBATCH, "iterations": 10}).final.object_error
    assert batched <= 0.06 and batched < 0.7 * full, (batched, full)


@pytest.mark.slow
def test_ml_mini_batches_reach_their_bar(farfield_small, farfield_arrays):
    error = reconstruct(farfield_small, farfield_arrays, {**MINIBATCH, "iterations": 100}).final.object_error
    assert error <= 0.03, error


def test_ml_batches_cover_every_frame_once_per_pass_and_span_the_scan(tiny, tiny_arrays):
    reconstruction = Reconstruction(**tiny_arrays, parameters={"engine": "ML", "iterations": 1, "batch_frames": 8,
                                                               "frames_per_block": 4})
    reconstruction.step()
    engine, n = reconstruction._engine, reconstruction.problem.n_frames
    batches = engine.batches()
    assert len(batches) == round(n / 8)
    frames = sorted(f for batch in batches for start, stop in batch for f in range(start, stop))
    assert frames == list(range(n))
    assert all(batch[-1][1] - batch[0][0] > n // 2 for batch in batches)  # every batch reaches across the scan
    full = Reconstruction(**tiny_arrays, parameters={"engine": "ML", "iterations": 1})
    full.step()
    assert full._engine.batches() == [None]


def test_ml_batches_stay_as_small_as_asked_whatever_the_block(tiny, tiny_arrays):
    """A block larger than a batch is cut into pieces, so the batches are as many as batch_frames asks (they
    were capped at the number of blocks); an automatic block is no larger than a batch."""
    asked = Reconstruction(**tiny_arrays, parameters={"engine": "ML", "iterations": 1, "batch_frames": 3,
                                                      "frames_per_block": 24})
    asked.step()
    n = asked.problem.n_frames
    batches = asked._engine.batches()
    assert len(batches) == round(n / 3)
    frames = sorted(f for batch in batches for start, stop in batch for f in range(start, stop))
    assert frames == list(range(n))
    assert max(sum(stop - start for start, stop in batch) for batch in batches) <= 4
    automatic = Reconstruction(**tiny_arrays, parameters={"engine": "ML", "iterations": 1, "batch_frames": 5})
    assert automatic.problem.frames_per_block == 5


def test_ml_batches_cut_from_one_block_compute_what_the_same_batches_as_blocks_do(tiny_arrays):
    """Pieces of one whole-scan block are the same batches as blocks of that size, so the result is the same (the
    whole-scan block's kept D(P·O) is the full gradient's, never a piece's; the regulariser's share is one batch's,
    not the pieces' count over the blocks')."""
    n = tiny_arrays["diffraction_data"].shape[0]
    assert n == 48  # batches of 10: 5 batches of 6 pieces of 8 frames, so some batches take two pieces
    base = {"engine": "ML", "iterations": 3, "batch_frames": 10, "regularizer": 0.1}  # its share is per batch
    cut, whole = (Reconstruction(**tiny_arrays, parameters={**base, "frames_per_block": block}) for block in (48, 8))
    cut.step()
    whole.step()
    assert cut._engine.batches() == whole._engine.batches()
    assert max(len(batch) for batch in cut._engine.batches()) == 2
    cut.run()
    whole.run()
    np.testing.assert_allclose(cut.object, whole.object, rtol=1e-4, atol=1e-5)


def test_ml_batches_larger_than_the_scan_are_the_full_gradient(tiny_arrays):
    """batch_frames beyond N asks for one batch: the full-gradient CG, with the block as the data allow."""
    huge = Reconstruction(**tiny_arrays, parameters={"engine": "ML", "iterations": 1, "batch_frames": 10**9})
    huge.step()
    assert huge._engine.batches() == [None]
    assert huge.problem.frames_per_block == tiny_arrays["diffraction_data"].shape[0]
    assert np.all(np.isfinite(huge.object))


def test_ml_makes_no_more_batches_than_the_largest_rank_has_frames(tiny_arrays, monkeypatch):
    """A batch empty on every rank would divide by a zero illumination: with 8 ranks of 6 frames, batches of one
    frame are 6, not 48, and the rank with the most frames has a piece in every one (automatic blocks stay whole)."""
    reconstruction = Reconstruction(**tiny_arrays, parameters={"engine": "ML", "iterations": 1, "batch_frames": 1})
    reconstruction.step()
    engine = reconstruction._engine
    monkeypatch.setattr(reconstruction.problem.comm, "size", 8)
    batches = engine.batches()
    assert len(batches) == 6 and all(batch for batch in batches)
    whole = Reconstruction(**tiny_arrays, parameters={"engine": "ML", "iterations": 1, "batch_frames": 10})
    whole.step()
    assert whole._engine.batches() == [[block] for block in whole.problem.blocks()]


@pytest.mark.slow
def test_ml_mini_batches_then_full_gradients_meet_the_ml_bar(farfield_small, farfield_arrays):
    """The plan the README suggests: 20 passes in mini-batches, 80 in full gradients (measured 0.016)."""
    parameters = {"frames_per_block": 16, "engine": [{"engine": "ML", "batch_frames": 32, "iterations": 20},
                                                     {"engine": "ML", "iterations": 80}]}
    error = reconstruct(farfield_small, farfield_arrays, parameters).final.object_error
    assert error <= FARFIELD_BARS["ML"], error
