"""Position refinement: each frame moved to where its own pattern says it was measured.

A frame measured at r + δ but placed at r has the exit wave P·O(x + r + δ) ≈ P·(O_j + δ·∇O_j). With
ψ = P·O_j and the Fourier projection's correction χ = Π_M ψ − ψ, the shift that best explains χ solves the
2 × 2 least-squares system (per frame, summed over modes and pixels, ∂ along rows and columns)

    Σ_b Re⟨P ∂_a O_j, P ∂_b O_j⟩ δ_b = Re⟨P ∂_a O_j, χ⟩,

the gradient form of position correction (Odstrčil, Menzel & Guizar-Sicairos 2018, Opt. Express 26, 3108).

Its direction is good but its size is not: the modulus projection restores only part of the change a shift
makes (measured on farfield-64-256 with the true object and probe: δ ≈ 0.35 × the true offset, correlation
0.9), so a position set from δ alone stops about a pixel short. On whole pixels (``validation.frame_corners``)
the refinement takes δ as a direction only: each axis whose |δ| exceeds DIRECTION_THRESHOLD proposes a one-pixel
move that way. With sub-pixel placement (engines/subpixel.py) a frame is proposed δ itself, less the scan's affine
part, and repeated refinements close the undershoot. Either way the data decide: a frame moves only when its
Fourier error at the proposed place is lower than where it is. That costs one more forward propagation of the
frames that propose a move, and it never makes a frame fit worse.

Written once on the backend's array namespace and run after an iteration on the object and probe that
iteration returned, so every engine, backend and rank count refines the same way (each rank its own frames).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .validation import frame_corners

#: |δ| (pixels) above which an axis proposes a one-pixel move; below it the frame is taken to be in place.
DIRECTION_THRESHOLD = 0.1
#: With sub-pixel placement, a frame whose δ is below this (pixels) on both axes is left where it is.
SUBPIXEL_THRESHOLD = 0.01
#: Frames propagated together (the refinement's temporaries: a few exit-wave sets of this many frames).
STEP_FRAMES = 16


def object_gradients(xp: Any, obj: Any) -> tuple[Any, Any]:
    """∂O/∂row and ∂O/∂col by central differences (zero on the border rows and columns)."""
    rows, cols = xp.zeros_like(obj), xp.zeros_like(obj)
    rows[:, 1:-1, :] = (obj[:, 2:, :] - obj[:, :-2, :]) * 0.5
    cols[:, :, 1:-1] = (obj[:, :, 2:] - obj[:, :, :-2]) * 0.5
    return rows, cols


def _steps(problem: Any, frames: np.ndarray | None = None) -> Any:
    """(start, stop, intensities of start..stop) over this rank's frames, STEP_FRAMES at a time; with ``frames``,
    only the blocks holding one of them are read (streamed intensities cross the link only where needed)."""
    step = max(1, min(problem.frames_per_block, STEP_FRAMES))
    for block_start, block_stop in problem.blocks():
        if frames is not None and not np.any((frames >= block_start) & (frames < block_stop)):
            continue
        intensities = problem.coherent_part(problem.intensities.read(block_start, block_stop))
        for start in range(block_start, block_stop, step):
            stop = min(start + step, block_stop)
            yield start, stop, intensities[start - block_start:stop - block_start]


def frame_shifts(problem: Any) -> tuple[np.ndarray, np.ndarray]:
    """(n_frames, 2) least-squares shift (rows, columns) of each of this rank's frames from its corner, and
    each frame's Fourier error Σ M (|DΨ| − √I)² where it is."""
    xp, backend, kernels = problem.xp, problem.backend, problem.backend.kernels
    gradient_rows, gradient_cols = object_gradients(xp, problem.object)
    sums = np.zeros((problem.n_frames, 5))  # ⟨r,r⟩, ⟨r,c⟩, ⟨c,c⟩, ⟨r,χ⟩, ⟨c,χ⟩ per frame
    errors = np.zeros(problem.n_frames)
    axes = (1, 2, 3, 4)
    for start, stop, intensities in _steps(problem):
        waves = problem.overlap_waves(start, stop)
        detector = problem.forward(slice(start, stop), waves, overwrite=False)
        squared, _ = kernels.fourier_projection(detector, intensities, problem.mask, None)
        errors[start:stop] = backend.to_numpy(squared)
        residual = problem.backward(slice(start, stop), detector, overwrite=True) - waves
        along_rows = problem.waves_at(slice(start, stop), obj=gradient_rows)
        along_cols = problem.waves_at(slice(start, stop), obj=gradient_cols)
        terms = [(along_rows, along_rows), (along_rows, along_cols), (along_cols, along_cols),
                 (along_rows, residual), (along_cols, residual)]
        for index, (a, b) in enumerate(terms):
            sums[start:stop, index] = backend.to_numpy(xp.sum(xp.real(xp.conj(a) * b), axis=axes))
    return _solve(sums), errors


def _solve(sums: np.ndarray) -> np.ndarray:
    """δ from the per-frame normal equations, regularised by a millionth of the largest diagonal (a frame over
    a flat region, with no gradient under its probe, gets δ = 0)."""
    rr, rc, cc, r_chi, c_chi = sums.T
    ridge = 1e-6 * max(float(np.max(rr, initial=0.0)), float(np.max(cc, initial=0.0)), 1e-30)
    rr, cc = rr + ridge, cc + ridge
    determinant = rr * cc - rc * rc
    with np.errstate(divide="ignore", invalid="ignore"):
        shifts = np.stack([(cc * r_chi - rc * c_chi) / determinant, (rr * c_chi - rc * r_chi) / determinant], axis=1)
    return np.nan_to_num(shifts, nan=0.0, posinf=0.0, neginf=0.0)  # no gradient anywhere: no move


def proposed_corners(corners: np.ndarray, shifts: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """One pixel along each axis whose |δ| exceeds DIRECTION_THRESHOLD, kept inside the object."""
    step = np.where(np.abs(shifts) > DIRECTION_THRESHOLD, np.sign(shifts), 0.0).astype(np.int64)
    return np.clip(corners + step, 0, limits)


def errors_at(problem: Any, positions: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Fourier error Σ M (|D(P·O)| − √I)² of ``frames`` (indices, ascending) placed at ``positions`` of them."""
    backend, kernels = problem.backend, problem.backend.kernels
    errors = np.full(len(frames), np.inf)
    for start, stop, intensities in _steps(problem, frames):
        picked = np.flatnonzero((frames >= start) & (frames < stop))
        if not len(picked):
            continue
        local = frames[picked] - start
        placed = positions[picked]
        detector = problem.forward(slice(None), problem.waves_placed(placed), overwrite=True,
                                   fractions=placed - frame_corners(placed))
        squared, _ = kernels.amplitude_errors(kernels.mode_intensity(detector),
                                              intensities[backend.index_array(local)], problem.mask)
        errors[picked] = backend.to_numpy(squared)
    return errors


def proposed_positions(problem: Any, shifts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions proposed for every frame, the frames that would move). Whole pixels: one pixel along each axis
    whose |δ| exceeds DIRECTION_THRESHOLD (the file's sub-pixel part is replaced by the corner). Sub-pixel
    placement: the position moved by δ less its affine part (``affine_part``), at most a pixel per axis. δ
    undershoots the true offset, and repeated refinements close the rest."""
    limits = problem.position_limits
    if problem.subpixel is None:
        proposed = proposed_corners(problem.corners, shifts, limits)
        return proposed.astype(np.float64), np.flatnonzero(np.any(proposed != problem.corners, axis=1))
    shifts = shifts - affine_part(problem, shifts)
    proposed = np.clip(problem.positions + np.clip(shifts, -1.0, 1.0), 0.0, limits)
    return proposed, np.flatnonzero(np.any(np.abs(proposed - problem.positions) > SUBPIXEL_THRESHOLD, axis=1))


def affine_part(problem: Any, shifts: np.ndarray) -> np.ndarray:
    """The part of every rank's δ that a map r ↦ A·r + t of the whole scan explains (least squares over all
    frames). A shift of the scan is a shift of the object, which the data cannot see, and a stretch or shear of
    it is nearly as invisible, so the refinement leaves the scan's geometry to the file and moves frames within
    it. Measured on the tests' scan (48 frames 0.5 pixels rms off, 30 refinements): DM, ML and ePIE ended 0.07,
    0.09 and 0.07 pixels rms from the truth with it taken out, 0.09, 0.11 and 0.10 with it left in."""
    design = np.column_stack([problem.positions, np.ones(len(shifts))])
    sums = problem.comm.allreduce_scalars([*(design.T @ design).ravel().tolist(),
                                           *(design.T @ shifts).ravel().tolist()])
    normal, right = np.array(sums[:9]).reshape(3, 3), np.array(sums[9:]).reshape(3, 2)
    coefficients = np.linalg.lstsq(normal, right, rcond=None)[0]
    return design @ coefficients


def refine(problem: Any) -> np.ndarray:
    """Move each of this rank's frames where its shift points when its error drops there; returns the frames
    that moved (proposed_positions: a pixel on whole pixels, δ with sub-pixel placement)."""
    shifts, here = frame_shifts(problem)
    proposed, frames = proposed_positions(problem, shifts)
    if not len(frames):
        return frames
    better = frames[errors_at(problem, proposed[frames], frames) < here[frames]]
    positions = problem.positions.copy()
    positions[better] = proposed[better]
    problem.move_frames(positions)
    return better
