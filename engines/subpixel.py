"""Sub-pixel placement: each frame sees the probe shifted by the fraction of a pixel its position has.

Frames sit at whole-pixel corners (``validation.frame_corners``, the nearest pixel); a measured position
r_j = c_j + f_j with |f| ≤ ½ puts the probe f_j before the frame's window, so in the window's pixels

    ψ_j = (S_j P) · O[c_j : c_j + Y],     S_j P = F⁻¹[ F[P] · exp(−2πi (f_y k_y + f_x k_x)) ],

the probe moved by +f_j with a Fourier (sinc) shift, as cdtools and pty-chi place their probes. That exit wave is
the one the probe's own frame sees, moved by f_j across the window. In the far field a moved exit wave gives the
same intensities, so nothing else changes; in the near field its hologram moves across the detector by as much,
so the propagator moves it back (``NearFieldPropagator``'s ``moved``: one more factor on the spectrum it
computes anyway, no more FFTs).

Every update that reads the probe reads S_j P; the object's updates are exact with it (the object enters
pointwise), and the probe's take the adjoint Σ_j S_j† T_j of their per-frame terms, summed in Fourier space so
one inverse transform serves a block. The probe update's denominator Σ_j |O_j|² is not shifted (the object's
power varies little over a fraction of a pixel; for a phase object it is flat).

The cost: two more FFTs per frame and probe mode each way, and the unfused reference products (the backends'
fused kernels take one probe shared by all frames). ``RunOptions.positions = "subpixel"`` turns it on; whole
pixels stay the default (docs/algorithms.md, "Positions").
"""

from __future__ import annotations

from typing import Any

import numpy as np


class SubpixelShifts:
    """Per-frame probe shifts of one rank's frames on one backend."""

    def __init__(self, backend: Any, frame_shape: tuple[int, int], fractions: np.ndarray) -> None:
        self.backend = backend
        self.xp = backend.xp
        height, width = frame_shape
        self._ky = np.fft.fftfreq(height)
        self._kx = np.fft.fftfreq(width)
        self.fractions = np.asarray(fractions, dtype=np.float64)

    def ramps(self, frames: slice | np.ndarray, fractions: np.ndarray | None = None) -> Any:
        """exp(−2πi (f_y k_y + f_x k_x)), the spectrum's factor that moves an image by +f, of the selected frames
        (or of ``fractions``, (n, 2), when given), (n, 1, Y, X) complex64. Its two phase vectors per frame are
        made on the host and multiplied out on the backend: n·(Y + X) values cross to a device, not n·Y·X."""
        fractions = self.fractions[frames] if fractions is None else np.asarray(fractions, dtype=np.float64)
        along_rows = np.exp(-2j * np.pi * fractions[:, 0, None] * self._ky[None, :]).astype(np.complex64)
        along_cols = np.exp(-2j * np.pi * fractions[:, 1, None] * self._kx[None, :]).astype(np.complex64)
        rows, cols = self.backend.asarray(along_rows), self.backend.asarray(along_cols)
        return (rows[:, :, None] * cols[:, None, :])[:, None]

    def shifted(self, probe: Any, frames: slice | np.ndarray, fractions: np.ndarray | None = None) -> Any:
        """S_j P of the selected frames (or for ``fractions`` of a pixel), (n, M_p, Y, X)."""
        spectrum = self.backend.fft2(probe)
        return self.backend.ifft2(spectrum[None] * self.ramps(frames, fractions), overwrite=True)

    def adjoint_sum(self, terms: Any, frames: slice | np.ndarray) -> Any:
        """Σ_j S_j† T_j of per-frame probe terms (n, M_p, Y, X): moved back by −f_j and summed, (M_p, Y, X)."""
        spectra = self.backend.fft2(terms) * self.xp.conj(self.ramps(frames))
        return self.backend.ifft2(self.xp.sum(spectra, axis=0))

    def detector_moves(self, frames: slice | np.ndarray, fractions: np.ndarray | None = None) -> Any:
        """Factors (n, 1, 1, Y, X) on the exit waves' spectra that move each frame's image by −f_j: the near-field
        hologram of S_j P·O back to where the detector saw it."""
        return self.xp.conj(self.ramps(frames, fractions))[:, :, None]

    def move(self, fractions: np.ndarray) -> None:
        """The frames' fractions after position refinement moved them."""
        self.fractions = np.asarray(fractions, dtype=np.float64)


def exit_waves(probes: Any, views: Any) -> Any:
    """ψ_jkl = (S_j P)_k · O_l,j from per-frame probes (n, M_p, Y, X) and views (n, M_o, Y, X)."""
    return probes[:, :, None] * views[:, None]


def object_terms(xp: Any, probes: Any, waves: Any) -> Any:
    """Σ_k (S_j P)_k* ψ_jkl per frame, (n, M_o, Y, X): the object numerator's patches."""
    return xp.sum(xp.conj(probes)[:, :, None] * waves, axis=1)


def probe_terms(xp: Any, views: Any, waves: Any) -> tuple[Any, Any]:
    """Per frame Σ_l O_l,j* ψ_jkl, (n, M_p, Y, X) (to be moved back), and Σ_jl |O_l,j|², (Y, X)."""
    numerator = xp.sum(xp.conj(views)[:, None] * waves, axis=2)
    denominator = xp.sum(xp.real(views) ** 2 + xp.imag(views) ** 2, axis=(0, 1))
    return numerator, denominator


def probe_power(xp: Any, probes: Any) -> Any:
    """Σ_k |(S_j P)_k|² per frame, (n, 1, Y, X): each frame's illumination patch."""
    return xp.sum(xp.real(probes) ** 2 + xp.imag(probes) ** 2, axis=1, keepdims=True)
