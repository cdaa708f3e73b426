"""Torch versions of the hot element-wise steps: in-place ops and fewer temporaries (CUDA), and the
numba kernels on CPU tensors (``NumbaOnTorchKernels``).

Each method has the signature and meaning of the reference in ``engines/kernels.py`` and is tested
against it (tests/engines/test_kernels.py). The reference builds every intermediate (``c * a``, masks
through ``where``); at 10⁶–10⁸ complex pixels per block that memory traffic, not arithmetic, sets the
time, so these use ``add_(…, alpha=)`` and ``mul_``. (A Gram-matrix line search in float64 was tried
and was slower on the CPU: 0.62 vs 0.56 s per ML iteration at 128²×1024, with 5 more frame-sized
float64 temporaries.)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..kernels import AMPLITUDE_EPSILON, Kernels


def _power(waves: Any) -> Any:
    """Σ_kl |Ψ_jkl|² as (n, Y, X) float32, through the real view (no complex temporaries)."""
    return torch.view_as_real(waves).square().sum(dim=(1, 2, -1))


class TorchKernels(Kernels):
    def linear_mix(self, overlap: Any, waves: Any, c: float, out: Any = None) -> Any:
        return torch.mul(overlap, c, out=out).add_(waves, alpha=1.0 - c)

    def difference_map_update(self, waves: Any, projected: Any, overlap: Any, a: float, b: float) -> Any:
        if a + b != 0.0:
            waves.mul_(1.0 - a - b)
        waves.add_(projected, alpha=b)
        waves.add_(overlap, alpha=a)
        return waves

    def mode_intensity(self, waves: Any) -> Any:
        return _power(waves)

    def fourier_projection(self, waves: Any, intensities: Any, mask: Any, pbound: float | None
                           ) -> tuple[Any, Any]:
        amplitude = _power(waves).sqrt_()
        measured = intensities.sqrt()
        valid = mask.to(amplitude.dtype)
        difference = (amplitude - measured).mul_(valid)
        error = difference.square().sum(dim=(-2, -1))
        absolute = difference.abs().sum(dim=(-2, -1))
        if pbound is None:
            target = measured
        else:
            mean_error = error / valid.sum()
            renorm = torch.sqrt(pbound / torch.clamp(mean_error, min=pbound))
            target = measured.add_(difference.mul_(renorm[:, None, None]))   # √I + r·(A − √I) on valid pixels
        # factor = target / (A + ε) on valid pixels, 1 on masked ones
        factor = target.div_(amplitude.add_(AMPLITUDE_EPSILON)).mul_(valid).add_(1.0 - valid)
        waves.mul_(factor[:, None, None])
        return error, absolute

    def pie_update(self, view: Any, old_view: Any, probe: Any, projected: Any, waves: Any, alpha: float,
                   beta: float | None, rpie_alpha: float | None) -> Any:
        delta = projected.sub_(waves)  # the engine's temporary, not used after this step

        def scale(power: Any, step: float) -> Any:
            largest = power.max()
            weight = largest if rpie_alpha is None else power.mul(1.0 - rpie_alpha).add_(largest, alpha=rpie_alpha)
            return torch.div(step, weight)

        def modes_power(array: Any) -> Any:
            return torch.view_as_real(array).square().sum(dim=(0, -1))

        object_step = (probe.conj().unsqueeze(1) * delta).sum(dim=0)
        new_probe = None
        if beta is not None:
            probe_step = (old_view.conj().unsqueeze(0) * delta).sum(dim=1)
            new_probe = probe_step.mul_(scale(modes_power(old_view), beta)).add_(probe)
        view.add_(object_step.mul_(scale(modes_power(probe), alpha)))
        return new_probe


def _as_numpy(value: Any) -> Any:
    return value.resolve_conj().numpy() if isinstance(value, torch.Tensor) else value


def _as_torch(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, tuple):
        return tuple(_as_torch(item) for item in value)
    return value


def _through_numba(name: str, returns_arrays: bool = True) -> Any:
    def method(self: NumbaOnTorchKernels, *args: Any, **keywords: Any) -> Any:
        result = getattr(self.numba, name)(*(_as_numpy(arg) for arg in args),
                                           **{key: _as_numpy(value) for key, value in keywords.items()})
        return _as_torch(result) if returns_arrays else result

    method.__name__ = name
    method.__doc__ = f"Kernels.{name} through the NumPy backend's numba kernel, on shared memory."
    return method


class NumbaOnTorchKernels(Kernels):
    """On a CPU, torch tensors and NumPy arrays share memory (``Tensor.numpy()`` copies nothing), so
    torch-CPU runs the same compiled numba kernels as the NumPy backend: written once, and a CPU
    comparison of the two backends then measures their FFTs and overheads, not two implementations
    of the element-wise steps (torch's own ops make one pass over memory per operation)."""

    def __init__(self, xp: Any) -> None:
        super().__init__(xp)
        import array_api_compat.numpy

        from .numba_kernels import NumbaKernels

        self.numba = NumbaKernels(array_api_compat.numpy)

    exit_waves = _through_numba("exit_waves")
    linear_mix = _through_numba("linear_mix")
    mode_intensity = _through_numba("mode_intensity")
    fourier_projection = _through_numba("fourier_projection")
    difference_map_update = _through_numba("difference_map_update")
    object_update_terms = _through_numba("object_update_terms")
    probe_update_terms = _through_numba("probe_update_terms")
    likelihood_weights = _through_numba("likelihood_weights")
    line_search_polynomial = _through_numba("line_search_polynomial", returns_arrays=False)
    pie_update = _through_numba("pie_update")
    frame_exit_waves = _through_numba("frame_exit_waves")
