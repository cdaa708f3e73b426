"""Procedural ground truth: a complex object with structure at several scales and realistic probes.

Everything is seeded and computed, no downloads. Random streams are separated by tag
(object, probe, mask, frames), so changing the number of frames never changes the object.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft
import scipy.ndimage

from ptybench.engines.backends.numpy_backend import NumpyBackend
from ptybench.engines.propagation import NearFieldPropagator

OBJECT_STREAM, PROBE_STREAM, MASK_STREAM, FRAME_STREAM, SCAN_STREAM, GUESS_STREAM = range(1, 7)
#: Radius of the far-field pupil in cycles per pixel: the bright-field disc covers half the detector.
PUPIL_RADIUS = 0.25
#: Relative power of successive probe modes (partial coherence), before normalisation.
MODE_POWERS = (1.0, 0.3, 0.12, 0.05, 0.02)
#: Width (pixels) of the Gaussian whose low-pass is removed from the object phase.
PHASE_HIGHPASS_PX = 10.0


def stream(seed: int, tag: int, *more: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), tag, *more])


def multiscale_noise(rng: np.random.Generator, shape: tuple[int, int],
                     scales: tuple[float, ...]) -> np.ndarray:
    """White noise filtered by a sum of Gaussians of the given widths (pixels), scaled to [0, 1]."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    spectrum = scipy.fft.rfft2(noise, workers=-1)
    fy = np.fft.fftfreq(shape[0]).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(shape[1]).astype(np.float32)[None, :]
    frequency2 = fy**2 + fx**2
    response = np.zeros_like(frequency2)
    for width in scales:
        # Each scale gets equal variance: a Gaussian blur of width w keeps ~1/w² of white noise.
        response += width * np.exp(-2.0 * (math.pi * width) ** 2 * frequency2)
    smooth = scipy.fft.irfft2(spectrum * response, s=shape, workers=-1)
    low, high = np.percentile(smooth, [1, 99])
    return np.clip((smooth - low) / (high - low), 0.0, 1.0).astype(np.float32)


def random_discs(rng: np.random.Generator, shape: tuple[int, int], density: float,
                 radii: tuple[float, float]) -> np.ndarray:
    """Sharp-edged discs ("particles") at random places: the fine, high-contrast detail of the object."""
    canvas = np.zeros(shape, dtype=np.float32)
    count = max(1, int(density * shape[0] * shape[1]))
    centres = rng.uniform((0, 0), shape, size=(count, 2))
    sizes = rng.uniform(*radii, size=count)
    strengths = rng.uniform(0.4, 1.0, size=count)
    for (row, col), radius, strength in zip(centres, sizes, strengths, strict=True):
        r0, r1 = max(int(row - radius), 0), min(int(row + radius) + 2, shape[0])
        c0, c1 = max(int(col - radius), 0), min(int(col + radius) + 2, shape[1])
        rr, cc = np.ogrid[r0:r1, c0:c1]
        inside = (rr - row) ** 2 + (cc - col) ** 2 <= radius**2
        canvas[r0:r1, c0:c1] = np.maximum(canvas[r0:r1, c0:c1], strength * inside)
    return canvas


def siemens_star(shape: tuple[int, int], radius: float, spokes: int = 36) -> np.ndarray:
    """A resolution target at the centre: spokes narrow towards the middle, so every scale is present."""
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    dy, dx = np.float32(rows - shape[0] / 2), np.float32(cols - shape[1] / 2)
    inside = dy**2 + dx**2 <= radius**2
    spokes_on = np.cos(spokes * np.arctan2(dy, dx)) > 0
    return (inside & spokes_on).astype(np.float32)


def remove_linear_trend(image: np.ndarray, region: np.ndarray | None = None) -> np.ndarray:
    """Subtract the least-squares plane a + b·row + c·col, fitted on ``region`` (default: everywhere).

    O·e^{iq·r} with P·e^{−iq·r} gives the same data for any q (each frame only gains a constant
    phase), so engines keep the phase ramp of their initial object, flat (ramp-free) by convention.
    A ground truth with a ramp would count that ambiguity as error. The 3x3 normal equations are
    built from separable row/column sums, so a seed-workload object (25 Mpixel) needs no extra copies.
    """
    weights = np.ones(image.shape) if region is None else region.astype(np.float64)
    rows = np.arange(image.shape[0], dtype=np.float64)
    cols = np.arange(image.shape[1], dtype=np.float64)
    weighted = weights * image
    w_rows, w_cols = weights.sum(axis=1), weights.sum(axis=0)
    normal = np.array([
        [w_rows.sum(), w_rows @ rows, w_cols @ cols],
        [w_rows @ rows, w_rows @ rows**2, rows @ weights @ cols],
        [w_cols @ cols, rows @ weights @ cols, w_cols @ cols**2],
    ])
    right = np.array([weighted.sum(), weighted.sum(axis=1) @ rows, weighted.sum(axis=0) @ cols])
    a, b, c = np.linalg.solve(normal, right)
    plane = (a + b * rows[:, None]) + c * cols[None, :]
    return (image - plane).astype(image.dtype)


def ground_truth_object(shape: tuple[int, int], modes: int, seed: int,
                        region: np.ndarray | None = None) -> np.ndarray:
    """(M_o, A, B) complex64: amplitude 0.5..1 and phase about ±1 rad, from particles, texture, star.

    Amplitude has structure from 1.5 to 80 pixels. The phase is high-passed (structure below about
    PHASE_HIGHPASS_PX) and carries no linear ramp over ``region`` (the illuminated area; see
    ``remove_linear_trend``): phase that varies slowly across many probe widths is weakly constrained
    by the data (it sits next to the zero order), so projection engines recover it over hundreds of
    iterations; with it in the ground truth the object error measures that slow drift, not the engine.
    """
    rng = stream(seed, OBJECT_STREAM)
    amplitude_texture = multiscale_noise(rng, shape, (1.5, 5.0, 20.0, 80.0))
    phase_texture = multiscale_noise(rng, shape, (2.0, 8.0))
    particles = random_discs(rng, shape, density=1 / 600, radii=(1.5, 8.0))
    star = siemens_star(shape, radius=min(shape) / 8)
    amplitude = 1.0 - 0.30 * amplitude_texture - 0.15 * particles - 0.05 * star
    phase = 1.2 * (phase_texture - 0.5) + 0.6 * particles + 0.4 * star
    phase = phase - scipy.ndimage.gaussian_filter(phase, PHASE_HIGHPASS_PX, mode="wrap")
    phase = remove_linear_trend(phase, region)
    primary = (amplitude * np.exp(1j * phase)).astype(np.complex64)
    result = np.empty((modes, *shape), dtype=np.complex64)
    result[0] = primary
    for mode in range(1, modes):
        weak_amplitude = 0.3 * multiscale_noise(rng, shape, (3.0, 15.0))
        weak_phase = 2 * math.pi * multiscale_noise(rng, shape, (10.0,))
        result[mode] = (weak_amplitude * np.exp(1j * weak_phase)).astype(np.complex64)
    return result


def _frequency_grid(frame_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    u = np.fft.fftfreq(frame_shape[0])[:, None]
    v = np.fft.fftfreq(frame_shape[1])[None, :]
    return np.hypot(u, v), np.arctan2(u, v)


def _aberration_phase(rng: np.random.Generator, rho: np.ndarray, theta: np.ndarray,
                      rms_radians: float) -> np.ndarray:
    """Astigmatism, coma and trefoil with random coefficients: a real lens is never perfect."""
    terms = [rho**2 * np.cos(2 * theta), rho**2 * np.sin(2 * theta),
             (3 * rho**3 - 2 * rho) * np.cos(theta), (3 * rho**3 - 2 * rho) * np.sin(theta),
             rho**3 * np.cos(3 * theta), rho**3 * np.sin(3 * theta)]
    coefficients = rng.normal(scale=rms_radians, size=len(terms))
    return sum(c * t for c, t in zip(coefficients, terms, strict=True))


def farfield_probe_mode(frame_shape: tuple[int, int], diameter: float, rng: np.random.Generator | None,
                        tilt: tuple[float, float] = (0.0, 0.0), pupil_radius: float = PUPIL_RADIUS) -> np.ndarray:
    """A defocused focusing-optic probe, from its pupil: a disc of ``diameter`` pixels with rings.

    Pupil phase π·d·(ρ/ρ0)² sends frequency ρ to position d·ρ/ρ0², so d = (diameter/2)·ρ0 fills the
    disc. ``rng`` adds lens aberrations (None: the nominal optics a user would model). ``pupil_radius``
    (cycles per pixel) is the bright disc the probe makes on the detector: a small one leaves most
    pixels dark (sparse data).
    """
    rho, theta = _frequency_grid(frame_shape)
    normalised = rho / pupil_radius
    edge = 0.5 * (1 - np.tanh((rho - pupil_radius) * min(frame_shape) / 1.5))
    defocus = 0.5 * diameter * pupil_radius
    phase = math.pi * defocus * normalised**2
    if rng is not None:
        phase = phase + _aberration_phase(rng, np.minimum(normalised, 1.0), theta, rms_radians=0.35)
    pupil = edge * np.exp(1j * phase)
    probe = np.fft.fftshift(scipy.fft.ifft2(pupil, norm="ortho"))
    rows, cols = np.ogrid[: frame_shape[0], : frame_shape[1]]
    return probe * np.exp(2j * math.pi * (tilt[0] * rows / frame_shape[0] + tilt[1] * cols / frame_shape[1]))


def nearfield_probe_mode(frame_shape: tuple[int, int], diameter: float, fresnel_number: float,
                         rng: np.random.Generator | None,
                         tilt: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Structured illumination: a soft-edged beam through a random phase diffuser, Fresnel-propagated.

    ``rng`` None gives the beam without the diffuser (what a user knows before reconstructing).
    """
    rows, cols = np.ogrid[: frame_shape[0], : frame_shape[1]]
    radius = np.hypot(rows - frame_shape[0] / 2, cols - frame_shape[1] / 2) / (diameter / 2)
    field = np.exp(-(radius**8)).astype(np.complex128)
    if rng is not None:
        phase_screen = 2.5 * math.pi * multiscale_noise(rng, frame_shape, (1.5, 4.0))
        field = field * (1 - 0.3 * multiscale_noise(rng, frame_shape, (3.0,))) * np.exp(1j * phase_screen)
    field = field * np.exp(2j * math.pi * (tilt[0] * rows / frame_shape[0] + tilt[1] * cols / frame_shape[1]))
    propagator = NearFieldPropagator(NumpyBackend(), frame_shape, fresnel_number)
    return propagator.forward(field.astype(np.complex64)).astype(np.complex128)


def orthogonal_modes(variants: list[np.ndarray], photons: float) -> np.ndarray:
    """Orthogonalise mode variants (SVD) and give them MODE_POWERS of ``photons`` in total: (M_p, Y, X)."""
    stack = np.stack([v.ravel() for v in variants])
    if len(variants) > 1:
        _, _, basis = np.linalg.svd(stack, full_matrices=False)
        # Keep each mode's global phase close to its variant so mode 0 resembles the nominal probe.
        phases = np.exp(1j * np.angle(np.sum(np.conj(basis) * stack, axis=1)))
        stack = basis * phases[:, None]
    powers = np.array(MODE_POWERS[: len(variants)])
    powers = photons * powers / powers.sum()
    norms = np.sqrt(np.sum(np.abs(stack) ** 2, axis=1))
    stack = stack * (np.sqrt(powers) / norms)[:, None]
    return stack.reshape(len(variants), *variants[0].shape).astype(np.complex64)


def _mode_tilts(modes: int) -> list[tuple[float, float]]:
    """Small tilts (cycles per frame) that make distinct mode variants: a slightly extended source."""
    return [(0.0, 0.0)] + [(0.6 * math.cos(k * 2.1), 0.6 * math.sin(k * 2.1)) for k in range(1, modes)]


def make_probe(kind: str, frame_shape: tuple[int, int], diameter: float, photons: float, modes: int,
               seed: int, fresnel_number: float | None, nominal: bool = False,
               pupil_radius: float = PUPIL_RADIUS) -> np.ndarray:
    """(M_p, Y, X) complex64 probe with Σ|P|² = photons; ``nominal`` gives the user's initial guess."""
    variants = []
    for tilt in _mode_tilts(modes):
        rng = None if nominal else stream(seed, PROBE_STREAM)  # same optics for every mode
        if kind == "farfield":
            variants.append(farfield_probe_mode(frame_shape, diameter, rng, tilt, pupil_radius))
        else:
            variants.append(nearfield_probe_mode(frame_shape, diameter, fresnel_number, rng, tilt))
    return orthogonal_modes(variants, photons)
