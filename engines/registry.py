"""The engine registry: one registration per engine binds everything the rest of ptybench needs.

An engine module decorates its class with ``@register(...)``: name, options class, the memory terms the
memory model uses, the FFTs per frame the FFT floor uses, whether it keeps every exit wave and whether
its MPI form is the serial algorithm ("exact") or a merge of per-rank results ("merged"). Everything
else (parameter parsing, ``ptybench engines``, ``plan``, the memory model, sweeps, asv grids) reads
this registry, so adding an engine is one module plus its test.

Engines outside this package register the same way; name their modules in ``PTYBENCH_ENGINE_MODULES``
(comma-separated) so that every process ptybench starts (runner children, MPI ranks, asv) imports them.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import InputError

#: Modules of the built-in engines, imported on first use of the registry.
BUILTIN_MODULES = ("dm_raar", "pie", "pie_batched", "ml")
#: Environment variable naming extra engine modules (plug-ins), comma-separated import paths.
PLUGIN_VARIABLE = "PTYBENCH_ENGINE_MODULES"
#: Installed packages register engine modules here (``[project.entry-points."ptybench.engines"]``); the
#: environment variable above adds modules on top, for a plug-in that is not installed.
ENTRY_POINT_GROUP = "ptybench.engines"
DISTRIBUTED_FORMS = ("exact", "merged")


@dataclass(frozen=True)
class MemoryTerms:
    """Frame-sized arrays alive at the engine's peak, per frame of a block, as (exit-wave-sized,
    view-sized) counts, for fused kernels (numba on a CPU: NumPy, torch-CPU) and for the reference ones (GPU);
    ``object_buffers``: object-sized complex64 arrays held besides the object; ``subpixel``: exit waves of one
    frame that sub-pixel placement adds per frame of a block (engines/subpixel.py: the moved probes, their
    spectra, the reference products). Counted in the engine code and fitted to measured peaks (docs/design.md,
    "Memory model")."""

    fused: tuple[float, float]
    reference: tuple[float, float]
    object_buffers: float
    subpixel: float = 0.0


@dataclass(frozen=True)
class EngineSpec:
    name: str
    engine_class: type
    options_class: type
    memory: MemoryTerms
    #: Propagations (forward or backward FFT pairs of one frame's waves) per frame per iteration.
    propagations_per_frame: int
    #: Frames per FFT call: 1 for frame-by-frame engines, None for a whole block.
    frames_per_fft_batch: int | None
    keeps_exit_waves: bool
    distributed: str
    #: The most frames one compute block can use, from the stage's options (a batched engine computes no
    #: more than a batch at once; None: no limit). The placement caps an automatic block with it.
    block_limit: Callable[[Any], int | None] | None = None
    #: Passes over the intensities per iteration (ML: the gradient and the line search), the disk reads of
    #: residency "disk" the plan prices.
    intensity_reads_per_iteration: int = 1
    #: Passes over the exit waves per iteration (DM/RAAR: the exit-wave update, and the probe update's pass once
    #: the probe is refined), the disk reads of residency "disk" the plan prices; each wave is written once.
    wave_reads_per_iteration: int = 1

    def largest_useful_block(self, options: Any = None) -> int | None:
        """``block_limit`` of ``options`` (default: the engine's default options), None when unlimited."""
        if self.block_limit is None:
            return None
        limit = self.block_limit(self.options_class() if options is None else options)
        return None if limit is None else int(limit)

    @property
    def one_frame_at_a_time(self) -> bool:
        return self.frames_per_fft_batch == 1


_REGISTRY: dict[str, EngineSpec] = {}
_loaded = False


def register(name: str, *, options: type, memory: MemoryTerms, propagations_per_frame: int,
             keeps_exit_waves: bool, distributed: str, frames_per_fft_batch: int | None = None,
             block_limit: Callable[[Any], int | None] | None = None,
             intensity_reads_per_iteration: int = 1, wave_reads_per_iteration: int = 1) -> Callable[[type], type]:
    """Class decorator: ``@register("DM", options=DMOptions, ...)``. A class may register several names."""
    if distributed not in DISTRIBUTED_FORMS:
        raise InputError(f"distributed: expected one of {list(DISTRIBUTED_FORMS)}, got {distributed!r}")

    def decorate(engine_class: type) -> type:
        if name in _REGISTRY and _REGISTRY[name].engine_class is not engine_class:
            raise InputError(f"engine {name!r} is registered twice ({_REGISTRY[name].engine_class.__qualname__} "
                             f"and {engine_class.__qualname__})")
        _REGISTRY[name] = EngineSpec(name, engine_class, options, memory, propagations_per_frame,
                                     frames_per_fft_batch, keeps_exit_waves, distributed, block_limit,
                                     intensity_reads_per_iteration, wave_reads_per_iteration)
        return engine_class

    return decorate


def unregister(name: str) -> None:
    """Remove a registration (a plug-in's tests register and remove their engine)."""
    _REGISTRY.pop(name, None)


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN_MODULES:
        importlib.import_module(f"{__package__}.{module}")
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:  # an installed package's engines, as xarray finds its backends
            entry_point.load()
        except Exception as error:  # a broken third-party package must not stop the built-in engines
            warnings.warn(f"engine plug-in {entry_point.name!r} ({entry_point.value}) did not load: {error}",
                          stacklevel=3)
    for module in filter(None, (m.strip() for m in os.environ.get(PLUGIN_VARIABLE, "").split(","))):
        try:
            importlib.import_module(module)
        except ImportError as error:
            _loaded = False  # the next call tries again (and says so again) once the variable is fixed
            raise InputError(f"{PLUGIN_VARIABLE}: expected comma-separated importable engine modules, cannot "
                             f"import {module!r} ({error})") from error


def _is_builtin(spec: EngineSpec) -> bool:
    module = spec.engine_class.__module__
    return module.startswith(__package__ + ".") and module.rpartition(".")[2] in BUILTIN_MODULES


def _listing_order(spec: EngineSpec) -> int:
    """Built-in engines in BUILTIN_MODULES order (whatever was imported first), then plug-ins."""
    return BUILTIN_MODULES.index(spec.engine_class.__module__.rpartition(".")[2]) if _is_builtin(spec) \
        else len(BUILTIN_MODULES)


def is_builtin_engine(name: str) -> bool:
    """Shipped with ptybench (not a plug-in): a record of it can be a baseline."""
    return _is_builtin(engine_spec(name))


def engine_names() -> tuple[str, ...]:
    _load()
    return tuple(sorted(_REGISTRY, key=lambda name: _listing_order(_REGISTRY[name])))


def engine_spec(name: str) -> EngineSpec:
    _load()
    if name not in _REGISTRY:
        raise InputError(f"engine: expected one of {list(_REGISTRY)}, got {name!r}")
    return _REGISTRY[name]


def engine_class(name: str) -> type:
    return engine_spec(name).engine_class


def __getattr__(name: str) -> Any:
    """``ENGINE_NAMES``: the registered names, read when asked (plug-ins may add to them)."""
    if name == "ENGINE_NAMES":
        return engine_names()
    raise AttributeError(name)
