"""One measurement path: what to measure (``Measurement``) and how (``measure``), serial or on every rank.

``measure(measurement, comm)`` runs in a fresh process (ptybench.isolation): the serial runner calls it
with a SerialCommunicator, every MPI rank with an MPICommunicator, and both produce the same Record:

1. pick the device (one GPU per rank), load this rank's frames of the dataset;
2. warm the runtime on a tiny problem of the same geometry (compiled kernels, FFT plans and thread
   pools go into the baseline, not into the timings or the footprint);
3. read the baseline RSS, reset the peak (Linux clear_refs), optionally cap the address space;
4. run warm-up + timed iterations, each read after a device sync;
5. read peak host RSS and device peak; rank 0 gathers every rank's detail and builds the record
   (times of the slowest rank, memory per rank, prediction, calibration, FFT floor).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ptybench.engines.errors import InputError, InputTypeError
from ptybench.engines.scratch import scratch_directory
from ptybench.memory_probes import (
    is_out_of_memory,
    limit_address_space,
    process_status_bytes,
    reset_peak_rss,
    restore_address_space,
    return_free_memory,
)
from ptybench.record import Record
from ptybench.record_assembly import add_distributed, add_memory, add_timing, disk_summary, mean_stages, time_to_quality

#: Default margin over the Poisson noise floor for time-to-quality on any data (docs/algorithms.md, "Error metrics").
DEFAULT_NOISE_MARGIN = 0.5
#: Default object-error target for time-to-quality (synthetic data; docs/algorithms.md error metric).
DEFAULT_TARGET_ERROR = 0.1
#: Fault injection for the abort-path tests: the rank named here raises (or is SIGKILLed) after setting up.
#: A file the measuring process appends "iterations_done iterations_total" to after every iteration.
PROGRESS_VARIABLE = "PTYBENCH_PROGRESS_FILE"
#: A folder where every rank rewrites ``rank-R.beat`` ("iterations_done unix_time") after each iteration:
#: the MPI launcher's stall watch (ptybench.scaling) names the ranks that stopped progressing.
HEARTBEAT_VARIABLE = "PTYBENCH_HEARTBEAT_DIR"


#: Engine keys the measurement sets from its own fields (and the option that sets each).
MEASUREMENT_KEYS = {"engine": "--engine", "backend": "--backend", "device": "--backend", "iterations":
                    "--iterations/--warmup", "threads": "--threads", "frames_per_block": "--frames-per-block"}


@dataclass(frozen=True)
class Measurement:
    """What to measure. ``dataset`` is a catalogue name or a CXI path; ``parameters`` adds engine keys."""

    dataset: str
    engine: str
    backend: str = "numpy"
    device: str | None = None
    iterations: int = 10
    warmup: int = 2
    threads: int | None = None
    frames_per_block: int | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    target_error: float | None = DEFAULT_TARGET_ERROR
    #: Time to quality without ground truth: until err_fmag ≤ (1 + noise_margin) × the data's Poisson noise floor.
    noise_margin: float | None = DEFAULT_NOISE_MARGIN
    memory_limit_bytes: int | None = None
    #: An emulated host of this much memory (a memory cgroup: page cache counted; ptybench.emulated_host).
    host_memory_bytes: int | None = None
    timeout_s: float = 600.0
    fft_floor: bool = True
    ranks: int = 1
    #: DatasetSpec fields changed from the catalogue entry, e.g. {"n_frames": 4096} for weak scaling.
    dataset_changes: dict[str, Any] = field(default_factory=dict)
    #: Which of several runs of one configuration in fresh processes (procurement run rules: ≥ 3).
    repeat: int = 0
    #: How the ranks were started when that changes what is measured (an emulated network, srun); None for a single
    #: process or plain mpiexec. Part of the key, so `scale` over another launcher is another point.
    launcher: str | None = None
    #: Object error at or below which the run passes validation (None: not validated).
    validation_threshold: float | None = None

    def __post_init__(self) -> None:
        for name in ("iterations", "warmup"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (1 if name == "iterations" else 0):
                raise InputError(f"{name}: expected an integer ≥ {1 if name == 'iterations' else 0}, got {value!r}")
        for name in ("threads", "frames_per_block", "memory_limit_bytes", "host_memory_bytes"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise InputError(f"{name}: expected a positive integer or None, got {value!r}")
        if not self.timeout_s > 0:
            raise InputError(f"timeout_s: expected a positive number of seconds, got {self.timeout_s!r}")
        if not isinstance(self.parameters, Mapping):
            raise InputTypeError(f"parameters: expected a mapping, got {type(self.parameters).__name__}")
        clashes = sorted(set(self.parameters) & set(MEASUREMENT_KEYS))
        if clashes:
            raise InputError(f"parameters: {clashes} are set by the measurement itself "
                             f"({', '.join(MEASUREMENT_KEYS[key] for key in clashes)}); give them there, not in "
                             f"--parameters, so one value is measured and recorded")

    @property
    def subpixel(self) -> bool:
        """Frames placed to the fraction of a pixel (``"positions": "subpixel"``): the memory model adds its
        temporaries."""
        return self.parameters.get("positions") == "subpixel"

    def engine_parameters(self) -> dict[str, Any]:
        parameters = {**self.parameters, "engine": self.engine, "backend": self.backend,
                      "iterations": self.warmup + self.iterations}
        for name in ("device", "threads", "frames_per_block"):
            if getattr(self, name) is not None:
                parameters[name] = getattr(self, name)
        return parameters

    def identity(self) -> dict[str, Any]:
        """The record fields that say what was measured (see ptybench.results.KEY_FIELDS)."""
        return {"dataset": self.dataset, "engine": self.engine, "backend": self.backend, "device": self.device,
                "ranks": self.ranks, "threads": self.threads, "frames_per_block": self.frames_per_block,
                "iterations": self.iterations, "warmup": self.warmup, "parameters": dict(self.parameters),
                "dataset_changes": dict(self.dataset_changes), "repeat": self.repeat, "launcher": self.launcher,
                "host_memory_bytes": self.host_memory_bytes}

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Measurement:
        return cls(**json.loads(text))


def require_dataset(name: str) -> None:
    """A dataset the measuring child could not load is the user's mistake: refused here, before any process starts
    (an unknown name, a missing or unreadable file, a file whose geometry is not stated)."""
    from ptybench.datasets import load

    if not isinstance(name, str) or not name:
        raise InputError(f"dataset: expected a catalogue name or a CXI path, got {name!r}")
    data = load(name)
    close = getattr(data, "close", None)
    if close is not None:
        close()


def require_emulated_host(measurement: Measurement) -> None:
    """An emulated host (``--host-memory``) this machine cannot make is refused before anything runs."""
    if measurement.host_memory_bytes is None:
        return
    from ptybench.emulated_host import problem

    if measurement.ranks != 1:
        raise InputError(f"--host-memory: expected a single-process run, got {measurement.ranks} ranks "
                         f"(an emulated host holds one measuring process)")
    why = problem()
    if why is not None:
        raise InputError(why)


def require_memory_limit(measurement: Measurement) -> None:
    """A --memory-limit below the memory model's prediction of the run's own footprint would only produce an
    'oom' record after loading: refused before anything runs, with the prediction."""
    if measurement.memory_limit_bytes is None:
        return
    from ptybench.datasets import load
    from ptybench.memory_model import Geometry, predict_memory

    data = load(measurement.dataset)
    try:
        geometry = Geometry.of(data)
    finally:
        getattr(data, "close", lambda: None)()
    from ptybench.engines.backends import backend_descriptor

    # on a host the engines place per-frame arrays for the memory the limit leaves (on disk when they do not fit)
    on_host = not backend_descriptor(measurement.backend).is_device_memory(measurement.device)
    prediction = predict_memory(geometry, measurement.engine, measurement.backend, measurement.frames_per_block,
                                measurement.ranks, measurement.device,
                                available_bytes=measurement.memory_limit_bytes if on_host else None,
                                subpixel=measurement.subpixel)
    needed = prediction.total_bytes + sum(prediction.host_terms.values())
    if needed > measurement.memory_limit_bytes:
        raise InputError(f"--memory-limit: {measurement.memory_limit_bytes / 1e6:.1f} MB is below what the memory "
                         f"model predicts for {measurement.engine} on {measurement.dataset} ({needed / 1e6:.1f} MB, "
                         f"frames per block {prediction.frames_per_block}); raise the limit or use "
                         f"--frames-per-block")


def load_dataset(measurement: Measurement) -> Any:
    """The measurement's dataset: a catalogue entry (with ``dataset_changes``) or a CXI file."""
    from ptybench.datasets import get_spec, load

    if not measurement.dataset_changes:
        return load(measurement.dataset, threads=measurement.threads)
    if str(measurement.dataset).endswith((".cxi", ".h5", ".hdf5")):
        raise InputError(f"dataset_changes: only for catalogue datasets, got file {measurement.dataset!r}")
    spec = get_spec(measurement.dataset).with_changes(**measurement.dataset_changes)
    return load(spec, threads=measurement.threads)


def device_for_rank(measurement: Measurement, comm: Any) -> str | None:
    """One GPU per rank: the node-local rank picks the device when none (or just "cuda") is named."""
    from ptybench.engines.backends import backend_descriptor, get_backend

    descriptor = backend_descriptor(measurement.backend)
    if comm.size == 1 or not descriptor.is_device_memory(measurement.device) \
            or measurement.device not in (None, "cuda"):
        return measurement.device
    return f"cuda:{comm.node_rank() % get_backend(measurement.backend, measurement.device).device_count()}"


def measure(measurement: Measurement, comm: Any, arrays_path: str | None = None) -> Record | None:
    """Run one measurement on this process's share of the frames; the record on rank 0, None elsewhere.
    ``arrays_path``: rank 0 saves the reconstructed object and probe there (.npz) when the run is ok."""
    from ptybench.engines import Reconstruction, ReconstructionDiverged, get_backend
    from ptybench.machine import describe_machine
    from ptybench.memory_model import predict_memory

    started = time.time()
    device = device_for_rank(measurement, comm)
    backend = get_backend(measurement.backend, device, measurement.threads)
    data = load_dataset(measurement)
    geometry = data.geometry()
    start, stop = comm.frame_range(geometry.n_frames)
    parameters = {**measurement.engine_parameters(), **data.engine_parameters()}
    if device is not None:
        parameters["device"] = device
    _warm_runtime(measurement, data)

    reconstruction = None
    baseline, peak_reset = None, False
    previous_limit = limit_address_space(measurement.memory_limit_bytes)  # the data count against it too
    try:
        arrays, truth_arrays, status, message = _load_arrays(data, start, stop)
        if comm.allreduce_scalars([float(status == "ok")])[0] < comm.size and status == "ok":
            status, message = "oom", "another rank ran out of memory loading its frames"
        if status == "ok":
            return_free_memory()  # the pages loading freed must not be reused unseen by the run
            baseline = process_status_bytes("VmRSS")
            peak_reset = reset_peak_rss()
            backend.reset_peak_memory()
            comm.barrier()
            try:
                reconstruction = Reconstruction(**arrays, parameters=parameters, comm=comm,
                                                n_frames_total=geometry.n_frames, **truth_arrays,
                                                callback=_progress_writer(measurement, comm))
                reconstruction.run()
            except ReconstructionDiverged as error:  # the object is replicated: every rank sees it at once
                status, message = "diverged", str(error)
            except Exception as error:
                if not is_out_of_memory(error):
                    raise
                status, message = "oom", f"{type(error).__name__}: {error}"
    finally:
        restore_address_space(previous_limit)
    peak = process_status_bytes("VmHWM")
    history = reconstruction.history if reconstruction is not None else []
    timed = history[measurement.warmup:]
    detail = {
        "rank": comm.rank, "frames": [start, stop], "device": backend.device, "host": os.uname().nodename,
        "iteration_seconds": [r.seconds for r in timed],
        "communication_seconds": [r.stage_seconds.get("communication", 0.0) for r in timed],
        "host_algorithm_bytes": (peak - baseline) if (peak and baseline and peak_reset) else None,
        "host_peak_bytes": peak, "host_baseline_bytes": baseline,
        "device_peak_bytes": backend.memory_stats().peak_bytes,
        "bytes_reduced_per_iteration": reconstruction.reduced_bytes / max(len(history), 1) if reconstruction else 0.0,
        "allreduce_calls_per_iteration": reconstruction.reduced_calls / max(len(history), 1) if reconstruction else 0.0,
        "stages": mean_stages(timed),
    }
    details = comm.gather(detail)
    if comm.rank != 0:
        return None
    if arrays_path and status == "ok":
        np.savez(arrays_path, object=reconstruction.object, probe=reconstruction.probe)

    placement = reconstruction.problem.placement if reconstruction is not None else None
    prediction = predict_memory(geometry, measurement.engine, measurement.backend,
                                placement.frames_per_block if placement else measurement.frames_per_block,
                                comm.size, device, residency=placement.residency if placement else "auto",
                                placement=placement, subpixel=measurement.subpixel)
    record = Record.of(measurement, ranks=comm.size, status=status, message=message,
                       target_error=measurement.target_error, dataset_info=data.describe(measurement.dataset),
                       backend_info={**backend.describe(), "kernels": type(backend.kernels).__name__})
    record.machine = describe_machine(record.backend_info)
    add_timing(record, history, measurement)
    add_distributed(record, details)
    add_memory(record, details, prediction, backend.is_device_memory, measurement.memory_limit_bytes)
    if reconstruction is not None:
        record.frames_per_block_used = reconstruction.problem.frames_per_block
        record.streaming = bool(reconstruction.problem.streaming)
        record.residency = reconstruction.problem.placement.residency
        record.placement_reason = reconstruction.problem.placement.reason
        if reconstruction.problem.scratch_stores:
            from ptybench.disk_bandwidth import cached

            try:  # measured after the run, once per machine: a full or vanished disk must not cost the record
                bandwidth = cached(scratch_directory(measurement.engine_parameters().get("scratch_directory")))
                speeds = (bandwidth.read_bytes_per_second, bandwidth.write_bytes_per_second)
            except OSError:
                speeds = (None, None)
            record.disk = disk_summary(timed, *speeds)
        record.calibration = reconstruction.calibration()
        if measurement.noise_margin is not None and history:
            record.noise_target = (1.0 + measurement.noise_margin) * reconstruction.problem.noise_floor
            record.iterations_to_noise, record.seconds_to_noise = time_to_quality(history, record.noise_target,
                                                                                   "err_fmag")
    if status == "oom":
        record.oom_size = {"n_frames": geometry.n_frames, "frame_shape": list(geometry.frame_shape),
                           "data_bytes": 4 * geometry.n_frames * geometry.frame_shape[0] * geometry.frame_shape[1],
                           "predicted_bytes": prediction.total_bytes}
    if status == "ok" and measurement.fft_floor and reconstruction is not None:
        from ptybench.fft_floor import reconstruction_fft_floor

        record.fft_floor_seconds = reconstruction_fft_floor(reconstruction)
        if record.fft_floor_seconds > 0 and record.seconds_per_iteration is not None:
            record.fft_floor_ratio = record.seconds_per_iteration / record.fft_floor_seconds
    record.wall_seconds = time.time() - started
    record.judge(measurement)
    return record


def _progress_writer(measurement: Measurement, comm: Any) -> Callable[[Any], None] | None:
    """Rank 0 appends its progress where the launcher asked for it (ptybench.runner shows a bar); every
    rank beats its heart where the MPI launcher asked for it."""
    path = os.environ.get(PROGRESS_VARIABLE) if comm.rank == 0 else None
    beats = os.environ.get(HEARTBEAT_VARIABLE)
    if not path and not beats:
        return None
    total = measurement.warmup + measurement.iterations
    beat_path = Path(beats) / f"rank-{comm.rank}.beat" if beats else None
    if beat_path is not None:
        _beat(beat_path, 0)

    def write(record: Any) -> None:
        if path:
            with open(path, "a") as stream:
                stream.write(f"{record.iteration + 1} {total}\n")
        if beat_path is not None:
            _beat(beat_path, record.iteration + 1)

    return write


def _beat(path: Path, iterations_done: int) -> None:
    from ptybench.results import replace_atomically

    replace_atomically(path, f"{iterations_done} {time.time()}\n")


#: Stored frames larger than this share of the free host memory are not materialised: the run reads them block
#: by block while it makes its float32 copy (datasets.base.FrameSource), so they are not held twice. Smaller
#: ones are loaded first, as a user's script would, and counted in the baseline.
LAZY_LOAD_SHARE = 0.1


def _load_arrays(data: Any, start: int, stop: int) -> tuple[dict[str, Any], dict[str, Any], str, str]:
    """This rank's arrays and ground truth; a dataset that does not fit is an out-of-memory result."""
    from ptybench.engines.host_memory import host_available_bytes

    height, width = data.geometry().frame_shape
    # against the memory this process may still use (free memory, or what --memory-limit or a batch system's
    # address-space limit leaves): a dataset larger than a share of it is read block by block as the engines
    # need it, so the run streams from disk as it would on a machine of that size
    lazy = 4 * (stop - start) * height * width > LAZY_LOAD_SHARE * host_available_bytes()
    try:
        arrays = data.arrays(start=start, stop=stop, lazy=lazy)
        truth = data.ground_truth()
    except MemoryError:
        height, width = data.geometry().frame_shape
        size = 4 * (stop - start) * height * width
        return {}, {}, "oom", (f"MemoryError loading the dataset: frames {start}..{stop} of {height}x{width} "
                               f"({size / 1e6:.1f} MB as stored, more with its float32 copy) do not fit the limit")
    truth_arrays = {"true_object": truth.object, "true_probe": truth.probe} if truth is not None else {}
    return arrays, truth_arrays, "ok", ""


def _warm_runtime(measurement: Measurement, data: Any) -> None:
    """Run the engine for two iterations on a few frames of the dataset's own geometry, so code loaded
    on first use (numba kernels compiled for these array types, FFT plans, libraries, thread pools:
    tens of MB and seconds) is in the baseline and out of the timings, not in the algorithm's footprint."""
    from ptybench.datasets import DatasetSpec, frame_cache, load
    from ptybench.engines import ptychography

    geometry = data.geometry()
    frame_shape = geometry.frame_shape
    # just enough frames for the parallel numba variants (PARALLEL_MIN_SIZE elements per block)
    n_frames = int(min(16, max(2, -(-(1 << 16) // (frame_shape[0] * frame_shape[1])))))
    tiny = load(DatasetSpec(kind=geometry.propagation, n_frames=n_frames, frame_shape=frame_shape, photons=1e6,
                            seed=1))
    parameters = {**measurement.engine_parameters(), "iterations": 2, "frames_per_block": None,
                  "probe_update_start": 0, **tiny.engine_parameters()}  # the probe update's kernels too
    parameters = {key: value for key, value in parameters.items() if value is not None}
    try:
        with frame_cache.bypassed():  # made, not read: the generator's threads and plans are warmed too
            arrays = tiny.arrays()
        ptychography(**arrays, parameters=parameters)
    except Exception:  # best effort: a configuration that fails here fails again, measured, below
        pass
    return_free_memory()


