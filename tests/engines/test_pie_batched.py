"""engines/pie_batched.py: batched ePIE/rPIE is sequential ePIE/rPIE at B = 1, independent of the compute
block, and its batch bounds the automatic block (docs/algorithms.md, "Engines")."""

from __future__ import annotations

import numpy as np
import pytest

from ptybench.datasets import load
from ptybench.engines import Reconstruction, ptychography
from ptybench.engines.backends.numpy_backend import NumpyBackend
from ptybench.engines.placement import FrameCosts, choose_placement
from ptybench.engines.problem import FrameStore
from ptybench.engines.registry import engine_spec
from ptybench.memory_model import Geometry, predict_memory


def relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


@pytest.mark.parametrize("engine", ["ePIE", "rPIE"])
def test_a_batch_of_one_frame_is_the_sequential_engine(tiny, tiny_arrays, engine):
    """Same frame order (the same seeded stream), same weights: the same object and probe to rounding."""
    parameters = {"iterations": 4, "probe_update_start": 1, **tiny.engine_parameters()}
    sequential = ptychography(**tiny_arrays, parameters={"engine": engine, **parameters})
    batched = ptychography(**tiny_arrays, parameters={"engine": f"{engine}-batched", "batch_frames": 1, **parameters})
    for expected, actual in zip(sequential, batched, strict=True):
        assert relative_difference(expected, actual) < 1e-5


@pytest.mark.parametrize("engine", ["ePIE-batched", "rPIE-batched"])
def test_the_batch_not_the_compute_block_defines_the_result(tiny, tiny_arrays, engine):
    """A batch computed in blocks of 5 frames sums the same terms as in one block of 24."""
    parameters = {"engine": engine, "iterations": 3, "batch_frames": 24, "probe_update_start": 0,
                  **tiny.engine_parameters()}
    in_blocks = ptychography(**tiny_arrays, parameters={**parameters, "frames_per_block": 5})
    whole = ptychography(**tiny_arrays, parameters={**parameters, "frames_per_block": 24})
    for expected, actual in zip(whole, in_blocks, strict=True):
        assert relative_difference(expected, actual) < 1e-5


def test_batches_cover_every_frame_once_and_repeat_for_a_seed(tiny, tiny_arrays):
    def batches(seed: int) -> list[np.ndarray]:
        reconstruction = Reconstruction(**tiny_arrays, parameters={"engine": "ePIE-batched", "batch_frames": 7,
                                                                   "seed": seed, **tiny.engine_parameters()})
        reconstruction.step()
        return reconstruction._engine.batches()

    first = batches(0)
    n_frames = tiny_arrays["diffraction_data"].shape[0]
    assert [len(b) for b in first] == [7] * (n_frames // 7) + ([n_frames % 7] if n_frames % 7 else [])
    assert np.array_equal(np.sort(np.concatenate(first)), np.arange(n_frames))
    assert all(np.array_equal(a, b) for a, b in zip(first, batches(0), strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, batches(1), strict=True))


@pytest.mark.slow
def test_batches_of_64_keep_pace_with_sequential_epie_per_iteration():
    """The weights that keep a lone frame's step (max(I_O, m)): at B = 64 within 25 % of sequential ePIE's
    object error after 10 iterations (measured 0.037 vs 0.039 at 128²×1024; the batch-summed max gave 0.068)."""
    data = load("farfield-128-1024")
    arrays = data.arrays()

    def error(engine: str) -> float:
        return Reconstruction(**arrays, parameters={"engine": engine, "iterations": 10, **data.engine_parameters()},
                              true_object=data.ground_truth_object(),
                              true_probe=data.ground_truth_probe()).run().final.object_error

    assert error("ePIE-batched") <= 1.25 * error("ePIE")


def test_an_automatic_block_stays_within_the_batch():
    costs = FrameCosts(data=4 * 128 * 128, temporaries=8 * 2 * 128 * 128, fixed=10**7, wave=8 * 128 * 128)
    device = choose_placement(16384, costs, on_device=True, available_bytes=80 * 10**9, block_limit=64)
    assert device.frames_per_block == 64 and "batch of 64" in device.reason
    assert choose_placement(16384, costs, True, 80 * 10**9, requested_block=512, block_limit=64).frames_per_block == 512
    assert choose_placement(16384, costs, True, 80 * 10**9).frames_per_block > 64
    assert choose_placement(16384, costs, False, None, block_limit=8).frames_per_block == 8


def test_the_engine_on_a_device_computes_its_stated_batch_as_one_block(tiny, tiny_arrays, monkeypatch):
    """The placement reads the stage's own batch_frames (not the default) through the registry."""
    from ptybench.engines import problem as problem_module

    class RoomyDevice(NumpyBackend):
        is_device_memory = True

        def available_memory_bytes(self) -> int:
            return 10**12

    monkeypatch.setattr(problem_module, "get_backend", lambda *args, **kwargs: RoomyDevice())
    parameters = {"engine": "rPIE-batched", "batch_frames": 12, "iterations": 1, **tiny.engine_parameters()}
    problem = Reconstruction(**tiny_arrays, parameters=parameters).problem
    assert problem.frames_per_block == 12 and "batch of 12" in problem.placement.reason
    dm = Reconstruction(**tiny_arrays, parameters={"engine": "DM", "iterations": 1, **tiny.engine_parameters()})
    assert dm.problem.frames_per_block == tiny_arrays["diffraction_data"].shape[0]


def test_the_memory_model_uses_the_default_batch_as_the_block():
    geometry = Geometry(n_frames=16384, frame_shape=(128, 128), object_shape=(2000, 2000))
    spec = engine_spec("ePIE-batched")
    default_batch = spec.largest_useful_block()
    assert default_batch == spec.options_class().batch_frames
    prediction = predict_memory(geometry, "ePIE-batched", "cupy", available_bytes=80 * 10**9)
    assert prediction.frames_per_block == default_batch and "exit_waves" not in prediction.terms
    assert predict_memory(geometry, "DM", "cupy", available_bytes=80 * 10**9).frames_per_block > default_batch


def test_a_streamed_store_gathers_the_frames_a_resident_one_does():
    backend = NumpyBackend()
    data = np.arange(10 * 2 * 3, dtype=np.float32).reshape(10, 2, 3)
    frames = np.array([7, 1, 4])
    for resident in (True, False):
        store = FrameStore(backend, data.copy(), data.shape, np.float32, resident=resident)
        np.testing.assert_array_equal(store.gather(frames, backend.index_array(frames)), data[frames])


@pytest.mark.parametrize("bad, match", [({"batch_frames": 0}, "batch_frames"), ({"batch_frames": 2.5}, "batch_frames"),
                                        ({"rpie_alpha": 1.5}, "rpie_alpha")])
def test_bad_batch_options_name_the_key(tiny, tiny_arrays, bad, match):
    engine = "rPIE-batched" if "rpie_alpha" in bad else "ePIE-batched"
    with pytest.raises(ValueError, match=match):
        ptychography(**tiny_arrays, parameters={"engine": engine, **bad, **tiny.engine_parameters()})


def test_rpie_with_a_zero_leaves_unlit_pixels_finite(tiny, tiny_arrays):
    """a = 0 makes the weight the illumination itself, zero where no frame of a batch lit: 0, not 0/0."""
    obj, probe = ptychography(**tiny_arrays, parameters={"engine": "rPIE-batched", "rpie_alpha": 0.0,
                                                         "batch_frames": 4, "iterations": 2,
                                                         **tiny.engine_parameters()})
    assert np.all(np.isfinite(obj)) and np.all(np.isfinite(probe))
