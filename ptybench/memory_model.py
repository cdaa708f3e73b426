"""Analytic memory model: bytes an engine needs, from the terms of docs/algorithms.md ("Memory terms").

    resident   intensities N·Y·X·4 (float32 copy), mask, object and probe with their update buffers,
               DM/RAAR exit waves N·M_p·M_o·Y·X·8
    per block  the temporaries of one block of frames: exit-wave-sized (n·M_p·M_o·Y·X·8) and
               view-sized (n·M_o·Y·X·8) arrays alive at the same time, registered with each engine
               (MemoryTerms in engines/registry.py); accuracy: docs/design.md, "Memory model"

With streaming (residency "streamed" on a device backend) the per-frame arrays live in pinned host
memory and the device holds two blocks of them (the one in use and the one being uploaded). Under MPI
each rank holds its ⌈N/ranks⌉ frames and a full object and probe. The model predicts the algorithm's
own footprint: measured as peak minus the baseline after imports and data load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ptybench.engines.backends import backend_descriptor
from ptybench.engines.errors import InputError, InputTypeError
from ptybench.engines.placement import Placement, choose_placement, frame_costs, subpixel_temporaries
from ptybench.engines.problem import evaluation_step
from ptybench.engines.registry import engine_spec


@dataclass(frozen=True)
class Geometry:
    """What the model needs to know about a dataset."""

    n_frames: int
    frame_shape: tuple[int, int]
    object_shape: tuple[int, int]
    probe_modes: int = 1
    object_modes: int = 1

    @classmethod
    def of(cls, dataset: Any) -> Geometry:
        """From a Geometry, a Dataset (synthetic or CXI), its DatasetGeometry, or a DatasetSpec."""
        from ptybench.datasets import Dataset, DatasetGeometry, DatasetSpec, load

        if isinstance(dataset, Geometry):
            return dataset
        if isinstance(dataset, DatasetSpec):
            dataset = load(dataset)
        if isinstance(dataset, Dataset):
            dataset = dataset.geometry()
        if not isinstance(dataset, DatasetGeometry):
            raise InputTypeError(f"dataset: expected a Dataset, DatasetSpec or geometry, got {type(dataset).__name__}")
        return cls(dataset.n_frames, dataset.frame_shape, dataset.object_shape, dataset.probe_modes,
                   dataset.object_modes)


@dataclass(frozen=True)
class MemoryPrediction:
    """Bytes by term; ``device_bytes`` is what sits on the accelerator (all of it on a CPU backend)."""

    engine: str
    backend: str
    frames_per_block: int
    ranks: int
    streaming: bool
    terms: dict[str, int] = field(default_factory=dict)
    host_terms: dict[str, int] = field(default_factory=dict)
    residency: str = "resident"
    #: Residency "disk": scratch-file bytes one iteration reads and writes at least (every stored array once per
    #: pass: the intensities ``intensity_reads_per_iteration`` times, DM/RAAR's exit waves
    #: ``wave_reads_per_iteration`` times and written once).
    disk_read_bytes: int = 0
    disk_write_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        """The algorithm's own footprint on the memory it runs in (device, or host for CPU backends)."""
        return sum(self.terms.values())

    @property
    def host_bytes(self) -> int:
        """Host memory besides the device's (streamed per-frame arrays in pinned buffers)."""
        return sum(self.host_terms.values())


def predict_memory(dataset: Any, engine: str, backend: str = "numpy", frames_per_block: int | None = None,
                   ranks: int = 1, device: str | None = None, residency: str = "auto",
                   available_bytes: int | None = None, placement: Placement | None = None,
                   subpixel: bool = False) -> MemoryPrediction:
    """Predicted peak footprint of one rank running ``engine`` on ``dataset``.

    ``backend`` is a registered backend name; whether ``device`` is device memory is the backend
    descriptor's call. Residency and block follow the engines' own choice (engines/placement.py) for
    ``available_bytes`` of free memory (None: unlimited), unless ``frames_per_block`` / ``residency``
    state them. ``placement``: the one a run chose (a record's prediction uses what the run did). ``subpixel``:
    the run places frames to the fraction of a pixel (engines/subpixel.py), which adds block temporaries.
    """
    spec = engine_spec(engine)
    descriptor = backend_descriptor(backend)
    if int(ranks) != ranks or ranks < 1:
        raise InputError(f"ranks: expected a positive integer, got {ranks!r}")
    geometry = Geometry.of(dataset)
    on_device = descriptor.is_device_memory(device)
    n_local = math.ceil(geometry.n_frames / ranks)
    if frames_per_block is not None and frames_per_block < 1:
        raise InputError(f"frames_per_block: expected a positive integer, got {frames_per_block!r}")
    costs = frame_costs(geometry.frame_shape, geometry.object_shape, geometry.probe_modes, geometry.object_modes,
                        [spec], descriptor.fused_kernels(device), subpixel)
    if placement is None:
        placement = choose_placement(n_local, costs, on_device, available_bytes, frames_per_block, residency,
                                     spec.largest_useful_block())  # with the engine's default options
    block, streaming = placement.frames_per_block, placement.streaming

    height, width = geometry.frame_shape
    pixels = height * width
    modes = geometry.probe_modes * geometry.object_modes
    frame_waves = 8 * modes * pixels
    frame_views = 8 * geometry.object_modes * pixels
    frame_intensity = 4 * pixels
    object_bytes = 8 * geometry.object_modes * geometry.object_shape[0] * geometry.object_shape[1]

    per_frame = {"intensities": frame_intensity}
    if spec.keeps_exit_waves:
        per_frame["exit_waves"] = frame_waves
    frames_held = 2 * block if streaming else n_local  # in use + being uploaded
    terms = {name: size * frames_held for name, size in per_frame.items()}
    if placement.disk:  # exit waves in a scratch file: a block in use and one read ahead in memory
        terms["exit_waves"] = 2 * block * frame_waves
    if placement.intensities_on_disk:  # likewise the intensities, when they alone do not fit
        terms["intensities"] = 2 * block * frame_intensity
    host_terms = {f"pinned_{name}": size * n_local for name, size in per_frame.items()} if streaming else {}

    wave_blocks, view_blocks = spec.memory.fused if descriptor.fused_kernels(device) else spec.memory.reference
    wave_blocks += subpixel_temporaries(spec, subpixel)
    per_frame_temporaries = wave_blocks * frame_waves + view_blocks * frame_views
    if spec.one_frame_at_a_time:  # the R-factor's first sum reads one block
        terms["block_temporaries"] = int(per_frame_temporaries + block * frame_intensity)
    else:
        terms["block_temporaries"] = int(block * per_frame_temporaries)
    terms["object_and_buffers"] = int((1 + spec.memory.object_buffers) * object_bytes)
    terms["probe_and_buffers"] = 4 * 8 * geometry.probe_modes * pixels
    terms["mask_and_indices"] = pixels + 16 * n_local
    # the returned model's evaluation after each iteration: a step of exit waves propagated, and its intensities
    step = evaluation_step(block, modes, geometry.frame_shape)
    terms["evaluation"] = int(step * (2 * frame_waves + 3 * frame_intensity))
    disk_read = disk_write = 0
    if placement.intensities_on_disk:
        disk_read += spec.intensity_reads_per_iteration * n_local * frame_intensity
    if placement.disk:
        disk_read += spec.wave_reads_per_iteration * n_local * frame_waves
        disk_write += n_local * frame_waves
    return MemoryPrediction(engine, backend, block, ranks, streaming, terms, host_terms, placement.residency,
                            disk_read, disk_write)


def largest_block_that_fits(dataset: Any, engine: str, backend: str, device_memory_bytes: int, ranks: int = 1,
                            device: str | None = None) -> int | None:
    """The largest frames_per_block that fits ``device_memory_bytes`` with the per-frame data streamed
    (None: not even 1)."""
    geometry = Geometry.of(dataset)
    n_local = math.ceil(geometry.n_frames / ranks)

    def fits(block: int) -> bool:
        return predict_memory(geometry, engine, backend, block, ranks, device,
                              residency="streamed").total_bytes <= device_memory_bytes

    if fits(n_local):
        return n_local
    low, high = 0, n_local  # fits(low) or low == 0; not fits(high)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low or None


def ranks_needed(dataset: Any, engine: str, backend: str, device_memory_bytes: int,
                 device: str | None = None) -> int | None:
    """The fewest ranks (one device each) at which each rank's frames are resident, with the block the engine
    would choose on that memory: the exact count (a doubling search, then bisection), never a capped guess. None
    when even one frame per rank does not fit: the object and probe alone exceed the device (object tiling,
    docs/design.md, is the next wall)."""
    geometry = Geometry.of(dataset)

    def fits(ranks: int) -> bool:
        return predict_memory(geometry, engine, backend, None, ranks, device, residency="resident",
                              available_bytes=device_memory_bytes).total_bytes <= device_memory_bytes

    if fits(1):
        return 1
    high = 2
    while not fits(high):
        if high >= geometry.n_frames:
            return None
        high = min(2 * high, geometry.n_frames)
    low = high // 2  # does not fit
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if fits(middle) else (middle, high)
    return high


def parse_bytes(text: str | int | float) -> int:
    """"80GB", "80 GiB", "512MB", "1.5e9" -> bytes (GB = 10⁹, GiB = 2³⁰), a ValueError naming the text."""
    if isinstance(text, int | float):
        return int(text)
    units = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
             "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
    cleaned = str(text).strip().upper().replace(" ", "")
    number = cleaned.rstrip("KMGTIB")
    unit = cleaned[len(number):]
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if unit not in units or not 0 < value < math.inf:
        raise InputError(f"memory size: expected a number with an optional unit (e.g. 80GB, 24GiB), got {text!r}")
    return int(value * units[unit])
