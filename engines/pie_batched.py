"""Batched ePIE and rPIE: B frames per update, all from the same object and probe (docs/algorithms.md,
"Engines").

    ψ_j = P·O_j;  Δ_j = Π_Mψ_j − ψ_j  for the frames j of a batch
    O += α Σ_j Σ_k P_k* Δ_jk / w_O,   I_O = Σ_j Σ_k |P_k(r − r_j)|²,  w_O = max(I_O, (1 − a)·I_O + a·m)
    P += β Σ_j Σ_l O_l,j* Δ_jl / w_P,  I_P = Σ_j Σ_l |O_l,j|²,       w_P = (1 − a)·I_P + a·max I_P
with m = max Σ_k|P_k|² (one frame's largest) and a = 1 for ePIE, rPIE's a otherwise. With B = 1 this is
the sequential engine in the same frame order; for B > 1 it is a different algorithm (a step per batch
instead of per frame), built for devices, where one frame per kernel launch leaves the device idle. Batches are
drawn at random each iteration, so each spans the scan (seeded: the same run repeats).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .metrics import FourierErrorSums
from .options import BatchedEPIEOptions, BatchedRPIEOptions
from .problem import Problem
from .registry import MemoryTerms, register

#: Per frame of a compute block: the exit waves and their detector-side copy (which becomes Δ), the gathered
#: intensities (half a view); the reference path (torch) adds its out-of-place FFTs, gathers and the Fourier
#: projection's intermediates. Object buffers: numerator, illumination, the weights' temporaries and what
#: every run holds besides. Counted, then fitted to peaks measured on NumPy and torch-CPU (docs/design.md).
_FORM = dict(memory=MemoryTerms(fused=(2, 0.5), reference=(8, 1.5), object_buffers=4.5, subpixel=5.5),
             propagations_per_frame=2,
             keeps_exit_waves=False, distributed="merged", block_limit=lambda options: options.batch_frames)


#: The smallest normal float32: an unlit pixel's weight when rPIE's a = 0 (its step is 0, not 0/0).
_TINY = float(np.finfo(np.float32).tiny)


@register("rPIE-batched", options=BatchedRPIEOptions, **_FORM)
@register("ePIE-batched", options=BatchedEPIEOptions, **_FORM)
class BatchedPIEEngine:
    """A batch larger than the compute block is computed block by block into the same sums, so the batch
    (the algorithm) does not depend on the memory (the block)."""

    def constants(self) -> dict[str, Any]:
        return {"pbound": self.pbound, "batch_frames": self.options.batch_frames}

    def __init__(self, problem: Problem, options: BatchedEPIEOptions) -> None:
        self.problem = problem
        self.options = options
        self.pbound = options.resolved_pbound(problem.noise_floor, problem.zero_fraction)
        self.rpie_alpha = options.rpie_alpha if isinstance(options, BatchedRPIEOptions) else None
        # The sequential engines' stream: with B = 1 the frames come in their order.
        self._rng = np.random.default_rng([problem.run.seed, problem.comm.rank])
        xp, backend = problem.xp, problem.backend
        self._object_numerator = backend.zeros(problem.object.shape, xp.complex64)
        self._illumination = backend.zeros((1, *problem.object.shape[1:]), xp.float32)
        self._object_power = backend.zeros(problem.frame_shape, xp.float32)

    def batches(self) -> list[np.ndarray]:
        """This iteration's batches: a random order of the frames cut into ⌈N/B⌉ runs of B (the last shorter)."""
        order = self._rng.permutation(self.problem.n_frames)
        size = self.options.batch_frames
        return [np.sort(order[start:start + size]) for start in range(0, len(order), size)]

    def iterate(self, iteration: int) -> FourierErrorSums:
        update_probe = iteration >= self.options.probe_update_start
        squared_total = absolute_total = 0.0
        for frames in self.batches():
            squared, absolute = self._update_batch(frames, update_probe)
            squared_total, absolute_total = squared_total + squared, absolute_total + absolute
        errors = FourierErrorSums()
        errors.add(squared_total, absolute_total)
        if self.problem.comm.size > 1:
            with self.problem.timer("communication"):
                self.problem.comm.merge_weighted(self.problem)
        return errors

    def _update_batch(self, frames: np.ndarray, update_probe: bool) -> tuple[Any, Any]:
        problem, xp, backend, timer = self.problem, self.problem.xp, self.problem.backend, self.problem.timer
        device_frames = backend.index_array(frames)
        probe = problem.probe
        probe_power = xp.sum(xp.real(probe) ** 2 + xp.imag(probe) ** 2, axis=0)
        self._object_numerator[...] = 0
        self._illumination[...] = 0
        probe_numerator = xp.zeros_like(probe) if update_probe else None
        self._object_power[...] = 0
        squared_sum = absolute_sum = 0.0
        tail = (problem.shape.probe_modes, problem.shape.object_modes, *problem.frame_shape)
        for start in range(0, len(frames), problem.frames_per_block):
            stop = min(start + problem.frames_per_block, len(frames))
            block = frames[start:stop]
            with timer("transfer"):
                gathered = problem.intensities.gather(frames[start:stop], device_frames[start:stop])
                intensities = problem.coherent_part(gathered)
            with timer("exit_waves"):
                waves = problem.waves_at(block, problem.block_buffer("waves", start, stop, tail, xp.complex64))
                detector = problem.block_buffer("detector", start, stop, tail, xp.complex64)
                detector[...] = waves
            with timer("propagation"):
                detector = problem.forward(block, detector, overwrite=True)
            with timer("fourier_projection"):
                squared, absolute = backend.kernels.fourier_projection(detector, intensities,
                                                                       problem.mask, self.pbound)
            with timer("propagation"):
                delta = problem.backward(block, detector, overwrite=True)
            with timer("overlap_update"):
                delta -= waves
                problem.add_object_terms(self._object_numerator, block, delta)
                problem.add_illumination(self._illumination, block)
                if update_probe:
                    numerator, object_power = problem.probe_update_terms(block, delta)
                    probe_numerator += numerator
                    self._object_power += object_power
            squared_sum, absolute_sum = squared_sum + xp.sum(squared), absolute_sum + xp.sum(absolute)
        with timer("object_update"):
            # Both steps from the object and probe the batch started from (as ePIE's are per frame).
            if update_probe:
                problem.probe = probe + (self.options.beta / self._probe_weights(self._object_power)) * probe_numerator
            self._object_numerator *= self.options.alpha / self._object_weights(self._illumination, probe_power)
            problem.object += self._object_numerator
        return squared_sum, absolute_sum

    def _object_weights(self, illumination: Any, probe_power: Any) -> Any:
        """w_O = max(I_O, (1 − a)·I_O + a·m), m = max Σ_k|P_k|² (one frame's), a = 1 for ePIE.

        Where the batch's frames overlap, w_O ≥ I_O keeps the step within the batch's least-squares step
        (no overshoot from adding B frames' steps); where one frame lights a pixel it is that frame's own
        ePIE/rPIE weight, so the step does not shrink with B. B = 1 gives ePIE's and rPIE's weights
        exactly; _TINY keeps a = 0 from 0/0 where no frame lit. (Normalising by the largest I_O instead,
        ePIE's max summed over the batch, converged 2× slower per iteration at B = 64: docs/algorithms.md.)"""
        xp = self.problem.xp
        largest = xp.max(probe_power)
        if self.rpie_alpha is None:  # a = 1: no per-pixel blend to form
            return xp.maximum(illumination, largest)
        a = self.rpie_alpha
        return xp.maximum(illumination, (1.0 - a) * illumination + (a * largest + _TINY))

    def _probe_weights(self, object_power: Any) -> Any:
        """w_P from I_P = Σ_j Σ_l |O_l,j|² (every frame lights the whole probe): its largest value
        (ePIE) or (1 − a)·I_P + a·max I_P per pixel (rPIE)."""
        largest = self.problem.xp.max(object_power)
        if self.rpie_alpha is None:
            return largest
        return (1.0 - self.rpie_alpha) * object_power + (self.rpie_alpha * largest + _TINY)
