"""The seed API and the object API: types, parameters, determinism, mask, inputs, blocks, divergence."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from ptybench.engines import (
    ENGINE_NAMES,
    ParameterError,
    Reconstruction,
    ReconstructionDiverged,
    parse_parameters,
    ptychography,
)

ITERATIONS = 4


def params(engine: str, **more):
    return {"engine": engine, "iterations": ITERATIONS, "probe_update_start": 1, **more}


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_returns_object_and_probe_with_the_input_shapes_and_dtypes(tiny_arrays, engine):
    obj, probe = ptychography(**tiny_arrays, parameters=params(engine))
    assert obj.shape == tiny_arrays["initial_object"].shape and obj.dtype == np.complex64
    assert probe.shape == tiny_arrays["initial_probe"].shape and probe.dtype == np.complex64
    assert np.all(np.isfinite(obj)) and np.all(np.isfinite(probe))
    assert not np.array_equal(obj, tiny_arrays["initial_object"])     # it did something


@pytest.mark.parametrize("engine", ["ePIE", "rPIE"])  # the engines with a random choice (frame order)
def test_the_seed_fixes_the_frame_order(tiny_arrays, engine):
    first = ptychography(**tiny_arrays, parameters=params(engine, seed=5))
    again = ptychography(**tiny_arrays, parameters=params(engine, seed=5))
    other = ptychography(**tiny_arrays, parameters=params(engine, seed=6))
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])


@pytest.mark.parametrize("engine", ["DM", "RAAR", "ML"])
def test_deterministic_engines_repeat_exactly(tiny_arrays, engine):
    """No hidden state between runs (plans, caches, thread scheduling of reductions)."""
    first = ptychography(**tiny_arrays, parameters=params(engine))
    again = ptychography(**tiny_arrays, parameters=params(engine))
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])


def test_step_runs_the_stages_one_iteration_at_a_time(tiny_arrays):
    parameters = {"engine": [{"engine": "DM", "iterations": 2}, {"engine": "ML", "iterations": 1}]}
    stepped = Reconstruction(**tiny_arrays, parameters=parameters)
    engines = []
    while (record := stepped.step()) is not None:
        engines.append(record.engine)
    assert engines == ["DM", "DM", "ML"] and stepped.step() is None
    whole = Reconstruction(**tiny_arrays, parameters=parameters).run()
    np.testing.assert_array_equal(stepped.object, whole.object)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_caller_arrays_are_never_modified(tiny_arrays, engine):
    before = copy.deepcopy(tiny_arrays)
    ptychography(**tiny_arrays, parameters=params(engine))
    for name, array in tiny_arrays.items():
        np.testing.assert_array_equal(array, before[name], err_msg=name)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize("propagation", ["farfield", "nearfield"])
def test_masked_pixels_filled_with_garbage_change_nothing(tiny, tiny_nearfield, engine, propagation):
    data = tiny if propagation == "farfield" else tiny_nearfield
    arrays = data.arrays()
    mask = np.ones(data.frame_shape, dtype=bool)
    mask[12:20, 10:22] = False
    mask[0, :] = False
    arrays["mask"] = mask
    garbage = arrays["diffraction_data"].copy()
    garbage[:, ~mask] = np.random.default_rng(0).integers(0, 10**6, size=(len(garbage), int((~mask).sum())))
    parameters = params(engine, seed=2, **data.engine_parameters())
    clean = Reconstruction(**arrays, parameters=parameters).run()
    dirty = Reconstruction(**{**arrays, "diffraction_data": garbage}, parameters=parameters).run()
    np.testing.assert_array_equal(clean.object, dirty.object)
    np.testing.assert_array_equal(clean.probe, dirty.probe)
    np.testing.assert_array_equal(clean.column("err_fmag"), dirty.column("err_fmag"))


@pytest.mark.parametrize("engine", ["DM", "RAAR", "ML"])
def test_frames_per_block_changes_only_rounding(tiny_arrays, engine):
    """One block of all 48 frames vs blocks of 7: also checks ML's reuse of D(P·O) from the gradient pass in
    its line search (single block only) and the block buffers DM/RAAR reuse across blocks."""
    whole = Reconstruction(**tiny_arrays, parameters=params(engine, frames_per_block=48)).run()
    blocks = Reconstruction(**tiny_arrays, parameters=params(engine, frames_per_block=7)).run()
    scale = np.abs(whole.object).max()
    np.testing.assert_allclose(blocks.object, whole.object, atol=2e-4 * scale)
    np.testing.assert_allclose(blocks.probe, whole.probe, atol=2e-4 * np.abs(whole.probe).max())
    np.testing.assert_allclose(blocks.column("err_fmag"), whole.column("err_fmag"), rtol=1e-4)


def test_history_has_errors_object_error_and_stage_timings(tiny, tiny_arrays):
    records = []
    result = Reconstruction(**tiny_arrays, parameters=params("DM"), true_object=tiny.ground_truth_object(),
                            true_probe=tiny.ground_truth_probe(), callback=records.append).run()
    assert len(result.history) == ITERATIONS and records == result.history
    final = result.final
    assert 0 < final.err_fmag and 0 < final.r_factor < 1 and 0 < final.object_error < 0.5
    assert {"propagation", "fourier_projection", "overlap_update"} <= set(final.stage_seconds)
    assert result.column("object_error")[-1] < result.column("object_error")[0]


def test_stages_run_in_order_with_their_own_iterations(tiny_arrays):
    parameters = {"engine": [{"engine": "DM", "iterations": 3}, {"engine": "ML", "iterations": 2}]}
    result = Reconstruction(**tiny_arrays, parameters=parameters).run()
    assert [r.engine for r in result.history] == ["DM"] * 3 + ["ML"] * 2


def test_numpy_scalars_are_valid_parameter_values():
    options = parse_parameters({"engine": "ePIE", "iterations": np.int64(20), "alpha": np.float32(0.9),
                                "threads": np.int32(2)})
    assert options.stages[0].options.iterations == 20 and type(options.stages[0].options.iterations) is int
    assert options.stages[0].options.alpha == pytest.approx(0.9) and options.run.threads == 2


@pytest.mark.parametrize(("parameters", "key"), [
    ({"engine": "DX"}, "'engine'"),
    ({"engine": "DM", "iteration": 3}, "iteration"),
    ({"engine": "DM", "iterations": -1}, "'iterations'"),
    ({"engine": "DM", "alpha": "big"}, "'alpha'"),
    ({"engine": "ML", "noise": "gauss"}, "'noise'"),
    ({"engine": "ML", "batch_frames": 0}, "'batch_frames'"),
    ({"engine": "ML", "preconditioner": -1}, "'preconditioner'"),
    ({"engine": "ePIE", "pbound": -0.25}, "pbound"),
    ({"engine": "DM", "pbound": "high"}, "pbound"),
    ({"engine": "ML", "pbound": 0.25}, "pbound"),
    ({"photons_per_unit": 0}, "'photons_per_unit'"),
    ({"backend": "jax"}, "'backend'"),
    ({"propagation": "nearfield"}, "'fresnel_number'"),
    ({"frames_per_block": 0}, "'frames_per_block'"),
    ({"engine": [{"engine": "DM", "beta": 0.5}]}, "beta"),
    ({"fresnel_number": 0.1}, "'fresnel_number'"),                  # far field takes none
    ({"engine": "DM", "iterations": np.bool_(True)}, "'iterations'"),
])
def test_bad_parameters_name_the_key(parameters, key):
    with pytest.raises(ParameterError) as info:
        parse_parameters(parameters)
    assert key in str(info.value) and "expected" in str(info.value)


def test_parameters_must_be_a_mapping(tiny_arrays):
    with pytest.raises(TypeError, match="parameters: expected a mapping"):
        ptychography(**tiny_arrays, parameters=[("engine", "DM")])


def test_inputs_are_validated_before_anything_runs(tiny_arrays):
    with pytest.raises(TypeError, match="initial_probe: expected a complex64"):
        ptychography(**{**tiny_arrays, "initial_probe": tiny_arrays["initial_probe"].astype(np.complex128)},
                     parameters=params("DM"))


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_a_finite_blow_up_stops_too(tiny_arrays, engine):
    """Amplitudes 1e6 times the data are garbage even when every number is finite (float32 keeps 1e38)."""
    reconstruction = Reconstruction(**tiny_arrays, parameters=params(engine, iterations=6))
    propagator = reconstruction.problem.propagator
    forward = propagator.forward

    def exploding_forward(waves, overwrite=False):   # from the third iteration on
        result = forward(waves, overwrite=overwrite)
        return result * np.float32(1e6) if len(reconstruction.history) >= 2 else result

    propagator.forward = exploding_forward
    # ML's gradient dot products (complex64 products summed in float64) overflow on 1e6× amplitudes, so its
    # update turns Inf first: that is stopped as non-finite, still with engine and iteration.
    stop = "the model amplitudes blew up" if engine != "ML" else "(the model amplitudes blew up|the .* became NaN/Inf)"
    with pytest.raises(ReconstructionDiverged, match=rf"^{engine}: {stop} at iteration \d+"):
        reconstruction.run()


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_a_non_finite_iterate_stops_with_engine_and_iteration(tiny_arrays, engine):
    reconstruction = Reconstruction(**tiny_arrays, parameters=params(engine, iterations=6))
    propagator = reconstruction.problem.propagator
    forward, calls = propagator.forward, []

    def poisoned_forward(waves, overwrite=False):
        # A NaN appears in one propagation after a few have run, as a numerical blow-up would.
        calls.append(1)
        result = forward(waves, overwrite=overwrite)
        if len(calls) == 3:
            result[..., 0, 0] = np.nan
        return result

    propagator.forward = poisoned_forward
    with pytest.raises(ReconstructionDiverged, match=rf"^{engine}: the .* became NaN/Inf at iteration \d+"):
        reconstruction.run()


@pytest.mark.parametrize(("requested", "device", "stages", "expected"), [
    ("auto", False, ["ePIE"], True),            # CPU: a timer costs a clock read
    ("auto", True, ["ePIE"], False),            # GPU, one frame at a time: 5 syncs per frame
    ("auto", True, ["DM", "ML"], True),         # GPU, whole blocks: a sync per stage per block
    ("auto", True, ["ePIE-batched"], False),    # GPU, small batches: 5 syncs per batch
    ("auto", False, ["rPIE-batched"], True),
    (True, True, ["rPIE"], True), (False, False, ["DM"], False),
])
def test_stage_timings_auto_spares_per_frame_engines_the_device_syncs(requested, device, stages, expected):
    from types import SimpleNamespace

    from ptybench.engines.problem import Problem

    problem = SimpleNamespace(backend=SimpleNamespace(is_device_memory=device))
    plan_stages = [SimpleNamespace(engine=name, options=None) for name in stages]
    assert Problem._stage_timings(problem, requested, plan_stages) is expected


def test_ml_in_mini_batches_is_a_small_step_engine_for_the_stage_timers():
    from types import SimpleNamespace

    from ptybench.engines.options import MLOptions
    from ptybench.engines.problem import Problem

    problem = SimpleNamespace(backend=SimpleNamespace(is_device_memory=True))
    batched = [SimpleNamespace(engine="ML", options=MLOptions(batch_frames=8))]
    assert Problem._stage_timings(problem, "auto", batched) is False


def test_the_object_error_summed_in_steps_over_the_region_box_equals_the_host_formula():
    """ObjectErrorMetric keeps one cropped truth and sums OBJECT_STEP_ROWS rows at a time (no object-sized
    temporaries): the same number as the one-shot host formula, for a region spanning several steps."""
    from ptybench.engines.backends import get_backend
    from ptybench.engines.metrics import OBJECT_STEP_ROWS, ObjectErrorMetric, object_error

    rng = np.random.default_rng(5)
    shape = (2 * OBJECT_STEP_ROWS + 37, 90)
    truth = (rng.random(shape) * np.exp(1j * rng.random(shape))).astype(np.complex64)[None]
    estimate = (0.7j * truth + 0.05 * rng.standard_normal(truth.shape)).astype(np.complex64)
    region = np.zeros(shape, dtype=bool)
    region[20:-15, 10:70] = True
    metric = ObjectErrorMetric(get_backend("numpy"), truth, region)
    assert metric._truth.shape == (shape[0] - 35, 60)  # the region's bounding box only
    assert metric(estimate) == pytest.approx(object_error(estimate, truth, region), rel=1e-5)
    assert metric(np.zeros_like(estimate)) == 1.0
