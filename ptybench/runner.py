"""The measurement runner: one configuration, measured in a fresh subprocess, becomes one record.

Why a subprocess: the peak-memory reading starts clean, a crash or an out-of-memory kill takes only
that process, and the thread budget is in the environment before NumPy, numba or torch load (their
pools size themselves at import). The parent (``run_isolated``) enforces the timeout and turns every
way a child can end into a record; the child (``python -m ptybench.runner``) measures:

1. import, load the dataset (its arrays are the baseline), reset the peak RSS (Linux clear_refs);
2. optionally cap further address space at ``memory_limit`` (RLIMIT_AS), so "does it fit" is testable;
3. run warm-up + timed iterations; every iteration time is read after a device sync;
4. read peak host RSS and device peak, then time the FFT floor on the same backend and size.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Environment variables that size thread pools at import time.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS")
#: Default object-error target for time-to-quality (synthetic data; ALGORITHMS.md error metric).
DEFAULT_TARGET_ERROR = 0.1


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
    memory_limit_bytes: int | None = None
    timeout_s: float = 600.0
    fft_floor: bool = True
    ranks: int = 1
    #: DatasetSpec fields changed from the catalogue entry, e.g. {"n_frames": 4096} for weak scaling.
    dataset_changes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("iterations", "warmup"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (1 if name == "iterations" else 0):
                raise ValueError(f"{name}: expected an integer ≥ {1 if name == 'iterations' else 0}, got {value!r}")
        for name in ("threads", "frames_per_block", "memory_limit_bytes"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name}: expected a positive integer or None, got {value!r}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s: expected a positive number of seconds, got {self.timeout_s!r}")
        if not isinstance(self.parameters, Mapping):
            raise TypeError(f"parameters: expected a mapping, got {type(self.parameters).__name__}")

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
                "dataset_changes": dict(self.dataset_changes)}

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Measurement:
        return cls(**json.loads(text))


# --- parent side ------------------------------------------------------------------------------
def child_environment(measurement: Measurement) -> dict[str, str]:
    environment = dict(os.environ)
    if measurement.threads is not None:
        for name in THREAD_VARIABLES:
            environment[name] = str(measurement.threads)
    if measurement.memory_limit_bytes is not None:
        # Large blocks straight from mmap and back to the kernel on free (no dynamic threshold), and
        # one malloc arena (no 64 MB per-thread reservations to fall back on), so the address-space
        # limit counts what the algorithm holds, not glibc's retained or reserved space.
        environment["MALLOC_MMAP_THRESHOLD_"] = "65536"
        environment["MALLOC_ARENA_MAX"] = "1"
    environment.setdefault("PYTHONUNBUFFERED", "1")
    return environment


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the parent dies, so a killed sweep leaves no orphan
    measuring on (and competing for) the CPU."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_isolated(measurement: Measurement) -> dict[str, Any]:
    """Measure in a fresh ``python -m ptybench.runner``; always returns a record (status says how it went)."""
    with tempfile.TemporaryDirectory(prefix="ptybench-run-") as scratch:
        result_path = Path(scratch) / "record.json"
        command = [sys.executable, "-m", "ptybench.runner", str(result_path)]
        started = time.time()
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env=child_environment(measurement), start_new_session=True,
                                   preexec_fn=_die_with_parent)
        try:
            _, stderr = process.communicate(measurement.to_json(), timeout=measurement.timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            process.communicate()
            return failure_record(measurement, "timeout", f"no result after {measurement.timeout_s:g} s; killed",
                                  time.time() - started)
        if result_path.exists():
            return json.loads(result_path.read_text())
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        if process.returncode < 0:
            name = signal.Signals(-process.returncode).name
            why = " (the kernel's out-of-memory killer sends SIGKILL)" if name == "SIGKILL" else ""
            return failure_record(measurement, "error", f"killed by {name}{why}\n{tail}", time.time() - started)
        return failure_record(measurement, "error", f"exit status {process.returncode} without a record\n{tail}",
                              time.time() - started)


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def failure_record(measurement: Measurement, status: str, message: str, wall_seconds: float,
                   **extra: Any) -> dict[str, Any]:
    from ptybench.machine import describe_machine

    return {**measurement.identity(), "status": status, "message": message, "wall_seconds": wall_seconds,
            "machine": describe_machine(), "created": _now(), **extra}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


# --- child side -------------------------------------------------------------------------------
def _proc_status_bytes(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Start a new VmHWM window (Linux ≥ 4.0); False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _limit_address_space(extra_bytes: int) -> None:
    import resource

    current = _proc_status_bytes("VmSize") or 0
    resource.setrlimit(resource.RLIMIT_AS, (current + extra_bytes, resource.RLIM_INFINITY))


def _is_out_of_memory(error: BaseException) -> bool:
    """MemoryError (NumPy, or RLIMIT_AS), torch.cuda.OutOfMemoryError, cupy's OutOfMemoryError."""
    if isinstance(error, MemoryError):
        return True
    text = f"{type(error).__name__}: {error}".lower()
    return "outofmemory" in text.replace(" ", "").replace("_", "") or "out of memory" in text


def load_dataset(measurement: Measurement) -> Any:
    """The measurement's dataset: a catalogue entry (with ``dataset_changes``) or a CXI file."""
    from ptybench.datasets import get_spec, load

    if not measurement.dataset_changes:
        return load(measurement.dataset, threads=measurement.threads)
    if str(measurement.dataset).endswith((".cxi", ".h5", ".hdf5")):
        raise ValueError(f"dataset_changes: only for catalogue datasets, got file {measurement.dataset!r}")
    spec = get_spec(measurement.dataset).with_changes(**measurement.dataset_changes)
    return load(spec, threads=measurement.threads)


def dataset_arrays(data: Any) -> dict[str, Any]:
    """The seed API's five arguments from a synthetic or CXI dataset."""
    return {"diffraction_data": data.frames(), "initial_object": data.initial_object(),
            "initial_probe": data.initial_probe(), "scan_positions": data.positions, "mask": data.mask}


def describe_dataset(name: str, data: Any) -> dict[str, Any]:
    spec = getattr(data, "spec", None)
    info: dict[str, Any] = {"name": name, "n_frames": int(data.n_frames if spec is None else spec.n_frames)}
    frame_shape = tuple(data.frame_shape if spec is None else spec.frame_shape)
    info.update(height=int(frame_shape[0]), width=int(frame_shape[1]),
                propagation=data.engine_parameters()["propagation"])
    if spec is not None:
        info.update(kind=spec.kind, probe_modes=spec.probe_modes, object_modes=spec.object_modes,
                    photons=spec.photons, seed=spec.seed)
    else:
        info.update(kind="file", probe_modes=int(data.initial_probe().shape[0]),
                    object_modes=int(data.initial_object().shape[0]))
    info["object_height"], info["object_width"] = (int(v) for v in data.object_shape)
    return info


def time_to_quality(history: list[Any], target: float | None) -> tuple[int | None, float | None]:
    """Iterations (1-based, warm-up included) and summed iteration seconds until object error ≤ target."""
    if target is None:
        return None, None
    elapsed = 0.0
    for count, record in enumerate(history, start=1):
        elapsed += record.seconds
        if record.object_error is not None and record.object_error <= target:
            return count, elapsed
    return None, None


def measure(measurement: Measurement) -> dict[str, Any]:
    """Run one measurement in this process (call it in a fresh one: see ``run_isolated``)."""
    from ptybench.engines import Reconstruction, ReconstructionDiverged, get_backend
    from ptybench.engines.registry import engine_class
    from ptybench.machine import describe_machine
    from ptybench.measure import fft_floor
    from ptybench.memory_model import predict_memory

    started = time.time()
    backend = get_backend(measurement.backend, measurement.device, measurement.threads)
    data = load_dataset(measurement)
    arrays = dataset_arrays(data)
    has_truth = getattr(data, "has_ground_truth", True)
    truth = {"true_object": data.ground_truth_object(), "true_probe": data.ground_truth_probe()} if has_truth else {}
    dataset_info = describe_dataset(measurement.dataset, data)
    prediction = predict_memory(data, measurement.engine, measurement.backend, measurement.frames_per_block,
                                measurement.ranks, measurement.device)
    record: dict[str, Any] = {**measurement.identity(), "dataset_info": dataset_info,
                              "backend_info": backend.describe(), "created": _now(),
                              "target_error": measurement.target_error}
    record["machine"] = describe_machine(record["backend_info"])

    _warm_runtime(measurement, data)
    baseline = _proc_status_bytes("VmRSS")
    peak_reset = _reset_peak_rss()
    backend.reset_peak_memory()
    if measurement.memory_limit_bytes is not None:
        _limit_address_space(measurement.memory_limit_bytes)
    reconstruction = None
    try:
        reconstruction = Reconstruction(**arrays, parameters={**measurement.engine_parameters(),
                                                              **data.engine_parameters()}, **truth)
        result = reconstruction.run()
        status, message = "ok", ""
    except ReconstructionDiverged as error:
        status, message, result = "diverged", str(error), None
    except Exception as error:
        if not _is_out_of_memory(error):
            raise
        status, message, result = "oom", f"{type(error).__name__}: {error}", None
    finally:
        if measurement.memory_limit_bytes is not None:
            import resource
            resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    peak = _proc_status_bytes("VmHWM")
    device_stats = backend.memory_stats()
    history = result.history if result is not None else (reconstruction.history if reconstruction else [])
    record.update(status=status, message=message)
    record["memory"] = {
        "host_baseline_bytes": baseline, "host_peak_bytes": peak,
        "host_algorithm_bytes": (peak - baseline) if (peak and baseline and peak_reset) else None,
        "device_peak_bytes": device_stats.peak_bytes,
        "predicted_bytes": prediction.total_bytes, "predicted_host_bytes": prediction.host_bytes,
        "predicted_terms": prediction.terms, "limit_bytes": measurement.memory_limit_bytes,
    }
    measured = device_stats.peak_bytes if backend.is_device_memory else record["memory"]["host_algorithm_bytes"]
    record["memory"]["measured_over_predicted"] = (measured / prediction.total_bytes) if measured else None
    record["frames_per_block_used"] = reconstruction.problem.frames_per_block if reconstruction else None
    record["streaming"] = bool(reconstruction.problem.streaming) if reconstruction else None
    record["calibration"] = reconstruction.calibration() if reconstruction else None
    record.update(_timing_fields(history, measurement))
    if status == "oom":
        record["oom_size"] = {"n_frames": dataset_info["n_frames"], "frame_shape": [dataset_info["height"],
                              dataset_info["width"]], "predicted_bytes": prediction.total_bytes}
    if status == "ok" and measurement.fft_floor and reconstruction is not None:
        shape = reconstruction.problem.shape
        stage = reconstruction.plan.stages[0]
        engine = engine_class(stage.engine)
        run = reconstruction.plan.run
        floor = fft_floor(run.backend, run.device, run.threads, run.propagation, run.fresnel_number,
                          shape.n_frames, shape.probe_modes * shape.object_modes, shape.frame_shape,
                          engine.propagations_per_frame(stage.options),
                          engine.frames_per_fft_batch or reconstruction.problem.frames_per_block)
        record["fft_floor_seconds"] = floor
        record["fft_floor_ratio"] = record["seconds_per_iteration"] / floor if floor > 0 else None
    record["wall_seconds"] = time.time() - started
    return record


def _warm_runtime(measurement: Measurement, data: Any) -> None:
    """Run the engine for two iterations on 16 frames of the dataset's own geometry, so code loaded on
    first use (numba kernels compiled for these array types, FFT plans, libraries, thread pools: tens
    of MB and seconds) is in the baseline and out of the timings, not in the algorithm's footprint."""
    from ptybench.datasets import DatasetSpec, load
    from ptybench.engines import ptychography

    frame_shape = tuple(data.spec.frame_shape) if hasattr(data, "spec") else tuple(data.frame_shape)
    kind = data.engine_parameters()["propagation"]
    # just enough frames for the parallel numba variants (PARALLEL_MIN_SIZE elements per block)
    n_frames = int(min(16, max(2, -(-(1 << 16) // (frame_shape[0] * frame_shape[1])))))
    tiny = load(DatasetSpec(kind=kind, n_frames=n_frames, frame_shape=frame_shape, photons=1e6, seed=1))
    parameters = {**measurement.engine_parameters(), "iterations": 2, "frames_per_block": None,
                  "probe_update_start": 0, **tiny.engine_parameters()}  # the probe update's kernels too
    parameters = {key: value for key, value in parameters.items() if value is not None}
    try:
        ptychography(**dataset_arrays(tiny), parameters=parameters)
    except Exception:  # best effort: a configuration that fails here fails again, measured, below
        pass
    _return_free_memory()


def _return_free_memory() -> None:
    """glibc keeps freed heap pages; give them back, so the run's pages are counted as it takes them."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _timing_fields(history: list[Any], measurement: Measurement) -> dict[str, Any]:
    import numpy as np

    timed = history[measurement.warmup:]
    fields: dict[str, Any] = {"iterations_done": len(history)}
    if timed:
        seconds = np.array([r.seconds for r in timed])
        stages: dict[str, float] = {}
        for record in timed:
            for name, value in record.stage_seconds.items():
                stages[name] = stages.get(name, 0.0) + value / len(timed)
        fields.update(seconds_per_iteration=float(np.median(seconds)), seconds_min=float(seconds.min()),
                      seconds_q25=float(np.percentile(seconds, 25)), seconds_q75=float(np.percentile(seconds, 75)),
                      seconds_max=float(seconds.max()), iteration_seconds=seconds.tolist(), stages=stages)
    if history:
        final = history[-1]
        fields.update(object_error=final.object_error, r_factor=final.r_factor, err_fmag=final.err_fmag)
        iterations, seconds_to = time_to_quality(history, measurement.target_error)
        fields.update(iterations_to_target=iterations, seconds_to_target=seconds_to)
    return fields


def main(argv: list[str] | None = None) -> int:
    """Child entry point: read a Measurement (JSON) on stdin, write the record to argv[0]."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m ptybench.runner RESULT.json < measurement.json", file=sys.stderr)
        return 2
    measurement = Measurement.from_json(sys.stdin.read())
    started = time.time()
    try:
        record = measure(measurement)
    except Exception as error:
        detail = "".join(traceback.format_exception(error)[-3:]).strip()
        record = failure_record(measurement, "error", f"{type(error).__name__}: {error}\n{detail}",
                                time.time() - started)
    from ptybench.results import write_json_atomically

    write_json_atomically(argv[0], record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
