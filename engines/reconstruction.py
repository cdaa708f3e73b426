"""Reconstruction: owns the state and the loop; ``ptychography(...)`` is a thin wrapper over it.

The harness talks only to this object: it runs the stages, records per-iteration errors and stage
timings, calls an optional per-iteration callback, and stops with a clear error when an iterate
becomes NaN or Inf.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .background import fit_background
from .errors import InputError
from .metrics import ObjectErrorMetric, illuminated_region
from .modes import mix_modes, orthogonalising_matrix
from .options import Plan, parse_parameters
from .positions import refine
from .problem import Problem
from .registry import engine_class
from .validation import validate_inputs

#: An R-factor this many times its first value (or 1) is a blow-up, even while every number is finite.
BLOW_UP = 1e3


class ReconstructionDiverged(RuntimeError):
    """An iterate became NaN/Inf or blew up (R-factor BLOW_UP times its first value); the message names
    the engine and the iteration."""


@dataclass(frozen=True)
class IterationRecord:
    """One iteration. ``err_fmag`` and ``r_factor`` are those of the object and probe after the iteration
    (what the run would return; None on iterations not evaluated, ``evaluate_every``); ``engine_err_fmag`` and
    ``engine_r_factor`` are the engine's own sums from inside the iteration, free but of another model.
    ``seconds`` is the iteration alone; ``evaluation_seconds`` the evaluation after it; ``disk_bytes_read`` and
    ``disk_bytes_written`` its traffic to scratch files (residency "disk"), the evaluation's not counted."""

    iteration: int
    engine: str
    err_fmag: float | None
    r_factor: float | None
    object_error: float | None
    seconds: float
    stage_seconds: dict[str, float]
    engine_err_fmag: float = float("nan")
    engine_r_factor: float = float("nan")
    evaluation_seconds: float = 0.0
    disk_bytes_read: int = 0
    disk_bytes_written: int = 0


@dataclass
class ReconstructionResult:
    """``positions``: this rank's frame positions at the end (refined when ``position_refinement_start`` is
    set, else as given); ``background``: the fitted detector background (``background_start``), else None."""

    object: np.ndarray
    probe: np.ndarray
    history: list[IterationRecord] = field(default_factory=list)
    positions: np.ndarray | None = None
    background: np.ndarray | None = None

    @property
    def final(self) -> IterationRecord | None:
        return self.history[-1] if self.history else None

    def column(self, name: str) -> np.ndarray:
        """One field over iterations, e.g. ``result.column("object_error")``."""
        return np.array([getattr(record, name) for record in self.history], dtype=float)


class Reconstruction:
    """A ptychographic reconstruction: validated inputs, parsed parameters, engine stages.

    ``true_object`` (and ``true_probe``, for the illuminated region) turn on the object error each
    iteration; ``callback(record)`` is called after every iteration.
    """

    def __init__(self, diffraction_data: Any, initial_object: np.ndarray, initial_probe: np.ndarray,
                 scan_positions: np.ndarray, mask: np.ndarray, parameters: Mapping[str, Any] | None = None,
                 *, true_object: np.ndarray | None = None, true_probe: np.ndarray | None = None,
                 callback: Callable[[IterationRecord], None] | None = None, comm: Any = None,
                 n_frames_total: int | None = None) -> None:
        shape = validate_inputs(diffraction_data, initial_object, initial_probe, scan_positions, mask)
        self.plan: Plan = parse_parameters(parameters)
        self.callback = callback
        self.problem = Problem(diffraction_data, initial_object, initial_probe, scan_positions, mask, shape,
                               self.plan.run, comm=comm, n_frames_total=n_frames_total,
                               stages=self.plan.stages)
        self._object_error = None
        if true_object is not None:
            _require_truth_shape("true_object", true_object, initial_object.shape[-2:])
            if true_probe is not None:
                _require_truth_shape("true_probe", true_probe, initial_probe.shape[-2:])
            region_probe = initial_probe if true_probe is None else true_probe
            region = illuminated_region(region_probe, self.problem.corners, shape.object_shape,
                                        self.problem.comm.allreduce_sum)
            self._object_error = ObjectErrorMetric(self.problem.backend, true_object, region)
        self._amplitude_sum: float | None = None
        self._first_r_factor: float | None = None
        self.history: list[IterationRecord] = []
        #: What the iterations reduced over ranks (bytes, calls): the communication model's input, without
        #: the one-off reductions of setting up.
        self.reduced_bytes = 0
        self.reduced_calls = 0
        self.stage_constants: list[dict[str, Any]] = []
        self._engine: Any = None
        self._stage_index = -1
        self._stage_done = 0

    def calibration(self) -> dict[str, Any]:
        """How the data were read: photons per unit and its source, the Poisson noise floor (photons),
        each stage's data-derived constants (known once ``run`` has started the stage), and the fitted
        background's mean over valid pixels in photons (None when none is fitted)."""
        problem = self.problem
        scale = problem.photon_scale
        background = None if problem.background is None else \
            float(problem.xp.sum(problem.background)) / max(problem.valid_pixels, 1)
        return {"photons_per_unit": scale.photons_per_unit, "photons_per_unit_source": scale.source,
                "noise_floor": problem.noise_floor, "saturated_pixels_masked": problem.saturated_pixels,
                "initial_probe_scale": problem.initial_probe_scale, "background_photons": background,
                "stages": list(self.stage_constants)}

    @property
    def backend(self) -> Any:
        return self.problem.backend

    def run(self) -> ReconstructionResult:
        """Run every stage in order and return object, probe (host arrays) and the history."""
        with self.problem.backend.thread_limit(self.plan.run.threads):
            while self.step() is not None:
                pass
        return ReconstructionResult(self.object, self.probe, list(self.history), self.positions, self.background)

    def step(self) -> IterationRecord | None:
        """One iteration of the current stage (starting the next stage when one is done); None when
        every stage is done. ``run`` is a loop over it; benchmarks time it one iteration at a time."""
        while self._engine is None or self._stage_done >= self.plan.stages[self._stage_index].options.iterations:
            if hasattr(self._engine, "release"):
                self._engine.release()
            self._engine = None  # the finished stage's buffers go before the next stage allocates
            self.problem.release_block_buffers()
            self._stage_index += 1
            if self._stage_index >= len(self.plan.stages):
                return None
            stage = self.plan.stages[self._stage_index]
            self._engine = engine_class(stage.engine)(self.problem, stage.options)
            self.problem.timer.take()  # setting up (a scratch file's first write) is not the first iteration
            self._stage_done = 0
            self.stage_constants.append({"engine": stage.engine, **self._engine.constants()})
        name = self.plan.stages[self._stage_index].engine
        self._iterate(self._engine, name, len(self.history), self._evaluate_after(len(self.history)))
        self._stage_done += 1
        return self.history[-1]

    def _orthogonalise_modes(self, engine: Any) -> None:
        """Probe modes made orthogonal and sorted by power; an engine with per-mode state mixes it too."""
        problem = self.problem
        matrix = orthogonalising_matrix(problem.probe, problem.xp, problem.backend.to_numpy)
        if matrix is None:
            return

        def mix(array: Any, axis: int = 0) -> Any:
            return mix_modes(array, matrix, axis, problem.xp, problem.backend.asarray)

        problem.probe = mix(problem.probe)
        if hasattr(engine, "mix_probe_modes"):
            engine.mix_probe_modes(mix)

    def _refine_positions_after(self, iteration: int) -> bool:
        start, every = self.plan.run.position_refinement_start, self.plan.run.position_refinement_every
        return start is not None and iteration >= start and (iteration - start) % every == 0

    def _refine_positions(self, engine: Any) -> None:
        """Every frame moved towards where its pattern puts it (engines/positions.py); an engine that keeps
        state tied to the frames' places (cached illumination, a search direction) is told."""
        frames = refine(self.problem)
        moved = self.problem.comm.allreduce_scalars([float(len(frames))])[0]
        if moved and hasattr(engine, "frames_moved"):  # on every rank: what it recomputes may be a reduction
            engine.frames_moved(frames)

    @property
    def positions(self) -> np.ndarray:
        """This rank's frame positions (sub-pixel), float32 like the input."""
        return self.problem.positions.astype(np.float32)

    def _evaluate_after(self, iteration: int) -> bool:
        """Every ``evaluate_every`` iterations (1-based) and always after the last one of the plan."""
        every = self.plan.run.evaluate_every
        last_stage = self._stage_index == len(self.plan.stages) - 1
        last = last_stage and self._stage_done + 1 >= self.plan.stages[self._stage_index].options.iterations
        return last or (every > 0 and (iteration + 1) % every == 0)

    def _iterate(self, engine: Any, name: str, iteration: int, evaluate: bool) -> None:
        problem = self.problem
        problem.backend.sync()
        reduced = (problem.comm.bytes_reduced, problem.comm.allreduce_calls)
        traffic = problem.disk_traffic()
        start = time.perf_counter()
        errors = engine.iterate(iteration)
        if self.plan.run.orthogonal_modes:
            self._orthogonalise_modes(engine)
        if self._refine_positions_after(iteration):
            with problem.timer("position_refinement"):
                self._refine_positions(engine)
        start_background = self.plan.run.background_start
        if start_background is not None and iteration >= start_background:
            with problem.timer("background"):
                fit_background(problem)
        with problem.timer("communication"):
            squared, absolute = problem.comm.allreduce_scalars([errors.squared, errors.absolute])
        problem.backend.sync()
        self.reduced_bytes += problem.comm.bytes_reduced - reduced[0]
        self.reduced_calls += problem.comm.allreduce_calls - reduced[1]
        seconds = time.perf_counter() - start
        stage_seconds = problem.timer.take()
        (read_now, written_now), (read_before, written_before) = problem.disk_traffic(), traffic
        disk_read, disk_written = read_now - read_before, written_now - written_before
        self._check_finite(name, iteration, squared)
        if self._amplitude_sum is None:
            self._amplitude_sum = problem.measured_amplitude_sum()
        engine_err_fmag, engine_r_factor = self._normalised(squared, absolute)
        self._check_growth(name, iteration, engine_r_factor)
        err_fmag = r_factor = None
        evaluation_seconds = 0.0
        if evaluate:
            start = time.perf_counter()
            model = problem.model_error_sums()
            with problem.timer("communication"):
                model_sums = problem.comm.allreduce_scalars([model.squared, model.absolute])
            if not np.isfinite(model_sums[0]):
                raise ReconstructionDiverged(f"{name}: the Fourier error of the model became NaN/Inf at iteration "
                                             f"{iteration}")
            err_fmag, r_factor = self._normalised(*model_sums)
            problem.backend.sync()
            evaluation_seconds = time.perf_counter() - start
            problem.timer.take()  # the evaluation's communication is not the iteration's
        record = IterationRecord(
            iteration=iteration, engine=name, err_fmag=err_fmag, r_factor=r_factor,
            object_error=self._object_error(problem.object) if self._object_error else None,
            seconds=seconds, stage_seconds=stage_seconds, engine_err_fmag=engine_err_fmag,
            engine_r_factor=engine_r_factor, evaluation_seconds=evaluation_seconds, disk_bytes_read=disk_read,
            disk_bytes_written=disk_written)
        self.history.append(record)
        if self.callback is not None:
            self.callback(record)

    def model_quality(self) -> tuple[float, float]:
        """(err_fmag, R-factor) of the current object and probe, the sums a record's evaluation makes: how a model
        from elsewhere (another code's, passed in as the initial guesses with ``probe_power`` 'given') is scored
        by this forward model, with no iteration run."""
        problem = self.problem
        with problem.backend.thread_limit(self.plan.run.threads):
            if self._amplitude_sum is None:
                self._amplitude_sum = problem.measured_amplitude_sum()
            model = problem.model_error_sums()
            sums = problem.comm.allreduce_scalars([model.squared, model.absolute])
        problem.timer.take()
        return self._normalised(*sums)

    def _normalised(self, squared: float, absolute: float) -> tuple[float, float]:
        """(err_fmag, R-factor) from the sums: per valid pixel of every frame, and over Σ M √I."""
        problem = self.problem
        return (squared / (problem.n_frames_total * problem.valid_pixels),
                absolute / self._amplitude_sum if self._amplitude_sum > 0 else float("nan"))

    def _check_growth(self, name: str, iteration: int, r_factor: float) -> None:
        """A blow-up can stay finite in float32 (an object of 1e10 where the truth is O(1)): the R-factor
        growing BLOW_UP times past its first value (or past 1) is a divergence too, not a result."""
        if self._first_r_factor is None:
            self._first_r_factor = r_factor
        elif r_factor > BLOW_UP * max(1.0, self._first_r_factor):
            raise ReconstructionDiverged(f"{name}: the model amplitudes blew up at iteration {iteration} "
                                         f"(R-factor {r_factor:.3g}, first {self._first_r_factor:.3g})")

    def _check_finite(self, name: str, iteration: int, error_sum: float) -> None:
        xp = self.problem.xp
        for label, array in (("object", self.problem.object), ("probe", self.problem.probe)):
            if not bool(xp.all(xp.isfinite(array))):
                raise ReconstructionDiverged(f"{name}: the {label} became NaN/Inf at iteration {iteration}")
        if not np.isfinite(error_sum):
            raise ReconstructionDiverged(f"{name}: the Fourier error became NaN/Inf at iteration {iteration}")

    @property
    def object(self) -> np.ndarray:
        return self.problem.backend.to_numpy(self.problem.object).astype(np.complex64, copy=False)

    @property
    def background(self) -> np.ndarray | None:
        """The fitted incoherent background per detector pixel (detector order, in the input data's units), or
        None when none is fitted (``background_start``)."""
        problem = self.problem
        if problem.background is None:
            return None
        internal = problem.backend.to_numpy(problem.background).astype(np.float32, copy=False)
        return problem.propagator.to_detector(internal) / np.float32(problem.photon_scale.photons_per_unit)

    @property
    def probe(self) -> np.ndarray:
        """The probe in the units of the input data (the engines work in photons)."""
        probe = self.problem.backend.to_numpy(self.problem.probe).astype(np.complex64, copy=False)
        return probe / np.float32(np.sqrt(self.problem.photon_scale.photons_per_unit))


def _require_truth_shape(name: str, value: Any, shape: tuple[int, ...]) -> None:
    """Ground truth must cover the same pixels as the reconstruction (modes may differ)."""
    actual = tuple(np.shape(value))
    if len(actual) not in (2, 3) or actual[-2:] != tuple(shape):
        raise InputError(f"{name}: expected an array of shape (modes, {shape[0]}, {shape[1]}) or "
                         f"({shape[0]}, {shape[1]}) like the initial guess, got shape {actual}")
    bad = int(np.count_nonzero(~np.isfinite(np.asarray(value))))
    if bad:
        raise InputError(f"{name}: expected finite values (the object error would be NaN), got {bad} NaN or "
                         f"infinite value(s)")


def ptychography(diffraction_data: Any, initial_object: np.ndarray, initial_probe: np.ndarray,
                 scan_positions: np.ndarray, mask: np.ndarray,
                 parameters: Mapping[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The seed API: ``O, P = ptychography(data, O0, P0, positions, mask, parameters)``.

    Shapes and dtypes: diffraction (N, Y, X) uint32; object (M_o, A, B) complex64; probe
    (M_p, Y, X) complex64; positions (N, 2) float32 (top-left corner, object pixels); mask (Y, X)
    bool. ``parameters`` is a plain mapping (see ``ptybench.engines.options``). Returns the object
    and probe with the input shapes and dtypes; the inputs are not modified.
    """
    result = Reconstruction(diffraction_data, initial_object, initial_probe, scan_positions, mask,
                            parameters).run()
    return result.object, result.probe
