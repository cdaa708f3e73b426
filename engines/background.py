"""An incoherent detector background: one value per pixel, shared by every frame, fitted to what the exit waves
leave unexplained.

Measured patterns carry counts that no exit wave explains: air and window scattering, a detector's dark signal,
a flat-field residual. A model without them bends the object and probe to fit them. With a background b the
model is Î_j = Σ_k |ψ_jk|² + b: the engines' Fourier steps fit the coherent part to (I_j − b)₊
(``Problem.coherent_part``; the exact projection onto Σ|ψ|² + b = I), the evaluation scores Σ|ψ|² + b, and after
each iteration from ``background_start`` on b is refitted by penalised least squares over every frame of every
rank, b = max(mean_j M·(I_j − Σ_k |ψ_jk|²) / (1 + λ), 0), λ = ``background_penalty``.

Why a penalty: b and the coherent part are not separable pixel by pixel (a near-field probe's intensity at a
pixel and a background there both add to every frame). Where the exit waves systematically fall short of the
data by u (a bright focus they blur), the exact fit (λ = 0) adds u to b, the coherent part refitted to I − b
falls short by u again, and b grows by u every iteration until it holds the signal (measured on P25: its mean
went from 100 to 430 photons in 30 iterations, the R-factor from 0.081 to 0.089). With λ > 0 the fit settles
at b = u/λ. The fit costs one forward propagation of every frame (an evaluation's)
and, over MPI, one reduction of a frame-sized array. ML's likelihood is then that of the data less b: exact for
the Gaussian model but for its weights 1/(I + 1), an approximation for the Poisson one.
"""

from __future__ import annotations

from typing import Any


def fit_background(problem: Any) -> None:
    """b ← max(mean over all frames of the data less the current coherent model / (1 + λ), 0), on valid pixels."""
    xp = problem.xp
    residual = problem.backend.zeros(problem.frame_shape, xp.float64)
    for intensities, coherent in problem.model_intensities(with_background=False):
        residual += xp.sum(intensities - coherent, axis=0, dtype=xp.float64)
    if problem.comm.size > 1:
        with problem.timer("communication"):
            residual = problem.comm.allreduce_sum(residual)
    mean = xp.astype(residual / (problem.n_frames_total * (1.0 + problem.run.background_penalty)), xp.float32)
    problem.background = xp.where(problem.mask, xp.maximum(mean, xp.zeros_like(mean)), xp.zeros_like(mean))
