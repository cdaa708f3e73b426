"""Fused CPU kernels (numba) for the NumPy backend: one pass over memory instead of several.

Each method has the signature and meaning of the reference in ``engines/kernels.py``; the tests
compare every one with it. NumPy evaluates ``c·a + (1 − c)·b`` as three passes with temporaries;
at 10⁶–10⁸ complex pixels per block that memory traffic, not arithmetic, sets the time.
"""

from __future__ import annotations

import types
from typing import Any

import numba
import numpy as np

from ..kernels import AMPLITUDE_EPSILON, POISSON_FLOOR, Kernels

#: Below this many complex elements a call runs serially: numba's parallel dispatch costs tens of
#: microseconds, more than a single 64² frame's work (ePIE calls once per frame).
PARALLEL_MIN_SIZE = 1 << 16


def _renamed(function, suffix: str):
    """The same code under another qualified name. numba's on-disk cache is keyed by qualified name,
    line and signature, not by ``parallel``: without this the serial and parallel variants share one
    cache entry, and whichever was compiled first is loaded for both (a parallel kernel that runs on
    one thread)."""
    copy = types.FunctionType(function.__code__, function.__globals__, function.__name__ + suffix,
                              function.__defaults__, function.__closure__)
    copy.__qualname__ = function.__qualname__ + suffix
    return copy


def _compile(function):
    """A kernel compiled twice: in parallel (prange over frames or rows) and serially."""
    parallel = numba.njit(parallel=True, cache=True, nogil=True)(_renamed(function, "_parallel"))
    serial = numba.njit(parallel=False, cache=True, nogil=True)(_renamed(function, "_serial"))

    def dispatch(*args):
        size = max(getattr(arg, "size", 0) for arg in args)
        return (parallel if size >= PARALLEL_MIN_SIZE else serial)(*args)

    dispatch.__name__ = dispatch.__qualname__ = function.__name__
    dispatch.__doc__ = function.__doc__
    return dispatch


@numba.njit(inline="always", cache=True)
def _mode_power(waves, j, y, x):  # pragma: no cover - compiled
    """Σ_kl |Ψ_jkl(y, x)|²: the model intensity of one pixel."""
    power = np.float32(0.0)
    for k in range(waves.shape[1]):
        for m in range(waves.shape[2]):
            value = waves[j, k, m, y, x]
            power += value.real * value.real + value.imag * value.imag
    return power


def _exit_waves(probe, views, out):  # pragma: no cover - compiled
    n, probe_modes, object_modes, height, width = out.shape
    for j in numba.prange(n):
        for k in range(probe_modes):
            for m in range(object_modes):
                for y in range(height):
                    for x in range(width):
                        out[j, k, m, y, x] = probe[k, y, x] * views[j, m, y, x]


def _linear_mix(overlap, waves, c, out):  # pragma: no cover - compiled
    flat_out, flat_overlap, flat_waves = out.reshape(-1), overlap.reshape(-1), waves.reshape(-1)
    d = np.float32(1.0 - c)
    c = np.float32(c)
    for i in numba.prange(flat_out.size):
        flat_out[i] = c * flat_overlap[i] + d * flat_waves[i]


def _fourier_projection(waves, intensities, mask, pbound, use_bound, error, absolute):  # pragma: no cover
    n, probe_modes, object_modes, height, width = waves.shape
    valid = 0
    for y in range(height):
        for x in range(width):
            valid += mask[y, x]
    for j in numba.prange(n):
        squared_sum = 0.0
        absolute_sum = 0.0
        for y in range(height):
            for x in range(width):
                if mask[y, x]:
                    power = _mode_power(waves, j, y, x)
                    difference = np.sqrt(power) - np.sqrt(intensities[j, y, x])
                    squared_sum += difference * difference
                    absolute_sum += abs(difference)
        error[j] = squared_sum
        absolute[j] = absolute_sum
        renorm = np.float32(1.0)
        if use_bound:
            mean_error = squared_sum / valid
            renorm = np.float32(np.sqrt(pbound / max(mean_error, pbound)))
        for y in range(height):
            for x in range(width):
                if mask[y, x]:
                    power = _mode_power(waves, j, y, x)
                    amplitude = np.sqrt(power)
                    measured = np.sqrt(intensities[j, y, x])
                    target = measured + renorm * (amplitude - measured) if use_bound else measured
                    factor = np.float32(target / (amplitude + np.float32(AMPLITUDE_EPSILON)))
                    for k in range(probe_modes):
                        for m in range(object_modes):
                            waves[j, k, m, y, x] *= factor


def _difference_map_update(waves, projected, overlap, a, b):  # pragma: no cover - compiled
    flat_waves, flat_projected, flat_overlap = waves.reshape(-1), projected.reshape(-1), overlap.reshape(-1)
    keep = np.float32(1.0 - a - b)
    a = np.float32(a)
    b = np.float32(b)
    for i in numba.prange(flat_waves.size):
        flat_waves[i] = keep * flat_waves[i] + b * flat_projected[i] + a * flat_overlap[i]


def _object_update_terms(probe, waves, out):  # pragma: no cover - compiled
    n, probe_modes, object_modes, height, width = waves.shape
    for j in numba.prange(n):
        for m in range(object_modes):
            for y in range(height):
                for x in range(width):
                    total = np.complex64(0.0)
                    for k in range(probe_modes):
                        total += np.conj(probe[k, y, x]) * waves[j, k, m, y, x]
                    out[j, m, y, x] = total


def _probe_update_terms(views, waves, numerator, denominator):  # pragma: no cover - compiled
    n, probe_modes, object_modes, height, width = waves.shape
    for y in numba.prange(height):  # rows in parallel, frames summed in order: deterministic
        for x in range(width):
            power = np.float32(0.0)
            for j in range(n):
                for m in range(object_modes):
                    value = views[j, m, y, x]
                    power += value.real * value.real + value.imag * value.imag
            denominator[y, x] = power
            for k in range(probe_modes):
                total = np.complex64(0.0)
                for j in range(n):
                    for m in range(object_modes):
                        total += np.conj(views[j, m, y, x]) * waves[j, k, m, y, x]
                numerator[k, y, x] = total


def _likelihood_weights(waves, intensities, mask, gaussian, loss, error, absolute):  # pragma: no cover
    n, probe_modes, object_modes, height, width = waves.shape
    for j in numba.prange(n):
        loss_sum = 0.0
        squared_sum = 0.0
        absolute_sum = 0.0
        for y in range(height):
            for x in range(width):
                if not mask[y, x]:
                    factor = np.float32(0.0)
                else:
                    model = _mode_power(waves, j, y, x)
                    measured = intensities[j, y, x]
                    difference = np.sqrt(model) - np.sqrt(measured)
                    squared_sum += difference * difference
                    absolute_sum += abs(difference)
                    if gaussian:
                        weight = np.float32(1.0) / (measured + np.float32(1.0))
                        residual = model - measured
                        loss_sum += weight * residual * residual
                        factor = np.float32(4.0) * weight * residual
                    else:
                        floored = max(model, np.float32(POISSON_FLOOR))
                        loss_sum += floored - measured * np.log(floored)
                        factor = np.float32(2.0) * (np.float32(1.0) - measured / floored)
                for k in range(probe_modes):
                    for m in range(object_modes):
                        waves[j, k, m, y, x] *= factor
        loss[j] = loss_sum
        error[j] = squared_sum
        absolute[j] = absolute_sum


def _gaussian_line_polynomial(a, b, c, has_c, intensities, mask, out):  # pragma: no cover - compiled
    n, probe_modes, object_modes, height, width = a.shape
    for j in numba.prange(n):
        r = np.zeros(5, dtype=np.float64)
        for y in range(height):
            for x in range(width):
                if not mask[y, x]:
                    continue
                q0 = np.float32(0.0)
                q1 = np.float32(0.0)
                q2 = np.float32(0.0)
                q3 = np.float32(0.0)
                q4 = np.float32(0.0)
                for k in range(probe_modes):
                    for m in range(object_modes):
                        va = a[j, k, m, y, x]
                        vb = b[j, k, m, y, x]
                        q0 += va.real * va.real + va.imag * va.imag
                        q1 += np.float32(2.0) * (va.real * vb.real + va.imag * vb.imag)
                        q2 += vb.real * vb.real + vb.imag * vb.imag
                        if has_c:
                            vc = c[j, k, m, y, x]
                            q2 += np.float32(2.0) * (va.real * vc.real + va.imag * vc.imag)
                            q3 += np.float32(2.0) * (vb.real * vc.real + vb.imag * vc.imag)
                            q4 += vc.real * vc.real + vc.imag * vc.imag
                measured = intensities[j, y, x]
                weight = np.float32(1.0) / (measured + np.float32(1.0))
                r[0] = q0 - measured
                r[1] = q1
                r[2] = q2
                r[3] = q3
                r[4] = q4
                for p in range(5):
                    for q in range(5):
                        out[j, p + q] += weight * r[p] * r[q]


_exit_waves = _compile(_exit_waves)
_linear_mix = _compile(_linear_mix)
_fourier_projection = _compile(_fourier_projection)
_difference_map_update = _compile(_difference_map_update)
_object_update_terms = _compile(_object_update_terms)
_probe_update_terms = _compile(_probe_update_terms)
_likelihood_weights = _compile(_likelihood_weights)
_gaussian_line_polynomial = _compile(_gaussian_line_polynomial)


class NumbaKernels(Kernels):
    """Fused replacements for the steps a profile shows memory-bound in NumPy."""

    def exit_waves(self, probe: Any, views: Any) -> Any:
        n, object_modes = views.shape[:2]
        out = np.empty((n, probe.shape[0], object_modes, *probe.shape[1:]), dtype=np.complex64)
        _exit_waves(probe, views, out)
        return out

    def linear_mix(self, overlap: Any, waves: Any, c: float) -> Any:
        out = np.empty_like(waves)
        _linear_mix(np.ascontiguousarray(overlap), np.ascontiguousarray(waves), float(c), out)
        return out

    def fourier_projection(self, waves: Any, intensities: Any, mask: Any, pbound: float | None
                           ) -> tuple[Any, Any]:
        error = np.empty(waves.shape[0], dtype=np.float64)
        absolute = np.empty(waves.shape[0], dtype=np.float64)
        _fourier_projection(waves, intensities, mask, float(pbound or 0.0), pbound is not None, error, absolute)
        return error, absolute

    def difference_map_update(self, waves: Any, projected: Any, overlap: Any, a: float, b: float) -> Any:
        _difference_map_update(waves, np.ascontiguousarray(projected), np.ascontiguousarray(overlap),
                               float(a), float(b))
        return waves

    def object_update_terms(self, probe: Any, waves: Any) -> Any:
        out = np.empty((waves.shape[0], waves.shape[2], *waves.shape[3:]), dtype=np.complex64)
        _object_update_terms(probe, np.ascontiguousarray(waves), out)
        return out

    def probe_update_terms(self, views: Any, waves: Any) -> tuple[Any, Any]:
        numerator = np.empty((waves.shape[1], *waves.shape[3:]), dtype=np.complex64)
        denominator = np.empty(waves.shape[3:], dtype=np.float32)
        _probe_update_terms(np.ascontiguousarray(views), np.ascontiguousarray(waves), numerator, denominator)
        return numerator, denominator

    def likelihood_weights(self, waves: Any, intensities: Any, mask: Any, noise: str) -> tuple[float, Any, Any]:
        n = waves.shape[0]
        loss, error, absolute = (np.empty(n, dtype=np.float64) for _ in range(3))
        _likelihood_weights(waves, intensities, mask, noise == "gaussian", loss, error, absolute)
        return float(loss.sum()), error, absolute

    def line_search_polynomial(self, a: Any, b: Any, c: Any | None, intensities: Any, mask: Any,
                               noise: str) -> np.ndarray:
        if noise != "gaussian":
            return super().line_search_polynomial(a, b, c, intensities, mask, noise)
        per_frame = np.zeros((a.shape[0], 9), dtype=np.float64)
        _gaussian_line_polynomial(a, b, a if c is None else c, c is not None, intensities, mask, per_frame)
        return per_frame.sum(axis=0)
