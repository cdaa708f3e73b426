"""Mixed-state probes: orthogonal modes, and extra modes started from one measured probe.

Partial coherence is modelled as incoherent probe modes P_k (Thibault & Menzel 2013). The modes are only
defined up to a unitary mixing, so after each iteration they are made orthogonal and sorted by power:
with the Gram matrix G = P Pᴴ = V Λ Vᴴ (P as an M × pixels matrix), P' = Vᴴ P has P' P'ᴴ = Λ. The
measured intensity Σ_k |D(P_k O)|² is unchanged by the mixing, so the data fit is too; engines that keep
per-mode exit waves (DM, RAAR) mix them with the same matrix.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Power of each extra starting mode, as a fraction of the first mode's.
EXTRA_MODE_POWER = 0.05


def orthogonalising_matrix(probe: Any, xp: Any, to_numpy: Any) -> np.ndarray | None:
    """U (M × M, complex128, host) with U·P orthogonal modes sorted by power; None for one mode or when the
    modes are already orthogonal and sorted (nothing to do)."""
    modes = probe.shape[0]
    if modes < 2:
        return None
    flat = xp.reshape(probe, (modes, -1))
    gram = to_numpy(xp.matmul(xp.conj(flat), xp.moveaxis(flat, 0, 1))).astype(np.complex128)
    # gram[k, q] = Σ conj(P_k) P_q; eigh of its conjugate, G = P Pᴴ
    values, vectors = np.linalg.eigh(np.conj(gram))
    order = np.argsort(values)[::-1]
    matrix = np.conj(vectors[:, order]).T
    # eigh's eigenvectors have arbitrary phases: choose each so U[i, i] is real and ≥ 0, the smallest mixing
    # (no phase jump of a mode per iteration, and backends that differ by rounding mix alike)
    diagonal = np.diag(matrix)
    matrix = matrix * np.where(np.abs(diagonal) > 0, np.conj(diagonal) / np.maximum(np.abs(diagonal), 1e-300),
                               1.0)[:, None]
    powers = np.diag(gram).real
    off_diagonal = np.abs(gram - np.diag(powers)).max()
    if off_diagonal <= 1e-6 * powers.max() and np.all(np.diff(powers) <= 1e-6 * powers.max()):
        return None
    return matrix


def mix_modes(array: Any, matrix: np.ndarray, axis: int, xp: Any, asarray: Any) -> Any:
    """Σ_q U[k, q] · array[..., q, ...] along ``axis``: the same unitary mixing for probes and exit waves."""
    mixed = xp.matmul(xp.moveaxis(array, axis, -1), asarray(matrix.T.astype(np.complex64)))
    return xp.moveaxis(mixed, -1, axis)


def expand_modes(probe: np.ndarray, modes: int, power: float = EXTRA_MODE_POWER) -> np.ndarray:
    """A probe of ``modes`` modes from its first: extra modes are the first times low-order Hermite functions
    of the beam's own width (x, y, xy, x² − y², ...), each with ``power`` of the first mode's power, made
    orthogonal. Copies of the first mode would be degenerate (orthogonalising them leaves zeros)."""
    probe = np.asarray(probe, dtype=np.complex64)
    first = probe[0] if probe.ndim == 3 else probe
    if modes <= (probe.shape[0] if probe.ndim == 3 else 1):
        return probe[:modes] if probe.ndim == 3 else first[None]
    height, width = first.shape
    weight = np.abs(first) ** 2
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    total = weight.sum()
    centre = (np.sum(rows * weight) / total, np.sum(cols * weight) / total)
    spread = np.sqrt(np.sum(((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) * weight) / total) or 1.0
    y, x = (rows - centre[0]) / spread, (cols - centre[1]) / spread
    shapes = [x, y, x * y, x**2 - y**2, 2 * x**2 + 2 * y**2 - 2, x * (x**2 - 3 * y**2), y * (3 * x**2 - y**2)]
    result = [first.astype(np.complex128)]
    existing = probe[1:] if probe.ndim == 3 else []
    result += [np.asarray(m, dtype=np.complex128) for m in existing]
    power_first = np.sum(np.abs(first) ** 2)
    for shape in shapes:
        if len(result) >= modes:
            break
        candidate = first * shape
        for mode in result:  # Gram-Schmidt against what is there
            candidate = candidate - np.vdot(mode, candidate) / np.vdot(mode, mode) * mode
        norm = np.sum(np.abs(candidate) ** 2)
        if norm > 0:
            result.append(candidate * np.sqrt(power * power_first / norm))
    while len(result) < modes:  # more modes than shapes: weak random modes
        rng = np.random.default_rng(len(result))
        candidate = first * (rng.standard_normal(first.shape) + 1j * rng.standard_normal(first.shape))
        for mode in result:
            candidate = candidate - np.vdot(mode, candidate) / np.vdot(mode, mode) * mode
        result.append(candidate * np.sqrt(power * power_first / np.sum(np.abs(candidate) ** 2)))
    return np.stack(result).astype(np.complex64)
