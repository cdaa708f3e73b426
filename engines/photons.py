"""Photon statistics of the measured data: the count scale and the Poisson noise floor.

Every constant in the engines that assumes a flux (the power bound, ML's noise weights, floors and
regulariser scale) is stated in photons. Data that are not counts (scaled, normalised, converted
to float) are brought to photons once, at load, by a photons-per-unit factor c: detected from the
data's count quantum, stated by the user, or 1 for integer data. The engines then see the same
numbers whatever scale the data came in (docs/algorithms.md, "Photon scale").
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: Values whose ratio to the quantum is within this of an integer count as quantised.
QUANTUM_TOLERANCE = 0.02
#: Fraction of sampled values that must be quantised for a quantum to be accepted.
QUANTUM_AGREEMENT = 0.99
#: Only values up to this many quanta are checked (float32 rounding grows with the count) ...
QUANTUM_CHECK_COUNTS = 100_000
#: ... and they must be this share of the positive values, so a stray tiny value proves nothing.
QUANTUM_MIN_SHARE = 0.1
#: The smallest value tried as one photon is min / m for m up to this (data with no 1-photon pixel).
QUANTUM_DIVISORS = 16
#: Values sampled for the quantum (a strided subset of the frames keeps it cheap on big data).
QUANTUM_SAMPLE = 200_000

#: Counts below this go through a histogram; the few above are evaluated one by one, so memory scales with the
#: number of pixels and never with the largest value (one saturated pixel at 2³² − 1 once asked for 32 GiB).
HISTOGRAM_COUNTS = 2**16

#: e(λ) is tabulated on this log grid; above it e(λ) = 1/4 + 7/(64λ), below it e(λ) = 2λ(1 − √λ).
_TABLE_LOG10 = np.linspace(-4.0, 4.0, 801)


@dataclass(frozen=True)
class PhotonScale:
    """Photons per data unit and where the number came from: counts, estimated, stated or assumed."""

    photons_per_unit: float
    source: str

    @property
    def quantised(self) -> bool:
        """Photon values are integers (counts, or scaled counts whose quantum was found)."""
        return self.source in ("counts", "estimated")

    def describe(self) -> str:
        return f"{self.photons_per_unit:.6g} photons per unit ({self.source})"


def _expected_sqrt_poisson(lam: float) -> float:
    """E[√K] for K ~ Poisson(λ), by summing the mass function far into the tail."""
    top = int(lam + 20.0 * np.sqrt(lam) + 40)
    k = np.arange(top + 1, dtype=np.float64)
    # The Poisson mass in log form, log k! as a running sum of log j. The table agrees with scipy.special's
    # gammaln form to 2e-5 relative (the floor is a difference of numbers ~λ), far inside what the floor is
    # used for, and scipy.special would cost every measuring child 0.2 s of imports.
    log_factorial = np.concatenate(([0.0], np.cumsum(np.log(k[1:]))))
    mass = np.exp(k * np.log(lam) - lam - log_factorial)
    return float(np.sum(np.sqrt(k) * mass))


@lru_cache(maxsize=1)
def _noise_floor_table() -> np.ndarray:
    lam = 10.0**_TABLE_LOG10
    return np.array([2.0 * x - 2.0 * np.sqrt(x) * _expected_sqrt_poisson(x) for x in lam])


def poisson_noise_floor(lam: np.ndarray | float) -> np.ndarray:
    """e(λ) = E[(√λ − √K)²], K ~ Poisson(λ): the expected squared amplitude error of a perfect model.

    e ≈ 2λ for λ ≪ 1, peaks at ≈ 0.45 near λ = 1 and tends to 1/4 at high counts, so a constant 1/4
    is the noise floor of bright data only.
    """
    lam = np.asarray(lam, dtype=np.float64)
    table = _noise_floor_table()
    safe = np.maximum(lam, 1e-300)
    inside = np.interp(np.log10(safe), _TABLE_LOG10, table)
    low = 2.0 * lam * (1.0 - np.sqrt(np.maximum(lam, 0.0)))
    high = 0.25 + 7.0 / (64.0 * safe)
    return np.where(lam < 10.0**_TABLE_LOG10[0], low, np.where(lam > 10.0**_TABLE_LOG10[-1], high, inside))


def noise_floor_sum(photons: np.ndarray, quantised: bool) -> float:
    """Σ e(k) over the given photon counts (masked pixels are zero and add nothing: e(0) = 0).

    Quantised data (counts) go through a histogram of integer counts, so e is evaluated once per
    distinct count: ~50× faster than evaluating it per pixel, which matters at 10⁹ pixels.
    """
    if not quantised:
        return float(np.sum(poisson_noise_floor(photons)))
    counts = np.rint(photons).astype(np.int64).ravel()
    low = counts < HISTOGRAM_COUNTS
    histogram = np.bincount(counts[low])
    present = np.flatnonzero(histogram)
    high = counts[~low]
    return float(histogram[present] @ poisson_noise_floor(present)) + float(np.sum(poisson_noise_floor(high)))


def count_quantum(values: np.ndarray) -> float | None:
    """The data unit of one photon, when the positive values are integer multiples of one number.

    Scaled counts s·k are quantised in s; the smallest value is a small multiple of s (k = 1 in
    photon-starved data), so s = min / m for the smallest m that makes the values integer multiples.
    None when no such quantum exists (data processed beyond a scale: background-subtracted, resampled).
    """
    flat = np.asarray(values).reshape(-1)  # a view: no copy of the data
    if flat.size > QUANTUM_SAMPLE:
        flat = flat[:: flat.size // QUANTUM_SAMPLE + 1]
    flat = flat.astype(np.float64)
    positive = flat[flat > 0]
    if positive.size == 0:
        return None
    smallest = float(positive.min())
    for divisor in range(1, QUANTUM_DIVISORS + 1):
        quantum = smallest / divisor
        ratio = positive[positive <= QUANTUM_CHECK_COUNTS * quantum] / quantum
        if ratio.size < QUANTUM_MIN_SHARE * positive.size:
            continue
        if np.mean(np.abs(ratio - np.rint(ratio)) <= QUANTUM_TOLERANCE) >= QUANTUM_AGREEMENT:
            return quantum
    return None


def photon_scale(values: np.ndarray, is_integer: bool, stated: float | None) -> PhotonScale:
    """Photons per data unit: the user's number, 1 for integer data, else the count quantum.

    Float data with no detectable quantum are taken as photon counts (source "assumed"): the caller
    should warn, since every flux constant then rests on that assumption.
    """
    if stated is not None:
        return PhotonScale(float(stated), "stated")
    if is_integer:
        return PhotonScale(1.0, "counts")
    quantum = count_quantum(values)
    if quantum is None:
        return PhotonScale(1.0, "assumed")
    return PhotonScale(1.0 / quantum, "estimated")
