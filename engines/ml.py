"""Maximum likelihood by non-linear conjugate gradients (Thibault & Guizar-Sicairos 2012).

    Gaussian: L = Σ_j Σ M w (Î_j − I_j)², w = 1/(I + 1);   Poisson: L = Σ M (Î − I ln Î)
    g_O = Σ_jk P_k* D⁻¹[2 (∂L/∂Î) D ψ_jk],   g_P = Σ_jl O_l,j* D⁻¹[2 (∂L/∂Î) D ψ_jl]

Directions by Polak–Ribière with restart, the probe gradient scaled to the object's (PtyPy's
scale_precond). Along (h_O, h_P) the exit wave (P + t h_P)(O + t h_O) is quadratic in t, so Î(t)
is a quartic per pixel and the Gaussian L(t) a degree-8 polynomial whose 9 coefficients come from
one pass over D(P·O), D(P·h_O + h_P·O), D(h_P·h_O): it is minimised exactly. For the Poisson
likelihood the step is one Newton step on L(t) from the same quartic (as in PtyPy).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from .metrics import FourierErrorSums
from .options import MLOptions
from .problem import Problem
from .registry import MemoryTerms, register

#: Memory of the probe/object gradient scale between iterations (PtyPy's scale_p_o_memory).
SCALE_MEMORY = 0.9
#: δ of the mini-batch preconditioner M = Σ|P|² + δ·max: LSQML-like damping of dimly lit pixels.
DEFAULT_PRECONDITIONER = 0.1


@register("ML", options=MLOptions, propagations_per_frame=5, keeps_exit_waves=False, distributed="exact",
          memory=MemoryTerms(fused=(3.5, 0), reference=(12.5, 3), object_buffers=7.0, subpixel=4.5),
          intensity_reads_per_iteration=2, block_limit=lambda options: options.batch_frames)
class MaximumLikelihoodEngine:
    """Keeps gradients and directions (≈ 3× object + 3× probe) and one block of exit waves.
    Propagations per frame: gradient forward and back; line search D(P·O), D(P·h_O + h_P·O), D(h_P·h_O).
    Block temporaries: the gradient pass and line search (P·O, a, b, c, linear), in block buffers read
    straight from the object where the backend can (no views; the reference path also gathers views of
    object and direction); object buffers: gradients, directions, trial objects."""

    def constants(self) -> dict[str, Any]:
        """ML's flux constants are in photons (the data are scaled to photons at load)."""
        return {"noise": self.options.noise, "regularizer_amplitude": self.regularizer_amplitude}

    def __init__(self, problem: Problem, options: MLOptions) -> None:
        self.problem = problem
        self.options = options
        self.kernels = problem.backend.kernels
        self.previous_gradient: tuple[Any, Any] | None = None
        self.direction: tuple[Any, Any] | None = None
        self.scale: float | None = None
        self.regularizer_amplitude = self._regularizer_amplitude() if options.regularizer > 0 else 0.0
        #: D(P·O) of the current object and probe, kept from the gradient pass for the line search when
        #: every frame is in one block: the propagated "waves" buffer itself, the gradient pass working on a copy
        #: in the line search's "linear" buffer, so it costs no block the line search does not already hold (a
        #: separate copy did: ML measured 1.21× its predicted memory with the whole scan in one block).
        self._forward_waves: Any = None
        self._forward_of: tuple[Any, Any] = (None, None)
        #: Mini-batches step along preconditioned gradients (default δ 0.1 of the maximum); the full-gradient
        #: CG only when asked (``preconditioner``).
        self.fraction = options.preconditioner if options.preconditioner or options.batch_frames is None else \
            DEFAULT_PRECONDITIONER
        self._share = 1.0
        self._object_power: Any = None

    # --- likelihood and its gradient ----------------------------------------------------------
    def gradients(self, errors: FourierErrorSums | None = None, blocks: list[tuple[int, int]] | None = None
                  ) -> tuple[Any, Any, float]:
        """(g_O, g_P, L) summed over the frames of ``blocks`` (default: all) and every rank, plus the
        regulariser (its share ``len(blocks)/all`` for a mini-batch)."""
        problem, kernels, timer, xp = self.problem, self.kernels, self.problem.timer, self.problem.xp
        gradient_object = xp.zeros_like(problem.object)
        gradient_probe = xp.zeros_like(problem.probe)
        object_power = problem.backend.zeros(problem.frame_shape, xp.float32)
        loss = 0.0
        for start, stop in self._blocks(blocks):
            with timer("transfer"):
                intensities = problem.coherent_part(problem.intensities.read(start, stop))
            with timer("exit_waves"):
                waves = self._waves(problem.probe, problem.object, start, stop, "waves")
            with timer("propagation"):
                detector = problem.forward(slice(start, stop), waves, overwrite=True)
            if problem.single_block and blocks is None:  # a mini-batch's pieces may share the one block
                with timer("exit_waves"):  # kept for the line search; the gradient works on a copy in the buffer
                    self._forward_waves = detector  # the line search overwrites next ("linear"): no extra block
                    self._forward_of = (problem.object, problem.probe)
                    detector = problem.block_buffer("linear", start, stop, detector.shape[1:], detector.dtype)
                    detector[...] = self._forward_waves
            with timer("fourier_projection"):
                block_loss, squared, absolute = kernels.likelihood_weights(detector, intensities, problem.mask,
                                                                           self.options.noise)
                loss += float(block_loss)
                if errors is not None:
                    errors.add(xp.sum(squared), xp.sum(absolute))
            with timer("propagation"):
                chi = problem.backward(slice(start, stop), detector, overwrite=True)
            with timer("overlap_update"):
                problem.add_object_terms(gradient_object, slice(start, stop), chi)
                probe_terms, power_terms = problem.probe_update_terms(slice(start, stop), chi)
                gradient_probe += probe_terms
                object_power += power_terms
        with timer("communication"):
            gradient_object = problem.comm.allreduce_sum(gradient_object)
            gradient_probe = problem.comm.allreduce_sum(gradient_probe)
            loss = problem.comm.allreduce_scalars([loss])[0]
            if self.fraction is not None:
                self._object_power = problem.comm.allreduce_sum(object_power)
        if self.regularizer_amplitude:
            loss += self._add_regularizer_gradient(gradient_object, self._share)
        return gradient_object, gradient_probe, loss

    def _blocks(self, blocks: list[tuple[int, int]] | None) -> Any:
        return self.problem.blocks() if blocks is None else blocks

    def _waves(self, probe: Any, obj: Any, start: int, stop: int, name: str) -> Any:
        """probe·obj over frames start..stop in the block buffer ``name``, read straight from the object
        (no gathered views: one pass, no allocation)."""
        problem = self.problem
        shape = problem.shape
        out = problem.block_buffer(name, start, stop, (shape.probe_modes, shape.object_modes, *problem.frame_shape),
                                   problem.xp.complex64)
        return problem.waves_at(slice(start, stop), out, probe, obj)

    # --- conjugate directions ------------------------------------------------------------------
    def _dot(self, a: Any, b: Any) -> float:
        """Re⟨a, b⟩ in one BLAS-style pass (vdot: 6× faster than conj-multiply-sum, which allocated two
        object-sized temporaries; mini-batches take several dots per batch). Relative rounding ~1e-7."""
        return float(self.problem.xp.vdot(a.reshape(-1), b.reshape(-1)).real)

    def iterate(self, iteration: int) -> FourierErrorSums:
        errors = FourierErrorSums()
        batches = self.batches()
        self._share = 1.0 / len(batches)  # the regulariser's share per update: the same on every rank
        if len(batches) == 1:
            self._update(iteration, errors, None)
        else:
            for batch in batches:
                self.previous_gradient = None  # each batch's likelihood is another function: no conjugacy
                self._update(iteration, errors, batch)
        return errors

    def batches(self) -> list[list[tuple[int, int]] | None]:
        """About N/batch_frames batches of about batch_frames frames, the same count on every rank, and no more
        than the largest rank has frames (so no batch is empty on every rank; a rank may have none in one). A batch
        takes every K-th piece, so it spans the scan; the pieces are the compute blocks, cut into near-equal parts
        only where there are fewer blocks than batches (a requested large block never makes the batches fewer
        than asked, and an automatic one, capped at a batch, is left whole for the read-ahead)."""
        problem, batch_frames = self.problem, self.options.batch_frames
        if batch_frames is None:
            return [None]
        largest_rank = -(-problem.n_frames_total // problem.comm.size)
        count = min(max(1, round(problem.n_frames_total / batch_frames)), largest_rank)
        if count == 1:
            return [None]
        pieces = list(problem.blocks())
        if len(pieces) < count:
            largest = max(1, problem.n_frames // count)
            pieces = [piece for block in pieces for piece in _cut(block, largest)]
        return [pieces[b::count] for b in range(count)]

    def _update(self, iteration: int, errors: FourierErrorSums, blocks: list[tuple[int, int]] | None) -> None:
        """One step on the frames of ``blocks`` (all when None): gradient, direction, exact line search."""
        xp = self.problem.xp
        gradient_object, gradient_probe, _ = self.gradients(errors, blocks)
        update_probe = iteration >= self.options.probe_update_start
        if not update_probe:
            gradient_probe = xp.zeros_like(gradient_probe)
        with self.problem.timer("object_update"):  # per object: conjugate directions on object and probe
            direction_object, direction_probe = self._next_direction(gradient_object, gradient_probe, update_probe,
                                                                     blocks)
        step = self.line_search(direction_object, direction_probe, gradient_object, gradient_probe, blocks)
        if step is None:  # not a descent direction: restart along the (scaled) gradient
            self.previous_gradient = None
            direction_object, direction_probe = self._next_direction(gradient_object, gradient_probe,
                                                                     update_probe, blocks)
            step = self.line_search(direction_object, direction_probe, gradient_object, gradient_probe,
                                    blocks) or 0.0
        with self.problem.timer("object_update"):
            self.problem.object = self.problem.object + step * direction_object
            if update_probe:
                self.problem.probe = self.problem.probe + step * direction_probe
        self._forward_waves = None  # D(P·O) of the previous object

    def mix_probe_modes(self, mix: Any) -> None:
        """The probe's modes were mixed (engines/modes.py): mix the probe parts of the conjugate-gradient state
        the same way (a unitary mixing keeps every dot product, so the conjugacy survives)."""
        if self.direction is not None:
            self.direction = (self.direction[0], mix(self.direction[1]))
        if self.previous_gradient is not None:
            first, second = self.previous_gradient
            if isinstance(first, tuple):  # preconditioned: ((w_object, w_probe), ⟨g, z⟩)
                self.previous_gradient = ((first[0], mix(first[1])), second)
            else:
                self.previous_gradient = (first, mix(second))
        self._forward_waves = None

    def frames_moved(self, frames: np.ndarray) -> None:
        """Position refinement moved frames: the kept D(P·O) is of the old places. With the Gaussian likelihood the
        conjugate direction is kept: the moves are small, Polak–Ribière's β ≥ 0 and the exact line search restart
        where the old direction no longer descends, and restarting at every refinement made the full-gradient CG a
        steepest descent (P25, sub-pixel, refined from iteration 10, 50 iterations: R-factor 0.0686 restarting,
        0.0634 keeping it). The Poisson likelihood's single Newton step does not absorb a stale direction (0.0823
        restarting, 0.0997 keeping it), so there conjugate gradients restart."""
        if self.options.noise != "gaussian":
            self.direction = self.previous_gradient = None
        self._forward_waves = None

    def _preconditioned_descent(self, gradient_object: Any, gradient_probe: Any,
                                blocks: list[tuple[int, int]] | None) -> tuple[Any, Any]:
        """−M⁻¹g, M = diag(Σ|P|² + δ_O, Σ|O|² + δ_P), δ = ``preconditioner`` × the maximum: the gradient times a
        negative real reciprocal (one pass per array; a complex division and a negation took three)."""
        xp, fraction = self.problem.xp, self.fraction
        illumination, object_power = self.problem.illumination(blocks), self._object_power
        object_factor = -1.0 / (illumination + fraction * float(xp.max(illumination)))
        probe_factor = -1.0 / (object_power + fraction * float(xp.max(object_power)))
        return gradient_object * object_factor, gradient_probe * probe_factor

    def _next_direction(self, gradient_object: Any, gradient_probe: Any, update_probe: bool,
                        blocks: list[tuple[int, int]] | None = None) -> tuple[Any, Any]:
        """h = −M g + β h_prev, M = diag(1, s): Polak–Ribière with restart (β ≥ 0)."""
        if self.fraction is not None:
            return self._next_preconditioned_direction(gradient_object, gradient_probe, blocks)
        object_norm = self._dot(gradient_object, gradient_object)
        probe_norm = self._dot(gradient_probe, gradient_probe)
        if update_probe and self.options.scale_precond and probe_norm > 0:
            scale = object_norm / probe_norm
            self.scale = scale if self.scale is None else self.scale**SCALE_MEMORY * scale ** (1 - SCALE_MEMORY)
        elif self.scale is None:
            self.scale = 1.0
        scale = self.scale
        beta = 0.0
        if self.previous_gradient is not None and self.direction is not None:
            old_object, old_probe = self.previous_gradient
            numerator = (object_norm - self._dot(gradient_object, old_object)
                         + scale * (probe_norm - self._dot(gradient_probe, old_probe)))
            denominator = self._dot(old_object, old_object) + scale * self._dot(old_probe, old_probe)
            beta = max(0.0, numerator / denominator) if denominator > 0 else 0.0
        direction_object = -gradient_object
        direction_probe = -scale * gradient_probe
        if beta > 0.0:
            direction_object = direction_object + beta * self.direction[0]
            direction_probe = direction_probe + beta * self.direction[1]
        self.previous_gradient = (gradient_object, gradient_probe)
        self.direction = (direction_object, direction_probe)
        return direction_object, direction_probe

    def _next_preconditioned_direction(self, gradient_object: Any, gradient_probe: Any,
                                       blocks: list[tuple[int, int]] | None) -> tuple[Any, Any]:
        """h = −z + β h_prev, z = M⁻¹g, β = ⟨g, z − z_prev⟩/⟨g_prev, z_prev⟩ (preconditioned Polak–Ribière),
        written with w = −z."""
        w_object, w_probe = self._preconditioned_descent(gradient_object, gradient_probe, blocks)
        gz = -(self._dot(gradient_object, w_object) + self._dot(gradient_probe, w_probe))
        beta = 0.0
        if self.previous_gradient is not None and self.direction is not None:
            (old_w_object, old_w_probe), old_gz = self.previous_gradient
            numerator = gz + self._dot(gradient_object, old_w_object) + self._dot(gradient_probe, old_w_probe)
            beta = max(0.0, numerator / old_gz) if old_gz > 0 else 0.0
        direction_object, direction_probe = w_object, w_probe
        if beta > 0.0:
            direction_object = direction_object + beta * self.direction[0]
            direction_probe = direction_probe + beta * self.direction[1]
        self.previous_gradient = ((w_object, w_probe), gz)  # what β needs: −z and ⟨g, z⟩
        self.direction = (direction_object, direction_probe)
        return direction_object, direction_probe

    # --- exact line search -----------------------------------------------------------------------
    def line_search_coefficients(self, direction_object: Any, direction_probe: Any,
                                 blocks: list[tuple[int, int]] | None = None) -> np.ndarray:
        """Polynomial coefficients (ascending powers of t) of L(O + t h_O, P + t h_P)."""
        problem, kernels, timer, xp = self.problem, self.kernels, self.problem.timer, self.problem.xp
        moving_probe = bool(xp.any(direction_probe != 0))
        gaussian = self.options.noise == "gaussian"
        total = np.zeros(9 if gaussian else 3)
        kept = (self._forward_waves is not None and self._forward_of[0] is problem.object
                and self._forward_of[1] is problem.probe)
        for start, stop in self._blocks(blocks):
            with timer("transfer"):
                intensities = problem.coherent_part(problem.intensities.read(start, stop))
            with timer("exit_waves"):
                linear = self._waves(problem.probe, direction_object, start, stop, "linear")
                if moving_probe:
                    linear += self._waves(direction_probe, problem.object, start, stop, "quadratic")
            with timer("propagation"):
                b = problem.forward(slice(start, stop), linear, overwrite=True)
            c = None
            if moving_probe:
                with timer("exit_waves"):
                    quadratic = self._waves(direction_probe, direction_object, start, stop, "quadratic")
                with timer("propagation"):
                    c = problem.forward(slice(start, stop), quadratic, overwrite=True)
            a = self._forward_waves
            if not kept:
                with timer("exit_waves"):
                    waves = self._waves(problem.probe, problem.object, start, stop, "waves")
                with timer("propagation"):
                    a = problem.forward(slice(start, stop), waves, overwrite=True)
            with timer("line_search"):
                total += kernels.line_search_polynomial(a, b, c, intensities, problem.mask, self.options.noise)
        with timer("communication"):
            total = np.array(problem.comm.allreduce_scalars(total.tolist()))
        if self.regularizer_amplitude:
            total[:3] += self._share * self._regularizer_coefficients(direction_object)
        return total

    def line_search(self, direction_object: Any, direction_probe: Any, gradient_object: Any,
                    gradient_probe: Any, blocks: list[tuple[int, int]] | None = None) -> float | None:
        """The step t minimising L along the direction, or None when it is not a descent direction."""
        slope = self._dot(gradient_object, direction_object) + self._dot(gradient_probe, direction_probe)
        if not slope < 0:
            return None
        # Gradients scale with the photon count; a direction as long as the object keeps the
        # quartic's float32 terms in range. The step is rescaled back at the end.
        # A Python float: a NumPy float64 scalar would promote the complex64 directions to complex128.
        length = math.sqrt(self._dot(direction_object, direction_object) / self._dot(self.problem.object,
                                                                                     self.problem.object))
        coefficients = self.line_search_coefficients(direction_object / length, direction_probe / length, blocks)
        if self.options.noise == "poisson":
            curvature = coefficients[2]
            return -coefficients[1] / curvature / length if curvature > 0 else None
        return minimise_polynomial(coefficients) / length

    # --- object smoothness regulariser (PtyPy's Regul_del2) --------------------------------------
    def _regularizer_amplitude(self) -> float:
        """λ rescaled like PtyPy: λ·(N·ΣM)/(8·A·B·(A·B/ΣI)), so one value fits any data size."""
        problem, xp = self.problem, self.problem.xp
        total_power = sum(float(xp.sum(problem.intensities.read(start, stop))) for start, stop in problem.blocks())
        total_power = problem.comm.allreduce_scalars([total_power])[0]
        measured_points = problem.n_frames_total * problem.valid_pixels
        object_pixels = float(np.prod(problem.object.shape))
        return self.options.regularizer * measured_points / (8.0 * object_pixels * object_pixels / total_power)

    def _differences(self, obj: Any) -> tuple[Any, Any]:
        return obj[:, 1:, :] - obj[:, :-1, :], obj[:, :, 1:] - obj[:, :, :-1]

    def _add_regularizer_gradient(self, gradient_object: Any, share: float = 1.0) -> float:
        """Adds 2∂R/∂O* of R = share·λ Σ |∇O|² to the gradient; returns R."""
        amplitude = share * self.regularizer_amplitude
        rows, cols = self._differences(self.problem.object)
        gradient_object[:, 1:, :] += 2.0 * amplitude * rows
        gradient_object[:, :-1, :] -= 2.0 * amplitude * rows
        gradient_object[:, :, 1:] += 2.0 * amplitude * cols
        gradient_object[:, :, :-1] -= 2.0 * amplitude * cols
        return amplitude * (self._dot(rows, rows) + self._dot(cols, cols))

    def _regularizer_coefficients(self, direction_object: Any) -> np.ndarray:
        amplitude = self.regularizer_amplitude
        rows, cols = self._differences(self.problem.object)
        step_rows, step_cols = self._differences(direction_object)
        return amplitude * np.array([self._dot(rows, rows) + self._dot(cols, cols),
                                     2.0 * (self._dot(rows, step_rows) + self._dot(cols, step_cols)),
                                     self._dot(step_rows, step_rows) + self._dot(step_cols, step_cols)])


def _cut(block: tuple[int, int], largest: int) -> list[tuple[int, int]]:
    """``block`` as near-equal pieces of at most ``largest`` frames."""
    start, stop = block
    parts = -(-(stop - start) // largest)
    bounds = [start + (stop - start) * k // parts for k in range(parts + 1)]
    return list(itertools.pairwise(bounds))


def minimise_polynomial(coefficients: np.ndarray) -> float:
    """The real t minimising Σ c_n tⁿ (ascending): compare the real roots of its derivative."""
    coefficients = np.trim_zeros(np.asarray(coefficients, dtype=np.float64), "b")
    if not np.all(np.isfinite(coefficients)):
        return math.nan  # the caller's finiteness check names the engine and iteration
    derivative = np.arange(1, len(coefficients)) * coefficients[1:]
    roots = np.roots(derivative[::-1]) if len(derivative) > 1 else np.array([])
    real = roots[np.abs(roots.imag) <= 1e-9 * np.maximum(1.0, np.abs(roots.real))].real
    if real.size == 0:
        return 0.0
    values = np.polynomial.polynomial.polyval(real, coefficients)
    return float(real[np.argmin(values)])
