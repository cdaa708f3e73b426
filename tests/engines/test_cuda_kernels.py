"""The numba.cuda kernels of the CuPy backend compute what the reference definitions compute.

On a machine without a GPU they run in numba's CUDA simulator on NumPy arrays (tests/conftest.py
turns it on there); on a CUDA machine the same tests run them on CuPy arrays.
"""

from __future__ import annotations

import numpy as np
import pytest

from ptybench.engines.backends.cuda_kernels import CudaKernels, simulated
from ptybench.engines.kernels import Kernels


def _namespaces():
    if simulated():
        import array_api_compat.numpy as xp

        return xp, np.asarray, np.asarray
    try:
        import array_api_compat.cupy as xp
        import cupy
        from numba import cuda
    except ImportError:
        pytest.skip("numba.cuda kernels: no CuPy here and NUMBA_ENABLE_CUDASIM is not set", allow_module_level=True)
    if not cuda.is_available():
        pytest.skip("numba.cuda kernels: no CUDA device", allow_module_level=True)
    return xp, cupy.asarray, cupy.asnumpy


XP, TO_DEVICE, TO_HOST = _namespaces()
REFERENCE, FUSED = Kernels(np), CudaKernels(XP)
#: Small: the simulator runs every GPU thread as a Python thread.
SHAPES = {"single-mode": (3, 1, 1, 6, 5), "modes": (2, 2, 3, 4, 4)}


@pytest.fixture(params=list(SHAPES.values()), ids=list(SHAPES))
def case(request):
    n, mp, mo, y, x = request.param
    rng = np.random.default_rng(1)
    mask = rng.random((y, x)) > 0.2
    intensities = np.where(mask, rng.poisson(3.0, (n, y, x)), 0).astype(np.float32)
    return {"probe": complex_array(rng, (mp, y, x)), "views": complex_array(rng, (n, mo, y, x)),
            "waves": complex_array(rng, (n, mp, mo, y, x)), "other": complex_array(rng, (n, mp, mo, y, x)),
            "mask": mask, "intensities": intensities}


def complex_array(rng, shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def on_device(case):
    return {name: TO_DEVICE(value) for name, value in case.items()}


def close(fused, reference):
    reference = np.asarray(reference)
    np.testing.assert_allclose(TO_HOST(fused), reference, rtol=2e-5, atol=2e-5 * float(np.abs(reference).max()))


def test_exit_waves_and_object_update_terms(case):
    device = on_device(case)
    close(FUSED.exit_waves(device["probe"], device["views"]), REFERENCE.exit_waves(case["probe"], case["views"]))
    close(FUSED.object_update_terms(device["probe"], device["waves"]),
          REFERENCE.object_update_terms(case["probe"], case["waves"]))


def test_mode_intensity_linear_mix_and_difference_map_update(case):
    device = on_device(case)
    close(FUSED.mode_intensity(device["waves"]), REFERENCE.mode_intensity(case["waves"]))
    close(FUSED.linear_mix(device["other"], device["waves"], 2.0),
          REFERENCE.linear_mix(case["other"], case["waves"], 2.0))
    overlap = REFERENCE.exit_waves(case["probe"], case["views"])
    reference = REFERENCE.difference_map_update(case["waves"].copy(), case["other"], overlap, -0.5, 0.75)
    fused = FUSED.difference_map_update(device["waves"], device["other"], TO_DEVICE(overlap), -0.5, 0.75)
    close(device["waves"], reference)      # in place
    close(fused, reference)


@pytest.mark.parametrize("pbound", [None, 0.25, 1e-6])
def test_fourier_projection(case, pbound):
    device = on_device(case)
    reference_waves = case["waves"].copy()
    fused = FUSED.fourier_projection(device["waves"], device["intensities"], device["mask"], pbound)
    reference = REFERENCE.fourier_projection(reference_waves, case["intensities"], case["mask"], pbound)
    close(device["waves"], reference_waves)
    close(fused[0], reference[0])
    close(fused[1], reference[1])
    np.testing.assert_array_equal(TO_HOST(device["waves"])[..., ~case["mask"]], case["waves"][..., ~case["mask"]])


@pytest.mark.parametrize("noise", ["gaussian", "poisson"])
def test_likelihood_weights(case, noise):
    device = on_device(case)
    reference_waves = case["waves"].copy()
    fused = FUSED.likelihood_weights(device["waves"], device["intensities"], device["mask"], noise)
    reference = REFERENCE.likelihood_weights(reference_waves, case["intensities"], case["mask"], noise)
    close(device["waves"], reference_waves)
    assert fused[0] == pytest.approx(reference[0], rel=1e-5)
    close(fused[1], reference[1])
    close(fused[2], reference[2])


def test_an_in_place_update_refuses_a_strided_view(case):
    device = on_device(case)
    strided = device["waves"][:, :, :, ::2]
    with pytest.raises(ValueError, match="waves: expected a C-contiguous"):
        FUSED.difference_map_update(strided, strided, strided, -1.0, 1.0)
