"""DM and RAAR: one update rule, two sets of coefficients (docs/algorithms.md, "Engines").

    ψ ← ψ + b·Π_M(c·Π_Oψ + (1 − c)·ψ) + a·Π_Oψ − (a + b)·ψ
    DM: (a, b, c) = (−α, 1, 1 + α)        RAAR: (a, b, c) = (1 − 2β, β, 2)

Π_Oψ is represented by the current object and probe (ψ_jkl = P_k·O_l,j), which the overlap
projection recomputes from all exit waves after each Fourier step (Thibault et al. 2009).
The per-iteration Fourier errors are those of the Fourier projection's input, as in PtyPy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .metrics import OBJECT_STEP_ROWS, FourierErrorSums
from .options import DMOptions, ProjectionOptions, RAAROptions
from .problem import Problem
from .registry import MemoryTerms, register

#: Fused: the mix block (FFTs in place: it becomes the detector side and then Π_M) and about one more wave of
#: FFT workspace (fitted: docs/design.md, "Memory model"); reference kernels allocate every intermediate
#: (amplitudes, masks, products) and a P·O_j scratch block. Object buffers: numerator, new object, illumination.
_MEMORY = MemoryTerms(fused=(1, 1), reference=(16.5, 1), object_buffers=2.5, subpixel=5.5)
#: Exit waves are read twice per iteration once the probe is refined (probe_update_start, default 2): the update
#: reads and writes them, and the probe's update reads them again with the new object (overlap_updates = 1).
_FORM = dict(memory=_MEMORY, propagations_per_frame=2, keeps_exit_waves=True, distributed="exact",
             wave_reads_per_iteration=2)


@register("RAAR", options=RAAROptions, **_FORM)
@register("DM", options=DMOptions, **_FORM)
class ProjectionEngine:
    """Keeps every exit wave (N·M_p·M_o·Y·X complex64): the memory term that makes big data not fit.
    Per frame: one propagation forward and one back through the Fourier projection."""

    def constants(self) -> dict[str, Any]:
        """Values this run derived from the data (for the record)."""
        return {"pbound": self.pbound}

    def __init__(self, problem: Problem, options: ProjectionOptions) -> None:
        self.problem = problem
        self.options = options
        self.a, self.b, self.c = options.update_coefficients()
        self.kernels = problem.backend.kernels
        self.pbound = options.resolved_pbound(problem.noise_floor, problem.zero_fraction)
        shape = problem.shape
        waves_shape = (problem.n_frames, shape.probe_modes, shape.object_modes, *problem.frame_shape)
        self.exit_waves = problem.frame_store(None, waves_shape, np.complex64)
        self._illumination: Any = None
        for start, stop in problem.blocks():
            waves = self.exit_waves.read(start, stop)
            waves[...] = problem.overlap_waves(start, stop)
            self.exit_waves.write(start, stop, waves)

    # --- one iteration -----------------------------------------------------------------------
    def iterate(self, iteration: int) -> FourierErrorSums:
        problem, kernels, timer = self.problem, self.kernels, self.problem.timer
        errors = FourierErrorSums()
        numerator = problem.backend.zeros(problem.object.shape, problem.xp.complex64)
        for start, stop in problem.blocks():
            with timer("transfer"):
                waves = self.exit_waves.read(start, stop)
                intensities = problem.coherent_part(problem.intensities.read(start, stop))
            frames = slice(start, stop)
            # P·O_j between the two halves, where the backend keeps it there (not on the fused CPU path)
            overlap = self._buffer("overlap", start, stop) if problem.difference_map_scratch else None
            with timer("exit_waves"):
                mix = problem.mixed_overlap_waves(frames, waves, self.c, self.a, self.b,
                                                  self._buffer("mix", start, stop), overlap)
            with timer("propagation"):
                detector = problem.forward(frames, mix, overwrite=True)
            with timer("fourier_projection"):
                squared, absolute = kernels.fourier_projection(detector, intensities, problem.mask,
                                                               self.pbound)
            with timer("propagation"):
                projected = problem.backward(frames, detector, overwrite=True)
            with timer("exit_waves"):
                problem.difference_map_update(frames, waves, projected, self.a, self.b, overlap)
            with timer("overlap_update"):
                self._add_object_terms(numerator, waves, start, stop)
            with timer("transfer"):
                self.exit_waves.write(start, stop, waves)
            errors.add(problem.xp.sum(squared), problem.xp.sum(absolute))
        with timer("overlap_update"):
            self._overlap_projection(iteration, numerator)
        return errors

    def _buffer(self, name: str, start: int, stop: int) -> Any:
        return self.problem.block_buffer(name, start, stop, self.exit_waves.shape[1:], self.problem.xp.complex64)

    def mix_probe_modes(self, mix: Any) -> None:
        """The probe's modes were mixed (engines/modes.py): mix every exit wave's probe-mode axis the same way,
        so ψ_jk = P_k·O_j holds in the new basis."""
        for start, stop in self.problem.blocks():
            waves = self.exit_waves.read(start, stop)
            for frame in range(stop - start):  # one frame at a time: the mixing's temporaries stay small
                waves[frame] = mix(waves[frame], axis=0)
            self.exit_waves.write(start, stop, waves)

    # --- overlap projection Π_O ---------------------------------------------------------------
    def _add_object_terms(self, numerator: Any, waves: Any, start: int, stop: int) -> None:
        self.problem.add_object_terms(numerator, slice(start, stop), waves)

    def _object_numerator(self) -> Any:
        problem = self.problem
        numerator = problem.backend.zeros(problem.object.shape, problem.xp.complex64)
        for start, stop in problem.blocks():
            self._add_object_terms(numerator, self.exit_waves.read(start, stop), start, stop)
        return numerator

    def _illumination_map(self) -> Any:
        """Σ_j Σ_k |P_k(r − r_j)|², (1, A, B); recomputed only after the probe changes."""
        if self._illumination is None:
            self._illumination = self.problem.illumination()
        return self._illumination

    def _update_object(self, numerator: Any) -> None:
        problem, xp = self.problem, self.problem.xp
        with problem.timer("communication"):
            numerator = problem.comm.allreduce_sum(numerator)
        illumination = self._illumination_map()
        with problem.timer("object_update"):  # per object: what does not shrink as ranks share the frames
            inertia = self.options.object_inertia * float(xp.max(illumination))
            # (c·O + numerator) / (c + illumination), in the numerator's memory and OBJECT_STEP_ROWS rows at a
            # time: c·O and c + illumination would be object-sized temporaries (168 MB at a 3752² object, 10.8 GB at
            # 30 018²); the same operations on every element
            for start in range(0, numerator.shape[-2], OBJECT_STEP_ROWS):
                rows = slice(start, start + OBJECT_STEP_ROWS)
                numerator[..., rows, :] += inertia * problem.object[..., rows, :]
                numerator[..., rows, :] /= inertia + illumination[..., rows, :]
            problem.object = numerator

    def _update_probe(self) -> None:
        problem, xp = self.problem, self.problem.xp
        numerator = xp.zeros_like(problem.probe)
        denominator = problem.backend.zeros(problem.frame_shape, xp.float32)
        for start, stop in problem.blocks():
            block_numerator, block_denominator = problem.probe_update_terms(slice(start, stop),
                                                                            self.exit_waves.read(start, stop))
            numerator += block_numerator
            denominator += block_denominator
        with problem.timer("communication"):
            numerator = problem.comm.allreduce_sum(numerator)
            denominator = problem.comm.allreduce_sum(denominator)
        with problem.timer("object_update"):
            inertia = self.options.probe_inertia * float(xp.max(denominator))
            problem.probe = (inertia * problem.probe + numerator) / (inertia + denominator)
        self._illumination = None

    def release(self) -> None:
        """The stage is over: free the exit waves now (a scratch file's space with them)."""
        close = getattr(self.exit_waves, "close", None)
        if close is not None:
            close()

    def frames_moved(self, frames: np.ndarray) -> None:
        """Position refinement moved ``frames`` (this rank's): the illumination map is of the old places. With
        sub-pixel placement their exit waves start again from P·O where the frames are now: kept, they pulled
        each frame back the old way, and with moves every iteration the tests' scan drifted to 4 pixels RMS
        (restarted: within 0.11 pixels of the truth). Whole-pixel moves are rare and keep theirs: restarted, DM
        on farfield-64-256 1.5 pixels off ended at object error 0.054 instead of 0.038."""
        self._illumination = None
        problem = self.problem
        if problem.subpixel is None:
            return
        for start, stop in problem.blocks():
            inside = frames[(frames >= start) & (frames < stop)]
            if not len(inside):
                continue
            waves = self.exit_waves.read(start, stop)
            waves[problem.backend.index_array(inside - start)] = problem.waves_at(inside)
            self.exit_waves.write(start, stop, waves)

    def _overlap_projection(self, iteration: int, numerator: Any) -> None:
        """Alternate object and probe updates ``overlap_updates`` times; probe fixed before its start."""
        update_probe = iteration >= self.options.probe_update_start
        for round_index in range(self.options.overlap_updates):
            self._update_object(numerator if round_index == 0 else self._object_numerator())
            if not update_probe:
                break
            self._update_probe()
