"""Unitary propagators D and D⁻¹ of docs/algorithms.md ("Propagators").

Far field: D ψ = fftshift(FFT2(ψ)/√(YX)), zero frequency at pixel (Y//2, X//2) as on a detector.
Engines keep detector-plane arrays (intensities, mask) in FFT order, ``to_internal`` once at load,
so the hot loop runs bare unitary FFTs and no fftshift per iteration. Both orders hold the same
pixels, so every error sum is unchanged.

Near field (Fresnel, paraxial): D ψ = IFFT2(FFT2(ψ)·H), H(u, v) = exp(−iπ(u² + v²)/F), u, v in
cycles per pixel and F = Δx²/(λz) the Fresnel number of one pixel.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .backends.base import Backend
from .errors import InputError

PROPAGATIONS = ("farfield", "nearfield")


def fresnel_transfer_function(frame_shape: tuple[int, int], fresnel_number: float) -> np.ndarray:
    """H(u, v) = exp(−iπ(u² + v²)/F) on the FFT grid, computed in float64 and stored complex64."""
    if not fresnel_number > 0:
        raise InputError(f"fresnel_number: expected a positive number, got {fresnel_number!r}")
    u = np.fft.fftfreq(frame_shape[0])[:, None]
    v = np.fft.fftfreq(frame_shape[1])[None, :]
    return np.exp(-1j * np.pi * (u**2 + v**2) / fresnel_number).astype(np.complex64)


class FarFieldPropagator:
    kind = "farfield"

    def __init__(self, backend: Backend, frame_shape: tuple[int, int]) -> None:
        self.backend = backend
        self.frame_shape = tuple(frame_shape)

    def forward(self, exit_waves: Any, overwrite: bool = False, moved: Any = None) -> Any:
        """``moved``: per-frame factors on the exit waves' spectra that move each frame's image on the detector
        (sub-pixel placement, engines/subpixel.py); a far-field pattern does not move with the exit wave, so
        it is not used."""
        return self.backend.fft2(exit_waves, overwrite=overwrite)

    def backward(self, detector_waves: Any, overwrite: bool = False, moved: Any = None) -> Any:
        return self.backend.ifft2(detector_waves, overwrite=overwrite)

    @staticmethod
    def to_internal(detector_array: np.ndarray) -> np.ndarray:
        """Detector order (zero frequency at Y//2, X//2) -> FFT order (zero frequency at 0, 0)."""
        return np.fft.ifftshift(detector_array, axes=(-2, -1))

    @staticmethod
    def to_detector(internal_array: np.ndarray) -> np.ndarray:
        return np.fft.fftshift(internal_array, axes=(-2, -1))

    @staticmethod
    def to_internal_into(detector_array: np.ndarray, out: np.ndarray) -> None:
        """``out[...] = to_internal(detector_array)`` (with a dtype cast) by four quadrant copies: no temporaries."""
        height, width = detector_array.shape[-2:]
        top, left = height // 2, width // 2  # ifftshift moves pixel (top, left) to (0, 0)
        for rows_out, rows_in in ((slice(0, height - top), slice(top, height)), (slice(height - top, height),
                                                                                 slice(0, top))):
            for cols_out, cols_in in ((slice(0, width - left), slice(left, width)),
                                      (slice(width - left, width), slice(0, left))):
                out[..., rows_out, cols_out] = detector_array[..., rows_in, cols_in]


class NearFieldPropagator:
    kind = "nearfield"

    def __init__(self, backend: Backend, frame_shape: tuple[int, int], fresnel_number: float) -> None:
        self.backend = backend
        self.frame_shape = tuple(frame_shape)
        self.fresnel_number = float(fresnel_number)
        transfer = fresnel_transfer_function(self.frame_shape, self.fresnel_number)
        self._transfer = backend.asarray(transfer)
        self._transfer_conj = backend.asarray(np.conj(transfer))

    def forward(self, exit_waves: Any, overwrite: bool = False, moved: Any = None) -> Any:
        """``moved``: per-frame factors (n, 1, 1, Y, X) on the spectra that move each frame's hologram across the
        detector (sub-pixel placement, engines/subpixel.py): a near-field image moves with the exit wave."""
        spectrum = self.backend.fft2(exit_waves, overwrite=overwrite)
        spectrum *= self._transfer
        if moved is not None:
            spectrum *= moved
        return self.backend.ifft2(spectrum, overwrite=True)

    def backward(self, detector_waves: Any, overwrite: bool = False, moved: Any = None) -> Any:
        spectrum = self.backend.fft2(detector_waves, overwrite=overwrite)
        spectrum *= self._transfer_conj
        if moved is not None:
            spectrum *= self.backend.xp.conj(moved)
        return self.backend.ifft2(spectrum, overwrite=True)

    @staticmethod
    def to_internal(detector_array: np.ndarray) -> np.ndarray:
        return detector_array

    @staticmethod
    def to_detector(internal_array: np.ndarray) -> np.ndarray:
        return internal_array

    @staticmethod
    def to_internal_into(detector_array: np.ndarray, out: np.ndarray) -> None:
        out[...] = detector_array


def make_propagator(backend: Backend, propagation: str, frame_shape: tuple[int, int],
                    fresnel_number: float | None = None) -> FarFieldPropagator | NearFieldPropagator:
    if propagation == "farfield":
        return FarFieldPropagator(backend, frame_shape)
    if propagation == "nearfield":
        if fresnel_number is None:
            raise InputError("fresnel_number: required for propagation='nearfield', got None")
        return NearFieldPropagator(backend, frame_shape, fresnel_number)
    raise InputError(f"propagation: expected one of {list(PROPAGATIONS)}, got {propagation!r}")
