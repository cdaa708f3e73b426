"""ePIE and rPIE: frame-by-frame updates in a seeded random order (docs/algorithms.md, "Engines").

    ψ = P·O_j;  Δ = Π_Mψ − ψ
    O_j += α Σ_k P_k* Δ_k / w_O,   P_k += β Σ_l O_l,j* Δ_l / w_P
ePIE: w_O = max Σ_k|P_k|², w_P = max Σ_l|O_l,j|² (Maiden & Rodenburg 2009).
rPIE: w = (1 − a)|·|² + a·max|·|² per pixel (Maiden, Johnson & Li 2017).
Both updates use the object and probe from before the frame's update. Under MPI each rank sweeps its
own frames and ranks merge object and probe by an illumination-weighted average every iteration:
a different algorithm from serial ePIE, measured as such.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .metrics import FourierErrorSums
from .options import EPIEOptions, RPIEOptions
from .problem import Problem
from .registry import MemoryTerms, register

#: One frame at a time: its temporaries do not grow with the block (fused: + the frame step's scratch, two
#: view-sized arrays kept per frame shape). Object buffers: a copy and a step.
_FORM = dict(memory=MemoryTerms(fused=(5, 3), reference=(16, 1), object_buffers=2.0), propagations_per_frame=2,
             keeps_exit_waves=False, distributed="merged", frames_per_fft_batch=1)


@register("rPIE", options=RPIEOptions, **_FORM)
@register("ePIE", options=EPIEOptions, **_FORM)
class PIEEngine:
    """Keeps no exit waves: one frame's worth of temporaries at a time. Frames are propagated one at a
    time: that is the algorithm, and the FFT floor measures it so."""

    def constants(self) -> dict[str, Any]:
        return {"pbound": self.pbound}

    def __init__(self, problem: Problem, options: EPIEOptions) -> None:
        self.problem = problem
        self.options = options
        self.kernels = problem.backend.kernels
        self.pbound = options.resolved_pbound(problem.noise_floor, problem.zero_fraction)
        self.rpie_alpha = options.rpie_alpha if isinstance(options, RPIEOptions) else None
        # One stream per rank: frame orders differ between ranks but repeat for the same seed.
        self._rng = np.random.default_rng([problem.run.seed, problem.comm.rank])

    def frame_order(self) -> np.ndarray:
        return self._rng.permutation(self.problem.n_frames)

    def iterate(self, iteration: int) -> FourierErrorSums:
        problem = self.problem
        update_probe = iteration >= self.options.probe_update_start
        errors = FourierErrorSums()
        order = self.frame_order()
        with problem.timer("transfer"):
            block_intensities = problem.intensities.read(0, problem.n_frames) if problem.intensities.resident else None
        squared_total = absolute_total = 0.0
        # Streamed or on disk, the order's frames come in a block of frames_per_block at a time, the next block
        # while this one computes: one hand-over per block, not per frame (the memory model's 2 blocks).
        chunk = max(1, len(order) if block_intensities is not None else problem.frames_per_block)
        for chunk_start in range(0, len(order), chunk):
            frames = order[chunk_start:chunk_start + chunk]
            if block_intensities is None:
                with problem.timer("transfer"):
                    following = order[chunk_start + chunk:chunk_start + 2 * chunk]
                    if len(following):
                        problem.intensities.gather_ahead(following)
                    chunk_intensities = problem.intensities.gather(frames, None)
            for index, frame in enumerate(frames.tolist()):
                intensity = problem.coherent_part(block_intensities[frame:frame + 1] if block_intensities is not None
                                                  else chunk_intensities[index:index + 1])
                squared, absolute = self._update_frame(frame, intensity, update_probe)
                # Summed where they are: reading a device scalar per frame would stall the GPU each frame.
                squared_total, absolute_total = squared_total + squared, absolute_total + absolute
        errors.add(squared_total, absolute_total)
        if problem.comm.size > 1:
            with problem.timer("communication"):
                problem.comm.merge_weighted(problem)
        return errors

    def _update_frame(self, frame: int, intensity: Any, update_probe: bool) -> tuple[Any, Any]:
        problem, kernels, timer = self.problem, self.kernels, self.problem.timer
        row, col = (int(v) for v in problem.corners[frame])
        height, width = problem.frame_shape
        view = problem.object[:, row:row + height, col:col + width]  # a view: updated in place
        this_frame = np.array([frame])
        probe = problem.probe if problem.subpixel is None else problem.subpixel.shifted(problem.probe, this_frame)[0]
        with timer("exit_waves"):
            old_view, waves, detector = kernels.frame_exit_waves(probe, view)
        with timer("propagation"):
            detector = problem.forward(this_frame, detector, overwrite=True)
        with timer("fourier_projection"):
            squared, absolute = kernels.fourier_projection(detector, intensity, problem.mask, self.pbound)
        with timer("propagation"):
            projected = problem.backward(this_frame, detector, overwrite=True)
        with timer("overlap_update"):
            new_probe = kernels.pie_update(view, old_view, probe, projected[0], waves[0], self.options.alpha,
                                           self.options.beta if update_probe else None, self.rpie_alpha)
            if new_probe is not None and problem.subpixel is not None:  # the step, moved back onto the probe
                new_probe = problem.probe + problem.subpixel.adjoint_sum((new_probe - probe)[None], this_frame)
            if new_probe is not None:
                problem.probe = new_probe
        return squared[0], absolute[0]
