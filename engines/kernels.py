"""The hot steps every engine shares, written once against the array API namespace ``xp``.

A backend may subclass Kernels to replace a step with a fused kernel of the same signature; the
tests check every replacement against these definitions. Shapes: exit waves (n, M_p, M_o, Y, X);
object views (n, M_o, Y, X); probe (M_p, Y, X); intensities (n, Y, X) in the propagator's internal
order with masked pixels zeroed; mask (Y, X) bool.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Added to the model amplitude before dividing by it (sqrt-counts), keeps dark pixels finite.
AMPLITUDE_EPSILON = 1e-7
#: Model intensities are floored here in the Poisson likelihood (counts), so ln Î stays finite.
POISSON_FLOOR = 1e-6


class Kernels:
    """Reference definitions; every method returns new arrays unless it says "in place"."""

    def __init__(self, xp: Any) -> None:
        self.xp = xp

    def exit_waves(self, probe: Any, views: Any) -> Any:
        """ψ_jkl = P_k · O_l,j  (docs/algorithms.md, "Notation")."""
        return probe[None, :, None, :, :] * views[:, None, :, :, :]

    def frame_exit_waves(self, probe: Any, view: Any) -> tuple[Any, Any, Any]:
        """One frame's start (ePIE/rPIE): a copy of its object ``view`` (M_o, Y, X), which the step updates
        in place, its exit waves (1, M_p, M_o, Y, X) from that copy, and a second copy of them for the
        detector side (propagated in place)."""
        old_view = self.xp.asarray(view, copy=True)
        waves = self.exit_waves(probe, old_view[None])
        return old_view, waves, self.xp.asarray(waves, copy=True)

    def linear_mix(self, overlap: Any, waves: Any, c: float, out: Any = None) -> Any:
        """c·Π_Oψ + (1 − c)·ψ: the input of DM's and RAAR's Fourier projection (into ``out`` if given)."""
        mixed = c * overlap + (1.0 - c) * waves
        if out is None:
            return mixed
        out[...] = mixed
        return out

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
        frame at or below it is left as it is (docs/algorithms.md). Masked pixels keep Ψ.
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
        """ψ ← ψ + b·Π_M(·) + a·Π_Oψ − (a + b)·ψ, in place on ``waves`` (docs/algorithms.md)."""
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

    def pie_update(self, view: Any, old_view: Any, probe: Any, projected: Any, waves: Any, alpha: float,
                   beta: float | None, rpie_alpha: float | None) -> Any:
        """One frame's ePIE/rPIE step; Δ = projected − waves, shapes (M_p, M_o, Y, X).

        ``view`` (M_o, Y, X) += α Σ_k P_k* Δ_k / w_O in place; returns P + β Σ_l O_l* Δ_l / w_P, with O
        the ``old_view`` (None when ``beta`` is None: probe fixed). w = max|·|² (ePIE) or
        (1 − a)|·|² + a·max|·|² per pixel (rPIE, a = ``rpie_alpha``). ``projected`` may be overwritten.
        """
        xp = self.xp

        def weights(power: Any) -> Any:
            largest = xp.max(power)
            return largest if rpie_alpha is None else (1.0 - rpie_alpha) * power + rpie_alpha * largest

        delta = projected - waves
        probe_power = xp.sum(xp.real(probe) ** 2 + xp.imag(probe) ** 2, axis=0)
        object_step = xp.sum(xp.conj(probe)[:, None] * delta, axis=0)
        new_probe = None
        if beta is not None:
            object_power = xp.sum(xp.real(old_view) ** 2 + xp.imag(old_view) ** 2, axis=0)
            probe_step = xp.sum(xp.conj(old_view)[None] * delta, axis=1)
            new_probe = probe + (beta / weights(object_power)) * probe_step
        view += (alpha / weights(probe_power)) * object_step
        return new_probe

    # --- maximum likelihood (docs/algorithms.md, "Engines") ----------------------------------------------
    def likelihood_weights(self, waves: Any, intensities: Any, mask: Any, noise: str) -> tuple[float, Any, Any]:
        """Multiply ``waves`` (detector side) in place by 2·∂L/∂Î; return (L in float64, per-frame
        Σ M (A − √I)², per-frame Σ M |A − √I|). Gaussian L = Σ M w (Î − I)², w = 1/(I + 1);
        Poisson L = Σ M (Î − I ln Î) with Î floored at POISSON_FLOOR."""
        xp = self.xp
        model = self.mode_intensity(waves)
        squared, absolute = self.amplitude_errors(model, intensities, mask)
        zeros = xp.zeros_like(model)
        if noise == "gaussian":
            weights = xp.where(mask, 1.0 / (intensities + 1.0), zeros)
            residual = model - intensities
            derivative, loss = 2.0 * weights * residual, xp.sum(weights * residual**2, dtype=xp.float64)
        else:
            floored = xp.maximum(model, xp.full_like(model, POISSON_FLOOR))
            derivative = xp.where(mask, 1.0 - intensities / floored, zeros)
            loss = xp.sum(xp.where(mask, floored - intensities * xp.log(floored), zeros), dtype=xp.float64)
        waves *= xp.astype(2.0 * derivative, waves.dtype)[:, None, None]
        return float(loss), squared, absolute

    def quartic(self, a: Any, b: Any, c: Any | None) -> list[Any]:
        """Î(t) = q0 + q1 t + q2 t² + q3 t³ + q4 t⁴ per pixel (summed over modes) for the wave
        a + b t + c t² propagated; c None (probe fixed) leaves a quadratic."""
        xp = self.xp

        def modes_sum(x: Any) -> Any:
            return xp.sum(x, axis=(1, 2))

        q0 = modes_sum(xp.real(a) ** 2 + xp.imag(a) ** 2)
        q1 = 2.0 * modes_sum(xp.real(xp.conj(a) * b))
        q2 = modes_sum(xp.real(b) ** 2 + xp.imag(b) ** 2)
        if c is None:
            return [q0, q1, q2]
        q2 = q2 + 2.0 * modes_sum(xp.real(xp.conj(a) * c))
        q3 = 2.0 * modes_sum(xp.real(xp.conj(b) * c))
        q4 = modes_sum(xp.real(c) ** 2 + xp.imag(c) ** 2)
        return [q0, q1, q2, q3, q4]

    def line_search_polynomial(self, a: Any, b: Any, c: Any | None, intensities: Any, mask: Any,
                               noise: str) -> np.ndarray:
        """Gaussian: the 9 coefficients (ascending) of L(t) = Σ M w (Σ_i r_i tⁱ)², r_0 = q0 − I.
        Poisson: (0, L'(0), L''(0)) for one Newton step. Float64 on the host."""
        xp = self.xp
        quartic = self.quartic(a, b, c)
        zeros = xp.zeros_like(intensities)
        if noise != "gaussian":
            q0 = xp.maximum(quartic[0], xp.full_like(quartic[0], POISSON_FLOOR))
            ratio = xp.where(mask, intensities / q0, zeros)
            first = xp.where(mask, (1.0 - ratio) * quartic[1], zeros)
            second = xp.where(mask, (1.0 - ratio) * 2.0 * quartic[2] + ratio * quartic[1] ** 2 / q0, zeros)
            return np.array([0.0, float(xp.sum(first, dtype=xp.float64)), float(xp.sum(second, dtype=xp.float64))])
        weights = xp.where(mask, 1.0 / (intensities + 1.0), zeros)
        residual = [quartic[0] - intensities, *quartic[1:]]
        coefficients = np.zeros(9)
        for i, r_i in enumerate(residual):
            weighted = weights * r_i
            for j in range(i, len(residual)):
                value = float(xp.sum(weighted * residual[j], dtype=xp.float64))
                coefficients[i + j] += value if i == j else 2.0 * value
        return coefficients
