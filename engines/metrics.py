"""Error metrics of docs/algorithms.md ("Error metrics"), identical in every backend.

err_fmag = Σ_j Σ M (A_j − √I_j)² / (N·ΣM); R-factor = Σ M |A − √I| / Σ M √I; object error against
ground truth on the illuminated region (Σ_j |P_true(r − r_j)|² above 10 % of its maximum), after
removing the global complex factor c = ⟨O, O_true⟩/⟨O, O⟩.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

ILLUMINATED_FRACTION = 0.1


@dataclass
class FourierErrorSums:
    """Partial sums over frames, added block by block and all-reduced over ranks."""

    squared: float = 0.0
    absolute: float = 0.0

    def add(self, squared: Any, absolute: Any) -> None:
        self.squared += float(squared)
        self.absolute += float(absolute)


def illuminated_region(probe: np.ndarray, corners: np.ndarray, object_shape: tuple[int, int],
                       reduce: Any = None) -> np.ndarray:
    """Bool (A, B): where Σ_j Σ_k |P_k(r − r_j)|² exceeds 10 % of its maximum. Under MPI each rank holds
    its own frames: ``reduce`` (the communicator's all-reduce) sums the ranks' illumination first, so every
    rank measures the error on the same, whole region."""
    power = np.sum(np.abs(probe) ** 2, axis=0)
    illumination = np.zeros(object_shape, dtype=np.float64)
    height, width = power.shape
    for row, col in corners:
        illumination[row:row + height, col:col + width] += power
    if reduce is not None:
        illumination = reduce(illumination)
    return illumination > ILLUMINATED_FRACTION * illumination.max()


class ObjectErrorMetric:
    """‖c·O − O_true‖ / ‖O_true‖ on the illuminated region, computed on the backend's device."""

    def __init__(self, backend: Any, true_object: np.ndarray, region: np.ndarray) -> None:
        primary = np.asarray(true_object)[0] if np.ndim(true_object) == 3 else np.asarray(true_object)
        self._xp = backend.xp
        self._region = backend.asarray(region)
        self._truth = backend.asarray(np.where(region, primary, 0).astype(np.complex64))
        self._truth_norm = float(np.linalg.norm(primary[region]))

    def __call__(self, obj: Any) -> float:
        xp = self._xp
        estimate = xp.where(self._region, obj[0], xp.zeros_like(obj[0]))
        overlap = xp.sum(xp.conj(estimate) * self._truth)
        power = xp.sum(xp.real(estimate) ** 2 + xp.imag(estimate) ** 2)
        power = float(power)
        if power == 0.0:
            return 1.0
        factor = complex(overlap) / power
        residual = xp.sum(xp.abs(factor * estimate - self._truth) ** 2)
        return float(np.sqrt(float(residual))) / self._truth_norm


def object_error(estimate: np.ndarray, truth: np.ndarray, region: np.ndarray) -> float:
    """Host NumPy version of the object error, for reports and tests."""
    estimate = np.asarray(estimate)[0] if np.ndim(estimate) == 3 else np.asarray(estimate)
    truth = np.asarray(truth)[0] if np.ndim(truth) == 3 else np.asarray(truth)
    e, t = estimate[region].astype(np.complex128), truth[region].astype(np.complex128)
    power = np.vdot(e, e).real
    factor = np.vdot(e, t) / power if power > 0 else 0.0
    return float(np.linalg.norm(factor * e - t) / np.linalg.norm(t))
