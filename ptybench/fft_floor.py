"""The FFT floor: the time of an iteration's FFTs alone (same backend, threads, sizes, batched the way
the engine batches them), so every record says how close to the FFT limit the engine runs.

Every time is read after ``backend.sync()``, so asynchronous GPU work is counted where it runs.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ptybench.engines import get_backend
from ptybench.engines.propagation import make_propagator
from ptybench.engines.registry import engine_spec


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


def reconstruction_fft_floor(reconstruction: Any) -> float:
    """The FFT floor of a reconstruction's first stage, as its engine batches its propagations."""
    problem = reconstruction.problem
    spec = engine_spec(reconstruction.plan.stages[0].engine)
    run = reconstruction.plan.run
    shape = problem.shape
    return fft_floor(run.backend, run.device, run.threads, run.propagation, run.fresnel_number, shape.n_frames,
                     shape.probe_modes * shape.object_modes, shape.frame_shape, spec.propagations_per_frame,
                     spec.frames_per_fft_batch or problem.frames_per_block)
