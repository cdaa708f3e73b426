"""Timing one configuration in this process: seconds per iteration after warm-up, and the FFT floor.

Every time is read after ``backend.sync()``, so asynchronous GPU work is counted where it runs.
The FFT floor is the time of the iteration's FFTs alone (same backend, threads, sizes, batched the
way the engine batches them): "how close to the FFT limit" for every record.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ptybench.engines import Reconstruction, get_backend, parse_parameters
from ptybench.engines.propagation import make_propagator
from ptybench.engines.registry import engine_class


@dataclass
class Timing:
    """Median and spread of the timed iterations, the stage breakdown and the FFT floor."""

    engine: str
    iterations: int
    warmup: int
    seconds_per_iteration: float
    seconds_spread: tuple[float, float]
    stage_seconds: dict[str, float]
    fft_floor_seconds: float
    object_error: float | None
    r_factor: float
    err_fmag: float
    history: list[Any] = field(default_factory=list, repr=False)

    @property
    def fft_floor_ratio(self) -> float:
        return self.seconds_per_iteration / self.fft_floor_seconds


def fft_floor(backend_name: str, device: Any, threads: int | None, propagation: str, fresnel_number: float | None,
              n_frames: int, waves_per_frame: int, frame_shape: tuple[int, int], propagations_per_frame: int,
              frames_per_block: int | None = None, repeats: int = 5) -> float:
    """Seconds for the FFTs of one iteration: n_frames·waves_per_frame waves, each propagated
    ``propagations_per_frame`` times, in blocks of ``frames_per_block`` (default: one batch)."""
    backend = get_backend(backend_name, device, threads)
    propagator = make_propagator(backend, propagation, frame_shape, fresnel_number)
    block = min(frames_per_block or n_frames, n_frames)
    rng = np.random.default_rng(0)
    host = (rng.standard_normal((block, waves_per_frame, *frame_shape))
            + 1j * rng.standard_normal((block, waves_per_frame, *frame_shape))).astype(np.complex64)
    waves = backend.asarray(host)
    batches, rest = divmod(n_frames, block)
    times = []
    with backend.thread_limit(threads):
        for repeat in range(repeats + 1):
            backend.sync()
            start = time.perf_counter()
            for k in range(propagations_per_frame):
                step = propagator.forward if k % 2 == 0 else propagator.backward
                for _ in range(batches):
                    waves = step(waves, overwrite=True)
                if rest:
                    waves[:rest] = step(waves[:rest], overwrite=True)
            backend.sync()
            if repeat:  # the first pass plans the FFTs and warms caches
                times.append(time.perf_counter() - start)
    return float(np.median(times))


def time_engine(arrays: Mapping[str, np.ndarray], parameters: Mapping[str, Any], warmup: int = 2,
                true_object: np.ndarray | None = None, true_probe: np.ndarray | None = None) -> Timing:
    """Run ``parameters['iterations']`` timed iterations after ``warmup`` untimed ones (one stage)."""
    plan = parse_parameters(parameters)
    if len(plan.stages) != 1:
        raise ValueError("parameters['engine']: timing needs a single engine, got a list of stages")
    stage = plan.stages[0]
    timed = stage.options.iterations
    run = plan.run
    reconstruction = Reconstruction(**arrays, parameters={**parameters, "iterations": warmup + timed},
                                    true_object=true_object, true_probe=true_probe)
    result = reconstruction.run()
    records = result.history[warmup:]
    seconds = np.array([r.seconds for r in records])
    stages: dict[str, float] = {}
    for record in records:
        for name, value in record.stage_seconds.items():
            stages[name] = stages.get(name, 0.0) + value / len(records)
    shape = reconstruction.problem.shape
    engine = engine_class(stage.engine)
    floor = fft_floor(run.backend, run.device, run.threads, run.propagation, run.fresnel_number, shape.n_frames,
                      shape.probe_modes * shape.object_modes, shape.frame_shape,
                      engine.propagations_per_frame(stage.options),
                      engine.frames_per_fft_batch or reconstruction.problem.frames_per_block)
    final = result.final
    return Timing(engine=stage.engine, iterations=timed, warmup=warmup,
                  seconds_per_iteration=float(np.median(seconds)),
                  seconds_spread=(float(np.percentile(seconds, 25)), float(np.percentile(seconds, 75))),
                  stage_seconds=stages, fft_floor_seconds=floor, object_error=final.object_error,
                  r_factor=final.r_factor, err_fmag=final.err_fmag, history=result.history)
