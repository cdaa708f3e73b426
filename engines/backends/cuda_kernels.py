"""Fused GPU kernels (numba.cuda) for the CuPy backend: one pass over the exit waves per step.

Each method has the signature and meaning of the reference in ``engines/kernels.py``. The reference,
run through CuPy, launches one kernel per array operation (|Ψ|², sum over modes, sqrt, subtract,
where, divide, multiply ...) and writes a frame-sized temporary for each; at 10⁸ complex pixels per
block that memory traffic sets the time. Here each step is one or two kernels that read Ψ once or
twice and write it once; per-frame sums (err_fmag, likelihood) are CuPy reductions over a real
(n, Y, X) buffer, which are already bandwidth-bound.

Written with numba.cuda rather than CuPy's ``ElementwiseKernel`` because numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``) runs these same kernels on NumPy arrays on a CPU, so they are tested in
CI on machines without a GPU (tests/engines/test_cuda_kernels.py) and against CuPy arrays on a GPU.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import cuda, float32

from ..errors import InputError
from ..kernels import AMPLITUDE_EPSILON, POISSON_FLOOR, Kernels

THREADS_PER_BLOCK = 256


@cuda.jit(device=True, inline=True)
def _pixel(index, height, width):  # pragma: no cover - compiled
    """(frame, row, column) of a flat pixel index over (n, Y, X)."""
    frame = index // (height * width)
    rest = index - frame * height * width
    return frame, rest // width, rest - (rest // width) * width


@cuda.jit(device=True, inline=True)
def _mode_power(waves, j, y, x):  # pragma: no cover - compiled
    power = float32(0.0)
    for k in range(waves.shape[1]):
        for m in range(waves.shape[2]):
            value = waves[j, k, m, y, x]
            power += value.real * value.real + value.imag * value.imag
    return power


@cuda.jit(device=True, inline=True)
def _scale_modes(waves, j, y, x, factor):  # pragma: no cover - compiled
    for k in range(waves.shape[1]):
        for m in range(waves.shape[2]):
            waves[j, k, m, y, x] = waves[j, k, m, y, x] * factor


@cuda.jit
def _exit_waves(probe, views, out):  # pragma: no cover - compiled
    n, probe_modes, object_modes, height, width = out.shape
    i = cuda.grid(1)
    if i < n * height * width:
        j, y, x = _pixel(i, height, width)
        for k in range(probe_modes):
            for m in range(object_modes):
                out[j, k, m, y, x] = probe[k, y, x] * views[j, m, y, x]


@cuda.jit
def _linear_mix(overlap, waves, c, d, out):  # pragma: no cover - compiled
    i = cuda.grid(1)
    if i < out.size:
        out[i] = c * overlap[i] + d * waves[i]


@cuda.jit
def _difference_map_update(waves, projected, overlap, keep, a, b):  # pragma: no cover - compiled
    i = cuda.grid(1)
    if i < waves.size:
        waves[i] = keep * waves[i] + b * projected[i] + a * overlap[i]


@cuda.jit
def _mode_intensity(waves, out):  # pragma: no cover - compiled
    _, height, width = out.shape
    i = cuda.grid(1)
    if i < out.size:
        j, y, x = _pixel(i, height, width)
        out[j, y, x] = _mode_power(waves, j, y, x)


@cuda.jit
def _amplitude_difference(waves, intensities, mask, difference):  # pragma: no cover - compiled
    """A − √I on valid pixels, 0 on masked ones: what the per-frame error sums are made of."""
    _, height, width = difference.shape
    i = cuda.grid(1)
    if i < difference.size:
        j, y, x = _pixel(i, height, width)
        value = float32(0.0)
        if mask[y, x]:
            value = math.sqrt(_mode_power(waves, j, y, x)) - math.sqrt(intensities[j, y, x])
        difference[j, y, x] = value


@cuda.jit
def _apply_fourier_projection(waves, intensities, mask, renorm):  # pragma: no cover - compiled
    """Ψ ← Ψ · (√I + r_j (A − √I)) / (A + ε) on valid pixels (r_j = 0 without a power bound)."""
    _, height, width = intensities.shape
    i = cuda.grid(1)
    if i < intensities.size:
        j, y, x = _pixel(i, height, width)
        if mask[y, x]:
            amplitude = math.sqrt(_mode_power(waves, j, y, x))
            measured = math.sqrt(intensities[j, y, x])
            target = measured + renorm[j] * (amplitude - measured)
            _scale_modes(waves, j, y, x, float32(target / (amplitude + float32(AMPLITUDE_EPSILON))))


@cuda.jit
def _likelihood_weights(waves, intensities, mask, gaussian, difference, loss):  # pragma: no cover - compiled
    """Ψ ← Ψ · 2∂L/∂Î per pixel; per-pixel A − √I and likelihood terms for the reductions."""
    _, height, width = intensities.shape
    i = cuda.grid(1)
    if i < intensities.size:
        j, y, x = _pixel(i, height, width)
        factor = float32(0.0)
        amplitude_difference = float32(0.0)
        term = float32(0.0)
        if mask[y, x]:
            model = _mode_power(waves, j, y, x)
            measured = intensities[j, y, x]
            amplitude_difference = math.sqrt(model) - math.sqrt(measured)
            if gaussian:
                weight = float32(1.0) / (measured + float32(1.0))
                residual = model - measured
                term = weight * residual * residual
                factor = float32(4.0) * weight * residual
            else:
                floored = max(model, float32(POISSON_FLOOR))
                term = floored - measured * math.log(floored)
                factor = float32(2.0) * (float32(1.0) - measured / floored)
        difference[j, y, x] = amplitude_difference
        loss[j, y, x] = term
        _scale_modes(waves, j, y, x, factor)


@cuda.jit
def _object_update_terms(probe, waves, out):  # pragma: no cover - compiled
    n, object_modes, height, width = out.shape
    i = cuda.grid(1)
    if i < n * height * width:
        j, y, x = _pixel(i, height, width)
        for m in range(object_modes):
            total = waves[j, 0, m, y, x] * (probe[0, y, x].conjugate())
            for k in range(1, waves.shape[1]):
                total += waves[j, k, m, y, x] * (probe[k, y, x].conjugate())
            out[j, m, y, x] = total


class CudaKernels(Kernels):
    """Fused replacements on CUDA arrays (CuPy), or on NumPy arrays under numba's CUDA simulator."""

    def __init__(self, xp: Any) -> None:
        super().__init__(xp)
        self._on_cupy = "cupy" in getattr(xp, "__name__", "")

    def _launch(self, kernel: Any, size: int, *args: Any) -> None:
        blocks = max(1, -(-size // THREADS_PER_BLOCK))
        if self._on_cupy:
            import cupy

            # Queue on CuPy's current stream, and hand numba the arrays without the stream
            # synchronisation it would otherwise do for every array it is given.
            stream = cuda.external_stream(cupy.cuda.get_current_stream().ptr)
            args = tuple(cuda.as_cuda_array(a, sync=False) if isinstance(a, cupy.ndarray) else a for a in args)
            kernel[blocks, THREADS_PER_BLOCK, stream](*args)
        else:
            kernel[blocks, THREADS_PER_BLOCK](*args)

    @staticmethod
    def _flat(array: Any) -> Any:
        """A 1-D array of the elements (a copy only where ``array`` is not contiguous)."""
        return array.reshape(-1)

    @staticmethod
    def _flat_in_place(array: Any) -> Any:
        """A 1-D view: an update through it must land in ``array``."""
        if not array.flags.c_contiguous:
            raise InputError("waves: expected a C-contiguous array to update in place, got a strided view")
        return array.reshape(-1)

    def exit_waves(self, probe: Any, views: Any) -> Any:
        n, object_modes, height, width = views.shape
        out = self.xp.empty((n, probe.shape[0], object_modes, height, width), dtype=views.dtype)
        self._launch(_exit_waves, n * height * width, probe, views, out)
        return out

    def linear_mix(self, overlap: Any, waves: Any, c: float, out: Any = None) -> Any:
        out = self.xp.empty(waves.shape, dtype=waves.dtype) if out is None else out
        self._launch(_linear_mix, out.size, self._flat(overlap), self._flat(waves),
                     np.float32(c), np.float32(1.0 - c), out.reshape(-1))
        return out

    def difference_map_update(self, waves: Any, projected: Any, overlap: Any, a: float, b: float) -> Any:
        self._launch(_difference_map_update, waves.size, self._flat_in_place(waves), self._flat(projected),
                     self._flat(overlap), np.float32(1.0 - a - b), np.float32(a), np.float32(b))
        return waves

    def mode_intensity(self, waves: Any) -> Any:
        n, _, _, height, width = waves.shape
        out = self.xp.empty((n, height, width), dtype=self.xp.float32)
        self._launch(_mode_intensity, out.size, waves, out)
        return out

    def _error_sums(self, difference: Any) -> tuple[Any, Any]:
        xp = self.xp
        return xp.sum(difference * difference, axis=(-2, -1)), xp.sum(xp.abs(difference), axis=(-2, -1))

    def fourier_projection(self, waves: Any, intensities: Any, mask: Any, pbound: float | None
                           ) -> tuple[Any, Any]:
        xp = self.xp
        difference = xp.empty(intensities.shape, dtype=xp.float32)
        self._launch(_amplitude_difference, difference.size, waves, intensities, mask, difference)
        error, absolute = self._error_sums(difference)
        if pbound is None:
            renorm = xp.zeros(waves.shape[0], dtype=xp.float32)
        else:
            mean_error = error / xp.sum(xp.astype(mask, xp.float32))
            renorm = xp.astype(xp.sqrt(pbound / xp.maximum(mean_error, xp.full_like(mean_error, pbound))), xp.float32)
        self._launch(_apply_fourier_projection, intensities.size, waves, intensities, mask, renorm)
        return error, absolute

    def likelihood_weights(self, waves: Any, intensities: Any, mask: Any, noise: str) -> tuple[float, Any, Any]:
        xp = self.xp
        difference = xp.empty(intensities.shape, dtype=xp.float32)
        terms = xp.empty(intensities.shape, dtype=xp.float32)
        self._launch(_likelihood_weights, intensities.size, waves, intensities, mask, noise == "gaussian",
                     difference, terms)
        squared, absolute = self._error_sums(difference)
        return float(xp.sum(terms, dtype=xp.float64)), squared, absolute

    def object_update_terms(self, probe: Any, waves: Any) -> Any:
        n, _, object_modes, height, width = waves.shape
        out = self.xp.empty((n, object_modes, height, width), dtype=waves.dtype)
        self._launch(_object_update_terms, n * height * width, probe, waves, out)
        return out


def simulated() -> bool:
    """True when numba runs CUDA kernels in its CPU simulator (``NUMBA_ENABLE_CUDASIM=1``)."""
    from numba import config

    return bool(config.ENABLE_CUDASIM)
