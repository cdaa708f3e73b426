"""The hot steps every engine shares, written once against the array API namespace ``xp``.

A backend may subclass Kernels to replace a step with a fused kernel of the same signature; the
tests check every replacement against these definitions. Shapes: exit waves (n, M_p, M_o, Y, X);
object views (n, M_o, Y, X); probe (M_p, Y, X); intensities (n, Y, X) in the propagator's internal
order with masked pixels zeroed; mask (Y, X) bool.
"""

from __future__ import annotations

from typing import Any

#: Added to the model amplitude before dividing by it (sqrt-counts), keeps dark pixels finite.
AMPLITUDE_EPSILON = 1e-7


class Kernels:
    """Reference definitions; every method returns new arrays unless it says "in place"."""

    def __init__(self, xp: Any) -> None:
        self.xp = xp

    def exit_waves(self, probe: Any, views: Any) -> Any:
        """ψ_jkl = P_k · O_l,j  (ALGORITHMS.md, "Notation")."""
        return probe[None, :, None, :, :] * views[:, None, :, :, :]

    def linear_mix(self, overlap: Any, waves: Any, c: float) -> Any:
        """c·Π_Oψ + (1 − c)·ψ: the input of DM's and RAAR's Fourier projection."""
        return c * overlap + (1.0 - c) * waves

    def mode_intensity(self, waves: Any) -> Any:
        """Σ_kl |Ψ_jkl|², shape (n, Y, X)."""
        xp = self.xp
        return xp.sum(xp.real(waves) ** 2 + xp.imag(waves) ** 2, axis=(1, 2))

    def amplitude_errors(self, model_intensity: Any, intensities: Any, mask: Any) -> tuple[Any, Any]:
        """Per-frame Σ M (A − √I)² and Σ M |A − √I| with A = √Î: the err_fmag and R-factor sums."""
        xp = self.xp
        difference = xp.sqrt(model_intensity) - xp.sqrt(intensities)
        difference = xp.where(mask, difference, xp.zeros_like(difference))
        return xp.sum(difference**2, axis=(-2, -1)), xp.sum(xp.abs(difference), axis=(-2, -1))

    def fourier_projection(self, waves: Any, intensities: Any, mask: Any, pbound: float | None
                           ) -> tuple[Any, Any]:
        """Π_M in place on ``waves``; returns per-frame Σ M (A − √I)² and Σ M |A − √I|.

        One real factor per pixel is shared by all modes. With a power bound, a frame whose mean
        error over valid pixels exceeds ``pbound`` gets amplitude √I + √(pbound/err)·(A − √I); a
        frame at or below it is left as it is (ALGORITHMS.md). Masked pixels keep Ψ.
        """
        xp = self.xp
        amplitude = xp.sqrt(self.mode_intensity(waves))
        measured = xp.sqrt(intensities)
        zeros, ones = xp.zeros_like(amplitude), xp.ones_like(amplitude)
        difference = xp.where(mask, amplitude - measured, zeros)
        error = xp.sum(difference**2, axis=(-2, -1))
        absolute_error = xp.sum(xp.abs(difference), axis=(-2, -1))
        if pbound is None:
            target = measured
        else:
            mean_error = error / xp.sum(xp.astype(mask, amplitude.dtype))
            # renorm = 1 keeps the model amplitude (frames within the bound); < 1 pulls towards √I.
            renorm = xp.sqrt(pbound / xp.maximum(mean_error, xp.full_like(mean_error, pbound)))
            target = measured + renorm[:, None, None] * (amplitude - measured)
        factor = xp.where(mask, target / (amplitude + AMPLITUDE_EPSILON), ones)
        waves *= xp.astype(factor, waves.dtype)[:, None, None, :, :]
        return error, absolute_error

    def difference_map_update(self, waves: Any, projected: Any, overlap: Any, a: float, b: float) -> Any:
        """ψ ← ψ + b·Π_M(·) + a·Π_Oψ − (a + b)·ψ, in place on ``waves`` (ALGORITHMS.md)."""
        if a + b != 0.0:
            waves *= 1.0 - a - b
        waves += b * projected
        waves += a * overlap
        return waves

    def object_update_terms(self, probe: Any, waves: Any) -> Any:
        """Σ_k P_k* ψ_jkl per frame, (n, M_o, Y, X): patches for the object numerator."""
        return self.xp.sum(self.xp.conj(probe)[None, :, None, :, :] * waves, axis=1)

    def probe_update_terms(self, views: Any, waves: Any) -> tuple[Any, Any]:
        """Σ_jl O_l,j* ψ_jkl (M_p, Y, X) and Σ_jl |O_l,j|² (Y, X) over the frames of a block."""
        xp = self.xp
        numerator = xp.sum(xp.conj(views)[:, None, :, :, :] * waves, axis=(0, 2))
        denominator = xp.sum(xp.real(views) ** 2 + xp.imag(views) ** 2, axis=(0, 1))
        return numerator, denominator
