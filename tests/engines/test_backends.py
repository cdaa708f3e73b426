"""Torch and CuPy run the same engines as NumPy and agree with it; unavailable ones skip with the reason.

Agreement is tested on a well-conditioned problem: high dose and a start 5 % from the truth. From a
flat start with Poisson data, DM, RAAR and rPIE pass near zeros of the model amplitude in their first
iterations, where the Fourier projection's phase derivative is |√I|/|Ψ| and float32 rounding of two
FFT libraries (1e-7) grows to 1e-3..1e-1 in ten iterations: different, equally good paths (they reach
the same object-error bars, test_correctness). Near the solution the maps contract, and what differs
is the implementation alone.
"""

from __future__ import annotations

import numpy as np
import pytest

from ptybench.datasets import DatasetSpec, load
from ptybench.engines import Reconstruction, ptychography
from ptybench.engines import problem as problem_module
from ptybench.engines.backends import BackendUnavailable, backend_status, get_backend
from ptybench.engines.backends.numpy_backend import NumpyBackend

ENGINES = ("DM", "RAAR", "ePIE", "rPIE", "ePIE-batched", "rPIE-batched", "ML")
#: (backend, device) pairs compared with NumPy; each skips where it cannot run.
TARGETS = (("torch", "cpu"), ("torch", "cuda"), ("cupy", "cuda"))
AGREEMENT = 1e-4

WELL_CONDITIONED = {
    "farfield": DatasetSpec(kind="farfield", n_frames=48, frame_shape=(32, 32), photons=1e8, probe_modes=2,
                            dead_pixel_fraction=0.01, beamstop_radius=1.5, seed=21),
    "nearfield": DatasetSpec(kind="nearfield", n_frames=24, frame_shape=(32, 32), photons=1e8, seed=22),
}


def require(backend: str, device: str) -> None:
    """Skip with the backend's own reason when it cannot run here."""
    status = backend_status(((backend, device),))[0]
    if not status.available:
        pytest.skip(status.reason)


def relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


@pytest.fixture(scope="module", params=list(WELL_CONDITIONED))
def near_truth(request):
    data = load(WELL_CONDITIONED[request.param])
    arrays = data.arrays()
    rng = np.random.default_rng(3)

    def perturbed(array: np.ndarray) -> np.ndarray:
        noise = rng.standard_normal(array.shape) + 1j * rng.standard_normal(array.shape)
        return (array * (1 + 0.05 * noise)).astype(np.complex64)

    arrays["initial_object"] = perturbed(data.ground_truth_object())
    arrays["initial_probe"] = perturbed(data.ground_truth_probe())
    return data, arrays


def run_on(backend: str, device: str | None, data, arrays, parameters: dict) -> tuple[np.ndarray, np.ndarray]:
    return ptychography(**arrays, parameters={**parameters, **data.engine_parameters(), "backend": backend,
                                              "device": device})


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("target", TARGETS, ids=lambda t: "-".join(t))
def test_backend_agrees_with_numpy_after_ten_iterations(near_truth, target, engine):
    require(*target)
    data, arrays = near_truth
    parameters = {"engine": engine, "iterations": 10, "probe_update_start": 0, "frames_per_block": 16}
    reference = run_on("numpy", None, data, arrays, parameters)
    result = run_on(*target, data, arrays, parameters)
    for name, expected, actual in zip(("object", "probe"), reference, result, strict=True):
        assert actual.dtype == np.complex64
        assert relative_difference(expected, actual) < AGREEMENT, f"{engine} {name} on {target}"


@pytest.mark.parametrize("engine", ENGINES)
def test_the_torch_kernels_of_the_cuda_path_agree_with_numpy_on_the_cpu(near_truth, engine, monkeypatch):
    """torch-CPU runs the numba kernels; the torch kernels torch-CUDA runs are checked here end to end."""
    require("torch", "cpu")
    from ptybench.engines.backends import torch_backend
    from ptybench.engines.backends.torch_kernels import TorchKernels

    monkeypatch.setattr(torch_backend.TorchBackend, "_cpu_kernel_class", TorchKernels)
    assert type(get_backend("torch", "cpu").kernels) is TorchKernels
    data, arrays = near_truth
    parameters = {"engine": engine, "iterations": 10, "probe_update_start": 0, "frames_per_block": 16}
    reference = run_on("numpy", None, data, arrays, parameters)
    result = run_on("torch", "cpu", data, arrays, parameters)
    for name, expected, actual in zip(("object", "probe"), reference, result, strict=True):
        assert relative_difference(expected, actual) < AGREEMENT, f"{engine} {name} with TorchKernels"


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: "-".join(t))
def test_backend_agrees_on_ml_in_preconditioned_mini_batches(near_truth, target):
    require(*target)
    data, arrays = near_truth
    parameters = {"engine": "ML", "iterations": 5, "probe_update_start": 0, "batch_frames": 16, "frames_per_block": 8}
    reference = run_on("numpy", None, data, arrays, parameters)
    result = run_on(*target, data, arrays, parameters)
    assert relative_difference(reference[0], result[0]) < AGREEMENT
    assert relative_difference(reference[1], result[1]) < AGREEMENT


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: "-".join(t))
def test_backend_agrees_on_a_dm_then_ml_plan(near_truth, target):
    require(*target)
    data, arrays = near_truth
    parameters = {"engine": [{"engine": "DM", "iterations": 5, "probe_update_start": 0},
                             {"engine": "ML", "iterations": 5, "probe_update_start": 0}]}
    reference = run_on("numpy", None, data, arrays, parameters)
    result = run_on(*target, data, arrays, parameters)
    assert relative_difference(reference[0], result[0]) < AGREEMENT
    assert relative_difference(reference[1], result[1]) < AGREEMENT


@pytest.mark.parametrize("target", (("numpy", "cpu"), *TARGETS), ids=lambda t: "-".join(t))
@pytest.mark.parametrize("engine", ENGINES)
def test_engines_compute_in_single_precision(tiny_arrays, target, engine, monkeypatch):
    """Every FFT, gather and scatter (fused or not) sees complex64/float32: no silent float64 on any backend
    (NumPy too: a float64 scalar once made ML's line search run in complex128 there)."""
    require(*target)
    backend_class = type(get_backend(*target))
    seen: set[str] = set()

    def spy(method_name: str):
        original = getattr(backend_class, method_name)

        def wrapper(self, *args, **kwargs):
            arrays = [a for a in args if hasattr(a, "dtype") and "int" not in str(a.dtype)]
            seen.update(str(a.dtype).replace("torch.", "") for a in arrays)
            result = original(self, *args, **kwargs)
            if hasattr(result, "dtype"):
                seen.add(str(result.dtype).replace("torch.", ""))
            return result

        monkeypatch.setattr(backend_class, method_name, wrapper)

    for method_name in ("fft2", "ifft2", "gather_views", "scatter_add_views", "overlap_waves", "probe_update_terms_at",
                        "add_object_terms"):
        spy(method_name)
    obj, probe = ptychography(**tiny_arrays, parameters={"engine": engine, "iterations": 2, "backend": target[0],
                                                         "device": target[1]})
    assert seen and seen <= {"complex64", "float32"}, seen
    assert obj.dtype == probe.dtype == np.complex64


class HostAsDevice(NumpyBackend):
    """The NumPy backend pretending its arrays live on a device: exercises the streaming path on a CPU."""

    is_device_memory = True
    uploads = 0
    #: Free "device" memory the placement sees.
    free_bytes = 10**12

    def available_memory_bytes(self):
        return HostAsDevice.free_bytes

    def upload_async(self, host_block):
        HostAsDevice.uploads += 1
        return np.array(host_block, copy=True)


@pytest.mark.parametrize("engine", ENGINES)
def test_streaming_blocks_through_host_buffers_equals_resident(tiny_arrays, engine, monkeypatch):
    parameters = {"engine": engine, "iterations": 3, "frames_per_block": 10, "probe_update_start": 0}
    resident = ptychography(**tiny_arrays, parameters=parameters)
    parameters["residency"] = "streamed"
    HostAsDevice.uploads = 0
    monkeypatch.setattr(problem_module, "get_backend", lambda *args, **kwargs: HostAsDevice())
    reconstruction = Reconstruction(**tiny_arrays, parameters=parameters)
    assert reconstruction.problem.streaming
    streamed = reconstruction.run()
    assert HostAsDevice.uploads > 0
    np.testing.assert_allclose(streamed.object, resident[0], rtol=0, atol=1e-5 * np.abs(resident[0]).max())
    np.testing.assert_allclose(streamed.probe, resident[1], rtol=0, atol=1e-5 * np.abs(resident[1]).max())


def test_with_everything_resident_nothing_is_streamed(tiny_arrays, monkeypatch):
    HostAsDevice.uploads = 0
    monkeypatch.setattr(problem_module, "get_backend", lambda *args, **kwargs: HostAsDevice())
    reconstruction = Reconstruction(**tiny_arrays, parameters={"engine": "DM", "iterations": 2})
    reconstruction.run()
    assert not reconstruction.problem.streaming
    assert HostAsDevice.uploads == 0


@pytest.mark.parametrize(("free_bytes", "residency"), [(10**12, "resident"), (500_000, "streamed")])
def test_residency_and_block_are_chosen_from_the_free_device_memory(tiny_arrays, monkeypatch, free_bytes, residency):
    """Resident when the per-frame data fit, streamed when not; the block is bounded either way, and the
    result is the host's with the same block (so float32 sums are grouped alike and the comparison
    isolates residency and transfers)."""
    parameters = {"engine": "DM", "iterations": 3, "probe_update_start": 0}
    monkeypatch.setattr(HostAsDevice, "free_bytes", free_bytes)
    monkeypatch.setattr(problem_module, "get_backend", lambda *args, **kwargs: HostAsDevice())
    reconstruction = Reconstruction(**tiny_arrays, parameters=parameters)
    placement = reconstruction.problem.placement
    assert placement.residency == residency, placement.reason
    if residency == "streamed":
        assert 1 <= placement.frames_per_block < tiny_arrays["diffraction_data"].shape[0]
    result = reconstruction.run()
    host = ptychography(**tiny_arrays, parameters={**parameters, "frames_per_block": placement.frames_per_block})
    np.testing.assert_allclose(result.object, host[0], rtol=0, atol=1e-6 * np.abs(host[0]).max())


def test_an_explicit_block_and_residency_win(tiny_arrays, monkeypatch):
    monkeypatch.setattr(problem_module, "get_backend", lambda *args, **kwargs: HostAsDevice())
    problem = Reconstruction(**tiny_arrays, parameters={"engine": "ML", "iterations": 1, "frames_per_block": 7,
                                                        "residency": "resident"}).problem
    assert (problem.frames_per_block, problem.streaming) == (7, False)


def test_unavailable_backends_say_why():
    statuses = {(s.name, s.device): s for s in backend_status()}
    assert statuses[("numpy", "cpu")].available
    for status in statuses.values():
        if not status.available:
            assert status.name in status.reason and len(status.reason) > 20
            with pytest.raises(BackendUnavailable, match=status.name):
                get_backend(status.name, status.device)


def test_unknown_backend_and_bad_device_are_value_errors():
    with pytest.raises(ValueError, match="backend"):
        get_backend("jax")
    with pytest.raises(ValueError, match="device"):
        get_backend("numpy", "cuda:0")
