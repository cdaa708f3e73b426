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
#: LLVM may reassociate sums, use reciprocals and fuse multiply-adds (so pixel loops vectorise), but not
#: assume values are finite: a NaN must still reach the engines' divergence check.
_FAST_MATH = {"contract", "arcp", "reassoc", "nsz", "afn"}


def _renamed(function, suffix: str):
    """The same code under another qualified name. numba's on-disk cache is keyed by qualified name,
    line and signature, not by ``parallel``: without this the serial and parallel variants share one
    cache entry, and whichever was compiled first is loaded for both (a parallel kernel that runs on
    one thread)."""
    copy = types.FunctionType(function.__code__, function.__globals__, function.__name__ + suffix,
                              function.__defaults__, function.__closure__)
    copy.__qualname__ = function.__qualname__ + suffix
    return copy


def _compile(function, parallel_min_size: int = PARALLEL_MIN_SIZE):
    """A kernel compiled twice: in parallel (prange over frames or rows) and serially. Division follows
    IEEE (``error_model="numpy"``): a blow-up becomes NaN/Inf, which the engines' divergence check
    reports with engine and iteration, not a ZeroDivisionError from inside a kernel."""
    parallel = numba.njit(parallel=True, cache=True, nogil=True, error_model="numpy",
                          fastmath=_FAST_MATH)(_renamed(function, "_parallel"))
    serial = numba.njit(parallel=False, cache=True, nogil=True, error_model="numpy",
                        fastmath=_FAST_MATH)(_renamed(function, "_serial"))

    def dispatch(*args):
        size = max(getattr(arg, "size", 0) for arg in args)
        return (parallel if size >= parallel_min_size else serial)(*args)

    dispatch.__name__ = dispatch.__qualname__ = function.__name__
    dispatch.__doc__ = function.__doc__
    return dispatch


def _exit_waves(probe, views, out):  # pragma: no cover - compiled
    n, probe_modes, object_modes, height, width = out.shape
    for j in numba.prange(n):
        for k in range(probe_modes):
            for m in range(object_modes):
                for y in range(height):
                    for x in range(width):
                        out[j, k, m, y, x] = probe[k, y, x] * views[j, m, y, x]


def _frame_exit_waves(probe, view, old_view, waves, detector):  # pragma: no cover - compiled
    """Kernels.frame_exit_waves in one pass, rows in parallel."""
    probe_modes = probe.shape[0]
    object_modes, height, width = view.shape
    for y in numba.prange(height):
        for m in range(object_modes):
            source, copy = view[m, y], old_view[m, y]
            for x in range(width):
                copy[x] = source[x]
            for k in range(probe_modes):
                factor, wave, far = probe[k, y], waves[0, k, m, y], detector[0, k, m, y]
                for x in range(width):
                    value = factor[x] * copy[x]
                    wave[x] = value
                    far[x] = value


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
        # Row-wise passes with no branch or mode loop inside the pixel loop, so LLVM vectorises them
        # (sqrt and division dominate; scalar, they made a 128² frame slower than NumPy's).
        amplitude = np.empty((height, width), dtype=np.float32)
        root = np.empty((height, width), dtype=np.float32)
        squared_sum = 0.0
        absolute_sum = 0.0
        for y in range(height):
            _modes_power_row(waves, j, y, amplitude[y])
            for x in range(width):
                a = np.sqrt(amplitude[y, x])
                r = np.sqrt(intensities[j, y, x])
                amplitude[y, x] = a
                root[y, x] = r
                d = a - r if mask[y, x] else np.float32(0.0)
                squared_sum += d * d
                absolute_sum += abs(d)
        error[j] = squared_sum
        absolute[j] = absolute_sum
        renorm = np.float32(0.0)  # 0: the target is √I; with a bound, frames within it keep A (renorm 1)
        if use_bound:
            renorm = np.float32(np.sqrt(pbound / max(squared_sum / valid, pbound)))
        for y in range(height):
            factor = amplitude[y]
            for x in range(width):
                a = factor[x]
                target = root[y, x] + renorm * (a - root[y, x])
                factor[x] = target / (a + np.float32(AMPLITUDE_EPSILON)) if mask[y, x] else np.float32(1.0)
            for k in range(probe_modes):
                for m in range(object_modes):
                    for x in range(width):
                        waves[j, k, m, y, x] *= factor[x]


@numba.njit(inline="always", cache=True, fastmath=_FAST_MATH)
def _modes_power_row(waves, j, y, out):  # pragma: no cover - compiled
    """out[x] = Σ_kl |Ψ_jkl(y, x)|²: one row of the model intensity, modes outside the pixel loop."""
    out[:] = 0.0
    for k in range(waves.shape[1]):
        for m in range(waves.shape[2]):
            for x in range(out.shape[0]):
                value = waves[j, k, m, y, x]
                out[x] += value.real * value.real + value.imag * value.imag


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
        # Frames outside, pixels inside: each frame's row is read contiguously (a pixel-outer loop
        # strode across frames, 128 KB apart at 128², and took 0.06 s of DM's 0.27 s iteration).
        power = np.zeros(width, dtype=np.float32)
        total = np.zeros((probe_modes, width), dtype=np.complex64)
        for j in range(n):
            for m in range(object_modes):
                for x in range(width):
                    value = views[j, m, y, x]
                    power[x] += value.real * value.real + value.imag * value.imag
                for k in range(probe_modes):
                    for x in range(width):
                        total[k, x] += np.conj(views[j, m, y, x]) * waves[j, k, m, y, x]
        denominator[y, :] = power
        for k in range(probe_modes):
            numerator[k, y, :] = total[k]


def _likelihood_weights(waves, intensities, mask, gaussian, loss, error, absolute):  # pragma: no cover
    n, probe_modes, object_modes, height, width = waves.shape
    for j in numba.prange(n):
        factor = np.empty(width, dtype=np.float32)   # one row; the pixel loops vectorise (no mode loop inside)
        loss_sum = 0.0
        squared_sum = 0.0
        absolute_sum = 0.0
        for y in range(height):
            _modes_power_row(waves, j, y, factor)
            for x in range(width):
                model = factor[x]
                measured = intensities[j, y, x]
                difference = np.sqrt(model) - np.sqrt(measured)
                if gaussian:
                    weight = np.float32(1.0) / (measured + np.float32(1.0))
                    residual = model - measured
                    term = weight * residual * residual
                    derivative = np.float32(4.0) * weight * residual
                else:
                    floored = max(model, np.float32(POISSON_FLOOR))
                    term = floored - measured * np.log(floored)
                    derivative = np.float32(2.0) * (np.float32(1.0) - measured / floored)
                if mask[y, x]:
                    squared_sum += difference * difference
                    absolute_sum += abs(difference)
                    loss_sum += term
                    factor[x] = derivative
                else:
                    factor[x] = np.float32(0.0)
            for k in range(probe_modes):
                for m in range(object_modes):
                    for x in range(width):
                        waves[j, k, m, y, x] *= factor[x]
        loss[j] = loss_sum
        error[j] = squared_sum
        absolute[j] = absolute_sum


def _gaussian_line_polynomial(a, b, c, has_c, intensities, mask, out):  # pragma: no cover - compiled
    n, probe_modes, object_modes, height, width = a.shape
    for j in numba.prange(n):
        # q0..q4 of a row first (modes outside the pixel loop), then the nine coefficients of
        # Σ w (Σ_i r_i tⁱ)² in registers: the loop over pixels vectorises.
        q = np.zeros((5, width), dtype=np.float32)
        c0 = c1 = c2 = c3 = c4 = c5 = c6 = c7 = c8 = 0.0
        for y in range(height):
            q[:] = 0.0
            for k in range(probe_modes):
                for m in range(object_modes):
                    for x in range(width):
                        va = a[j, k, m, y, x]
                        vb = b[j, k, m, y, x]
                        q[0, x] += va.real * va.real + va.imag * va.imag
                        q[1, x] += np.float32(2.0) * (va.real * vb.real + va.imag * vb.imag)
                        q[2, x] += vb.real * vb.real + vb.imag * vb.imag
                    if has_c:
                        for x in range(width):
                            va = a[j, k, m, y, x]
                            vb = b[j, k, m, y, x]
                            vc = c[j, k, m, y, x]
                            q[2, x] += np.float32(2.0) * (va.real * vc.real + va.imag * vc.imag)
                            q[3, x] += np.float32(2.0) * (vb.real * vc.real + vb.imag * vc.imag)
                            q[4, x] += vc.real * vc.real + vc.imag * vc.imag
            for x in range(width):
                if mask[y, x]:
                    measured = intensities[j, y, x]
                    w = 1.0 / (np.float64(measured) + 1.0)
                    r0 = np.float64(q[0, x]) - measured
                    r1 = np.float64(q[1, x])
                    r2 = np.float64(q[2, x])
                    r3 = np.float64(q[3, x])
                    r4 = np.float64(q[4, x])
                    c0 += w * r0 * r0
                    c1 += 2.0 * w * r0 * r1
                    c2 += w * (2.0 * r0 * r2 + r1 * r1)
                    c3 += 2.0 * w * (r0 * r3 + r1 * r2)
                    c4 += w * (2.0 * (r0 * r4 + r1 * r3) + r2 * r2)
                    c5 += 2.0 * w * (r1 * r4 + r2 * r3)
                    c6 += w * (2.0 * r2 * r4 + r3 * r3)
                    c7 += 2.0 * w * r3 * r4
                    c8 += w * r4 * r4
        out[j, 0] = c0
        out[j, 1] = c1
        out[j, 2] = c2
        out[j, 3] = c3
        out[j, 4] = c4
        out[j, 5] = c5
        out[j, 6] = c6
        out[j, 7] = c7
        out[j, 8] = c8


def _pie_update(view, old_view, probe, projected, waves, alpha, beta, rpie_alpha, new_probe, scales, steps,
                row_max):  # pragma: no cover - compiled
    """One frame's ePIE (rpie_alpha < 0) / rPIE step, Δ formed on the fly; beta < 0: probe fixed. Rows in
    parallel, in two passes (powers and their row maxima, then the steps); ``scales`` (2, Y, X) float32,
    ``steps`` (Y, X) complex64 and ``row_max`` (2, Y) float32 are scratch, so no pass allocates and no
    array expression becomes a parallel region of its own (which had made a parallel build 3× slower)."""
    probe_modes, object_modes, height, width = waves.shape
    object_scale, probe_scale = scales[0], scales[1]   # powers first, then α / w_O and β / w_P per pixel
    for y in numba.prange(height):
        _power_row(probe, y, object_scale[y])
        _power_row(old_view, y, probe_scale[y])
        largest_probe = largest_object = np.float32(0.0)
        for x in range(width):
            largest_probe = max(largest_probe, object_scale[y, x])
            largest_object = max(largest_object, probe_scale[y, x])
        row_max[0, y], row_max[1, y] = largest_probe, largest_object
    probe_max = object_max = np.float32(0.0)
    for y in range(height):
        probe_max, object_max = max(probe_max, row_max[0, y]), max(object_max, row_max[1, y])
    a = np.float32(max(rpie_alpha, 0.0))
    keep, alpha, beta = np.float32(1.0) - a, np.float32(alpha), np.float32(beta)
    for y in numba.prange(height):
        o_scale, p_scale, step = object_scale[y], probe_scale[y], steps[y]
        if rpie_alpha < 0.0:
            for x in range(width):
                o_scale[x] = alpha / probe_max
                p_scale[x] = beta / object_max
        else:
            for x in range(width):
                o_scale[x] = alpha / (keep * o_scale[x] + a * probe_max)
                p_scale[x] = beta / (keep * p_scale[x] + a * object_max)
        for m in range(object_modes):
            for x in range(width):
                step[x] = 0.0
            for k in range(probe_modes):
                for x in range(width):
                    step[x] += np.conj(probe[k, y, x]) * (projected[k, m, y, x] - waves[k, m, y, x])
            for x in range(width):
                view[m, y, x] += o_scale[x] * step[x]
        if beta >= 0.0:
            for k in range(probe_modes):
                for x in range(width):
                    step[x] = 0.0
                for m in range(object_modes):
                    for x in range(width):
                        step[x] += np.conj(old_view[m, y, x]) * (projected[k, m, y, x] - waves[k, m, y, x])
                for x in range(width):
                    new_probe[k, y, x] = probe[k, y, x] + p_scale[x] * step[x]


@numba.njit(inline="always", cache=True, fastmath=_FAST_MATH)
def _power_row(array, y, out):  # pragma: no cover - compiled
    """out[x] = Σ_i |a_i(y, x)|² over the leading (mode) axis."""
    out[:] = 0.0
    for i in range(array.shape[0]):
        for x in range(out.shape[0]):
            value = array[i, y, x]
            out[x] += value.real * value.real + value.imag * value.imag


def _gather_views(obj, rows, cols, out):  # pragma: no cover - compiled
    n, n_modes, height, width = out.shape
    for j in numba.prange(n):
        for m in range(n_modes):
            for y in range(height):
                out[j, m, y, :] = obj[m, rows[j] + y, cols[j]:cols[j] + width]


def _exit_waves_at(probe, obj, rows, cols, out):  # pragma: no cover - compiled
    """out[j, k, m] = P_k · O_m over frame j's window, read from the object (no gathered copy)."""
    n, probe_modes, object_modes, height, width = out.shape
    for j in numba.prange(n):
        for k in range(probe_modes):
            for m in range(object_modes):
                for y in range(height):
                    # Row slices: indexing the object by rows[j] + y, cols[j] + x inside the pixel loop
                    # made LLVM check each index for wraparound and not vectorise (3x slower).
                    source, factor, target = obj[m, rows[j] + y, cols[j]:cols[j] + width], probe[k, y], out[j, k, m, y]
                    for x in range(width):
                        target[x] = factor[x] * source[x]


def _mixed_waves_at(probe, obj, rows, cols, waves, c, a, b, out):  # pragma: no cover - compiled
    """out = c·P_k·O_m,j + (1 − c)·ψ, DM/RAAR's Fourier-projection input, and ψ ← (1 − a − b)·ψ + a·P·O_j in
    place: the update's terms that do not need Π_M, while P·O_j (read from the object) is at hand."""
    n, probe_modes, object_modes, height, width = out.shape
    own, other = np.float32(c), np.float32(1.0 - c)
    keep, a = np.float32(1.0 - a - b), np.float32(a)
    for j in numba.prange(n):
        for k in range(probe_modes):
            for m in range(object_modes):
                for y in range(height):
                    source, factor = obj[m, rows[j] + y, cols[j]:cols[j] + width], probe[k, y]
                    wave, target = waves[j, k, m, y], out[j, k, m, y]
                    for x in range(width):
                        overlap, value = factor[x] * source[x], wave[x]
                        target[x] = own * overlap + other * value
                        wave[x] = keep * value + a * overlap


def _add_projected(waves, projected, b):  # pragma: no cover - compiled
    """ψ += b·Π_M: what is left of the DM/RAAR update after ``_mixed_waves_at``."""
    flat_waves, flat_projected = waves.reshape(-1), projected.reshape(-1)
    b = np.float32(b)
    for i in numba.prange(flat_waves.size):
        flat_waves[i] += b * flat_projected[i]


def _probe_update_terms_at(obj, rows, cols, waves, numerator, denominator):  # pragma: no cover - compiled
    n, probe_modes, object_modes, height, width = waves.shape
    for y in numba.prange(height):  # rows in parallel, frames summed in order: deterministic
        power = np.zeros(width, dtype=np.float32)
        total = np.zeros((probe_modes, width), dtype=np.complex64)
        for j in range(n):
            for m in range(object_modes):
                view = obj[m, rows[j] + y, cols[j]:cols[j] + width]
                for x in range(width):
                    value = view[x]
                    power[x] += value.real * value.real + value.imag * value.imag
                for k in range(probe_modes):
                    row, wave = total[k], waves[j, k, m, y]
                    for x in range(width):
                        row[x] += np.conj(view[x]) * wave[x]
        denominator[y, :] = power
        for k in range(probe_modes):
            numerator[k, y, :] = total[k]


def _add_object_terms(target, rows, cols, probe, waves):  # pragma: no cover - compiled
    """target[m, r_j + y, c_j + x] += Σ_k P_k*(y, x) ψ_jkm(y, x), threads owning target rows."""
    n_modes, target_height, _ = target.shape
    probe_modes, height, width = waves.shape[1], waves.shape[3], waves.shape[4]
    for index in numba.prange(n_modes * target_height):
        m, r = index // target_height, index % target_height
        for j in range(rows.shape[0]):
            y = r - rows[j]
            if 0 <= y < height:
                row = target[m, r, cols[j]:cols[j] + width]
                factor, wave = probe[0, y], waves[j, 0, m, y]
                for x in range(width):  # the frame's patch value first, as the unfused steps add it
                    value = np.conj(factor[x]) * wave[x]
                    for k in range(1, probe_modes):
                        value += np.conj(probe[k, y, x]) * waves[j, k, m, y, x]
                    row[x] += value


def _scatter_add_views(target, rows, cols, patches):  # pragma: no cover - compiled
    """target[m, r_j + y, c_j + x] += patches[j, m, y, x]. Each thread owns rows of the target and adds
    every frame's patch row that lands there, in frame order: no write conflicts, same sum every run."""
    n_modes, target_height, _ = target.shape
    patch_modes, height, width = patches.shape[1:]
    for index in numba.prange(n_modes * target_height):
        m, r = index // target_height, index % target_height
        source_mode = m if patch_modes > 1 else 0
        for j in range(rows.shape[0]):
            y = r - rows[j]
            if 0 <= y < height:
                row, patch = target[m, r, cols[j]:cols[j] + width], patches[j, source_mode, y]
                for x in range(width):
                    row[x] += patch[x]


_exit_waves = _compile(_exit_waves)
_linear_mix = _compile(_linear_mix)
_fourier_projection = _compile(_fourier_projection)
_difference_map_update = _compile(_difference_map_update)
_object_update_terms = _compile(_object_update_terms)
_probe_update_terms = _compile(_probe_update_terms)
_likelihood_weights = _compile(_likelihood_weights)
_gaussian_line_polynomial = _compile(_gaussian_line_polynomial)
# One frame's rows in parallel from 128² frames up (in-cache, 2 threads: 38 vs 53 µs at 128², 117 vs 203 µs at
# 256²; equal at 64²).
_pie_update = _compile(_pie_update, parallel_min_size=1 << 13)
_frame_exit_waves = _compile(_frame_exit_waves, parallel_min_size=1 << 13)  # and its start, in the same threads
_scatter_add_views = _compile(_scatter_add_views)
_gather_views = _compile(_gather_views)
_exit_waves_at = _compile(_exit_waves_at)
_probe_update_terms_at = _compile(_probe_update_terms_at)
_mixed_waves_at = _compile(_mixed_waves_at)
_add_projected = _compile(_add_projected)
_add_object_terms = _compile(_add_object_terms)


def gather_views(obj: np.ndarray, rows: np.ndarray, cols: np.ndarray, frame_shape: tuple[int, int]) -> np.ndarray:
    """The NumPy backend's gather: (n, M_o, Y, X) copies of the object's windows, frames in parallel
    (NumPy's fancy indexing of a sliding-window view was 2x slower)."""
    out = np.empty((len(rows), obj.shape[0], *frame_shape), dtype=obj.dtype)
    _gather_views(obj, np.ascontiguousarray(rows, dtype=np.intp), np.ascontiguousarray(cols, dtype=np.intp), out)
    return out


def _indices(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.intp)


def overlap_waves(probe: np.ndarray, obj: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                  out: np.ndarray | None = None) -> np.ndarray:
    """Backend.overlap_waves in one pass: the exit waves read straight from the object's windows."""
    if out is None:
        out = np.empty((len(rows), probe.shape[0], obj.shape[0], *probe.shape[1:]), dtype=np.complex64)
    _exit_waves_at(probe, obj, _indices(rows), _indices(cols), out)
    return out


def mixed_overlap_waves(probe: np.ndarray, obj: np.ndarray, rows: np.ndarray, cols: np.ndarray, waves: np.ndarray,
                        c: float, a: float, b: float, out: np.ndarray) -> np.ndarray:
    """Backend.mixed_overlap_waves in one pass: the mix into ``out`` and, in place, ψ ← (1 − a − b)·ψ + a·P·O_j
    (no overlap buffer written and read back; ``difference_map_update_at`` adds b·Π_M)."""
    _mixed_waves_at(probe, obj, _indices(rows), _indices(cols), waves, float(c), float(a), float(b), out)
    return out


def difference_map_update_at(waves: np.ndarray, projected: np.ndarray, b: float) -> np.ndarray:
    """Backend.difference_map_update_at after ``mixed_overlap_waves``: ψ += b·Π_M, in place."""
    _add_projected(waves, np.ascontiguousarray(projected), float(b))
    return waves


def probe_update_terms_at(obj: np.ndarray, rows: np.ndarray, cols: np.ndarray, waves: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Backend.probe_update_terms_at in one pass (no gathered copy of the views)."""
    numerator = np.empty((waves.shape[1], *waves.shape[3:]), dtype=np.complex64)
    denominator = np.empty(waves.shape[3:], dtype=np.float32)
    _probe_update_terms_at(obj, _indices(rows), _indices(cols), np.ascontiguousarray(waves), numerator, denominator)
    return numerator, denominator


def add_object_terms(target: np.ndarray, rows: np.ndarray, cols: np.ndarray, probe: np.ndarray,
                     waves: np.ndarray) -> None:
    """Backend.add_object_terms in one pass (no per-frame patches written and read back)."""
    _add_object_terms(target, _indices(rows), _indices(cols), probe, np.ascontiguousarray(waves))


def scatter_add_views(target: np.ndarray, rows: np.ndarray, cols: np.ndarray, patches: np.ndarray) -> None:
    """The NumPy backend's scatter-add: compiled, parallel over target rows (patches (n, M or 1, Y, X))."""
    if patches.ndim == 3:
        patches = patches[:, None]
    # patches may be a broadcast view (one probe power for every frame): read through its strides.
    _scatter_add_views(target, np.ascontiguousarray(rows, dtype=np.intp), np.ascontiguousarray(cols, dtype=np.intp),
                       patches)


class NumbaKernels(Kernels):
    """Fused replacements for the steps a profile shows memory-bound in NumPy."""

    def __init__(self, xp: Any) -> None:
        super().__init__(xp)
        self._pie_scratch: dict[tuple[int, ...], tuple[np.ndarray, ...]] = {}

    def exit_waves(self, probe: Any, views: Any) -> Any:
        n, object_modes = views.shape[:2]
        out = np.empty((n, probe.shape[0], object_modes, *probe.shape[1:]), dtype=np.complex64)
        _exit_waves(probe, views, out)
        return out

    def frame_exit_waves(self, probe: Any, view: Any) -> tuple[Any, Any, Any]:
        old_view = np.empty(view.shape, dtype=np.complex64)
        waves = np.empty((1, probe.shape[0], *view.shape), dtype=np.complex64)
        detector = np.empty_like(waves)
        _frame_exit_waves(probe, view, old_view, waves, detector)
        return old_view, waves, detector

    def linear_mix(self, overlap: Any, waves: Any, c: float, out: Any = None) -> Any:
        out = np.empty_like(waves) if out is None else out
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

    def pie_update(self, view: Any, old_view: Any, probe: Any, projected: Any, waves: Any, alpha: float,
                   beta: float | None, rpie_alpha: float | None) -> Any:
        new_probe = np.empty_like(probe) if beta is not None else probe
        scratch = self._pie_scratch.get(waves.shape[-2:])
        if scratch is None:  # allocated once per frame shape: one frame's step runs thousands of times
            height, width = waves.shape[-2:]
            scratch = self._pie_scratch[waves.shape[-2:]] = (np.empty((2, height, width), np.float32),
                                                             np.empty((height, width), np.complex64),
                                                             np.empty((2, height), np.float32))
        _pie_update(view, old_view, probe, projected, waves, float(alpha), -1.0 if beta is None else float(beta),
                    -1.0 if rpie_alpha is None else float(rpie_alpha), new_probe, *scratch)
        return new_probe if beta is not None else None

    def line_search_polynomial(self, a: Any, b: Any, c: Any | None, intensities: Any, mask: Any,
                               noise: str) -> np.ndarray:
        if noise != "gaussian":
            return super().line_search_polynomial(a, b, c, intensities, mask, noise)
        per_frame = np.zeros((a.shape[0], 9), dtype=np.float64)
        _gaussian_line_polynomial(a, b, a if c is None else c, c is not None, intensities, mask, per_frame)
        return per_frame.sum(axis=0)
