"""Resolution without ground truth: Fourier ring correlation of two half-scan reconstructions.

The scan's frames are split into two interleaved halves (even and odd frames: each covers the whole field),
each half is reconstructed alone, and the two objects are compared ring by ring in Fourier space on the region
both illuminate, apodised by a Hann window so the crop's edges add no false correlation:

    FRC(k) = Re Σ_ring F₁ F₂* / √(Σ_ring |F₁|² · Σ_ring |F₂|²),

after the second object is given the first's global phase (a constant phase factor is ptychography's
ambiguity, not a difference). The resolution is the period of the ring after the last one where the FRC
(a running mean over three rings, so one noisy ring does not decide) is at or above the ½-bit threshold
T(n) = (0.2071 + 1.9102/√n) / (1.2071 + 0.9102/√n), n the ring's pixel count (van Heel & Schatz 2005, J.
Struct. Biol. 151, 250). The last crossing, not the first: near-field data transfer some low frequencies
weakly, and on the P25 scan the FRC dips below the threshold at 0.04 cycles/pixel and is back at 0.9 by
0.09, far below the resolution. Each half has half the dose, so this is the resolution of half the data: the
usual, conservative reading.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ptybench.engines import Reconstruction
from ptybench.engines.metrics import illuminated_region
from ptybench.engines.validation import frame_corners


@dataclass(frozen=True)
class RingCorrelation:
    """FRC per ring: ``frequency`` in cycles per object pixel (ring centres, up to Nyquist 0.5), ``frc``,
    ``threshold`` (½-bit) and ``pixels`` per ring; ``resolution_pixels``: the period of the ring after the last
    one at or above the threshold (None when that is the last ring: the resolution is Nyquist's 2 pixels or
    finer; infinite when no ring but the zero frequency reaches it: the halves do not agree)."""

    frequency: np.ndarray
    frc: np.ndarray
    threshold: np.ndarray
    pixels: np.ndarray
    resolution_pixels: float | None


def half_bit_threshold(pixels: np.ndarray) -> np.ndarray:
    root = np.sqrt(np.maximum(pixels, 1))
    return (0.2071 + 1.9102 / root) / (1.2071 + 0.9102 / root)


def fourier_ring_correlation(first: np.ndarray, second: np.ndarray) -> RingCorrelation:
    """FRC of two equally shaped 2-D images (complex or real), rings one frequency bin wide."""
    first, second = np.asarray(first, dtype=np.complex128), np.asarray(second, dtype=np.complex128)
    if first.shape != second.shape or first.ndim != 2:
        raise ValueError(f"fourier_ring_correlation: expected two equal 2-D shapes, got {first.shape} and "
                         f"{second.shape}")
    height, width = first.shape
    spectrum_1, spectrum_2 = np.fft.fft2(first), np.fft.fft2(second)
    radius = np.hypot(*np.meshgrid(np.fft.fftfreq(height), np.fft.fftfreq(width), indexing="ij"))
    size = min(height, width)
    ring = np.rint(radius * size).astype(int)
    rings = size // 2 + 1
    inside = ring < rings

    def sums(values: np.ndarray) -> np.ndarray:
        return np.bincount(ring[inside], weights=values[inside], minlength=rings)

    cross = sums(np.real(spectrum_1 * np.conj(spectrum_2)))
    power = np.sqrt(sums(np.abs(spectrum_1) ** 2) * sums(np.abs(spectrum_2) ** 2))
    pixels = np.bincount(ring[inside], minlength=rings)
    frc = np.divide(cross, power, out=np.zeros(rings), where=power > 0)
    threshold = half_bit_threshold(pixels)
    frequency = np.arange(rings) / size
    smoothed = np.convolve(np.pad(frc, 1, mode="edge"), np.ones(3) / 3, mode="valid")
    above = np.flatnonzero((smoothed >= threshold) & (np.arange(rings) > 0))
    if not len(above):
        resolution = math.inf  # the halves agree at no frequency: nothing is resolved
    else:
        resolution = 1.0 / frequency[above[-1] + 1] if above[-1] + 1 < rings else None
    return RingCorrelation(frequency, frc, threshold, pixels, resolution)


def common_region(probe: np.ndarray, positions: list[np.ndarray], object_shape: tuple[int, int]) -> tuple:
    """Row and column slices of the bounding box illuminated by every half."""
    region = np.ones(object_shape, dtype=bool)
    for half in positions:
        region &= illuminated_region(probe, frame_corners(half), object_shape)
    rows, cols = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
    if not len(rows):
        raise ValueError("half scans: no region is illuminated by both halves")
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def compare_halves(first: np.ndarray, second: np.ndarray) -> RingCorrelation:
    """FRC of two objects of one region: the second given the first's global phase, both Hann-windowed."""
    second = second * np.exp(1j * np.angle(np.vdot(second, first)))
    window = np.outer(np.hanning(first.shape[0]), np.hanning(first.shape[1]))
    return fourier_ring_correlation((first - first.mean()) * window, (second - second.mean()) * window)


def half_scan_resolution(arrays: Mapping[str, Any], parameters: Mapping[str, Any]) -> RingCorrelation:
    """Reconstruct the even and the odd frames apart (the seed API's arrays, one ``parameters``) and compare
    the first object modes on the region both halves illuminate."""
    halves, objects = [], []
    for first_frame in (0, 1):
        half = {**arrays, "diffraction_data": np.asarray(arrays["diffraction_data"])[first_frame::2],
                "scan_positions": np.asarray(arrays["scan_positions"])[first_frame::2]}
        result = Reconstruction(**half, parameters=dict(parameters)).run()
        objects.append(result.object[0])
        halves.append(result.positions)  # refined, when the parameters refine them
    rows, cols = common_region(arrays["initial_probe"], halves, objects[0].shape)
    return compare_halves(objects[0][rows, cols], objects[1][rows, cols])
