"""Position refinement (engines/positions.py): the shift estimate, the damped update, and runs that recover a
scan whose positions are off by pixels, on every engine and on the torch backend as on NumPy."""

from __future__ import annotations

import numpy as np
import pytest

from ptybench.engines import Reconstruction
from ptybench.engines.options import ParameterError
from ptybench.engines.positions import errors_at, frame_shifts, proposed_corners, refine


def perturbed(arrays, rms: float, seed: int = 1):
    """The arrays with positions off by a zero-mean error of ``rms`` pixels per axis (inside the object)."""
    truth = arrays["scan_positions"].astype(np.float64)
    error = np.random.default_rng(seed).normal(0.0, rms, truth.shape)
    error -= error.mean(axis=0)
    limits = np.array(arrays["initial_object"].shape[-2:]) - np.array(arrays["mask"].shape)
    return {**arrays, "scan_positions": np.clip(truth + error, 0, limits).astype(np.float32)}


def rms_error(positions, truth) -> float:
    """RMS distance after the mean offset is removed (a translation of the scan is not seen by the data)."""
    difference = np.asarray(positions, dtype=np.float64) - truth
    difference -= difference.mean(axis=0)
    return float(np.sqrt(np.mean(np.sum(difference**2, axis=1))))


def true_model_at(tiny, tiny_arrays, positions):
    """A reconstruction holding the true object and probe with frames at ``positions`` (no iteration run)."""
    arrays = {**tiny_arrays, "scan_positions": positions.astype(np.float32),
              "initial_object": tiny.ground_truth_object(), "initial_probe": tiny.ground_truth_probe()}
    return Reconstruction(**arrays, parameters={"engine": "DM", "iterations": 0, "probe_power": "given"})


def test_a_frame_placed_a_pixel_off_is_pointed_back_and_moved_there(tiny, tiny_arrays):
    """With the true object and probe, the one displaced frame's shift points where it was measured, its error
    there is lower, and one refinement moves it there and nothing else."""
    truth = np.rint(tiny_arrays["scan_positions"].astype(np.float64))
    moved = truth.copy()
    moved[5] += (1.0, -1.0)
    problem = true_model_at(tiny, tiny_arrays, moved).problem
    shifts, errors = frame_shifts(problem)
    assert shifts[5, 0] < -0.1 and shifts[5, 1] > 0.1
    np.testing.assert_array_equal(proposed_corners(problem.corners, shifts, problem.position_limits)[5], truth[5])
    assert errors_at(problem, truth[[5]].astype(np.int64), np.array([5]))[0] < errors[5]
    assert refine(problem) >= 1
    np.testing.assert_array_equal(problem.corners, truth)


def test_proposals_are_one_pixel_where_the_shift_is_clear_and_stay_inside_the_object():
    corners = np.array([[0, 5], [3, 3], [9, 9]])
    shifts = np.array([[-0.5, 0.05], [0.3, -2.0], [0.2, 0.2]])
    proposed = proposed_corners(corners, shifts, np.array([9, 9]))
    np.testing.assert_array_equal(proposed, [[0, 5], [4, 2], [9, 9]])


def test_refinement_never_raises_a_frames_error(tiny, tiny_arrays):
    """A move is kept only where the data say it fits better: at the truth, nothing moves."""
    truth = np.rint(tiny_arrays["scan_positions"].astype(np.float64))
    problem = true_model_at(tiny, tiny_arrays, truth).problem
    before = errors_at(problem, problem.corners, np.arange(problem.n_frames))
    refine(problem)
    after = errors_at(problem, problem.corners, np.arange(problem.n_frames))
    assert np.all(after <= before)


@pytest.mark.parametrize("engine", ["DM", "ePIE", "ML"])
def test_refinement_recovers_positions_off_by_pixels(farfield_small, farfield_arrays, engine):
    """farfield-64-256 with 1.5 px RMS position errors per axis: refinement from iteration 5 brings them under
    half a pixel and the object error below that of the same run on the given positions (measured at 40
    iterations: DM 0.174 → 0.043, ePIE 0.126 → 0.030, ML 0.124 → 0.040, 0.091 while ML restarted its conjugate
    gradients at every refinement; ML 0.030 at 60, was 0.049)."""
    arrays = perturbed(farfield_arrays, 1.5)
    truth = farfield_arrays["scan_positions"]
    errors = {}
    for start in (None, 5):
        result = Reconstruction(**arrays, parameters={"engine": engine, "iterations": 40,
                                                      "position_refinement_start": start},
                                true_object=farfield_small.ground_truth_object(),
                                true_probe=farfield_small.ground_truth_probe()).run()
        errors[start] = (result.final.object_error, rms_error(result.positions, truth))
    assert errors[None][1] == pytest.approx(rms_error(arrays["scan_positions"], truth))  # untouched when off
    assert errors[5][1] < 0.5 < errors[None][1]
    assert errors[5][0] < 0.8 * errors[None][0]


def test_ml_keeps_its_conjugate_direction_when_frames_move(tiny_arrays):
    """A refinement moves frames a little: ML drops only the D(P·O) it kept, not its direction (restarting made
    the full-gradient CG a steepest descent from the first refinement on; docs/algorithms.md, ML); the Poisson
    likelihood, whose line search is one Newton step, restarts."""
    reconstruction = Reconstruction(**perturbed(tiny_arrays, 1.0), parameters={"engine": "ML", "iterations": 3,
                                                                              "frames_per_block": 48})
    reconstruction.step()
    reconstruction.step()
    engine = reconstruction._engine
    direction = engine.direction
    assert direction is not None and engine._forward_waves is None  # dropped after every step
    engine._forward_waves = object()
    engine.frames_moved(np.arange(3))
    assert engine.direction is direction and engine._forward_waves is None
    poisson = Reconstruction(**perturbed(tiny_arrays, 1.0), parameters={"engine": "ML", "iterations": 3,
                                                                       "noise": "poisson"})
    poisson.step()
    poisson.step()
    assert poisson._engine.direction is not None
    poisson._engine.frames_moved(np.arange(3))  # one Newton step per line: a stale direction stalls it
    assert poisson._engine.direction is None


def test_torch_refines_as_numpy_does(tiny_arrays):
    pytest.importorskip("torch")
    arrays = perturbed(tiny_arrays, 1.0)
    parameters = {"engine": "DM", "iterations": 8, "position_refinement_start": 2}
    positions = {backend: Reconstruction(**arrays, parameters={**parameters, "backend": backend}).run().positions
                 for backend in ("numpy", "torch")}
    np.testing.assert_allclose(positions["torch"], positions["numpy"], atol=1e-3)


@pytest.mark.parametrize(("key", "value"), [("position_refinement_start", -1), ("position_refinement_every", 0),
                                            ("position_refinement_start", 1.5)])
def test_bad_refinement_options_name_the_key(tiny_arrays, key, value):
    with pytest.raises(ParameterError, match=key):
        Reconstruction(**tiny_arrays, parameters={"engine": "DM", key: value})
