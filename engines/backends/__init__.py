"""Backend registry: one descriptor per backend, the only place backend names and devices are parsed.

A descriptor knows what the harness needs without importing the (heavy, maybe absent) library: its
module, whether a device string means device memory, its default probe targets and whether it runs
fused kernels (what the memory model counts). Adding a backend is one module plus one
``register_backend`` line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import InputError
from .base import Backend, BackendUnavailable, MemoryStats


@dataclass(frozen=True)
class BackendDescriptor:
    name: str
    module: str
    class_name: str
    #: device (None for the default) -> True when arrays live apart from the host (a GPU).
    device_memory: Callable[[str | int | None], bool]
    #: (backend, device) pairs `ptybench backends` probes.
    probe_devices: tuple[str, ...]
    #: device -> True when the backend's block temporaries are those counted for fused kernels
    #: (ptybench/memory_model.py). torch-CPU runs the numba kernels but its FFTs and gathers are out of
    #: place, and its footprint measured as before (the reference counts); CuPy counts as unfused until
    #: a GPU run measures its fused kernels.
    fused_on: Callable[[str | int | None], bool] = lambda device: False

    def is_device_memory(self, device: str | int | None) -> bool:
        return self.device_memory(device)

    def fused_kernels(self, device: str | int | None) -> bool:
        return self.fused_on(device)


_BACKENDS: dict[str, BackendDescriptor] = {}


def register_backend(descriptor: BackendDescriptor) -> None:
    _BACKENDS[descriptor.name] = descriptor


register_backend(BackendDescriptor("numpy", "numpy_backend", "NumpyBackend", lambda device: False, ("cpu",),
                                   fused_on=lambda device: True))
register_backend(BackendDescriptor("torch", "torch_backend", "TorchBackend",
                                   lambda device: str(device or "cpu").startswith("cuda"), ("cpu", "cuda")))
register_backend(BackendDescriptor("cupy", "cupy_backend", "CupyBackend", lambda device: True, ("cuda",)))

BACKEND_NAMES = tuple(_BACKENDS)


def backend_descriptor(name: str) -> BackendDescriptor:
    if name not in _BACKENDS:
        raise InputError(f"backend: expected one of {list(_BACKENDS)}, got {name!r}")
    return _BACKENDS[name]


def parse_target(text: str) -> tuple[str, str | None]:
    """"numpy", "torch", "torch:cuda", "torch:cuda:1", "cupy", "cupy:1" -> (backend, device or None)."""
    name, _, device = str(text).partition(":")
    if name not in _BACKENDS:
        raise InputError(f"backend: expected one of {', '.join(f'{b}[:DEVICE]' for b in _BACKENDS)}, got {text!r}")
    if device and not _valid_device(name, device):
        expected = {"torch": "'cpu', 'cuda' or 'cuda:K'", "cupy": "a device number K"}.get(name, "no device")
        raise InputError(f"backend: the device of {name} is {expected} (e.g. torch:cuda:0, cupy:1), got {text!r}")
    return name, device or None


def _valid_device(name: str, device: str) -> bool:
    if name == "torch":
        kind, _, index = device.partition(":")
        return (kind == "cpu" and not index) or (kind == "cuda" and (not index or index.isdigit()))
    if name == "cupy":
        return device.isdigit()
    return False


def get_backend(name: str = "numpy", device: str | int | None = None,
                threads: int | None = None) -> Backend:
    """Build a backend by name; raises BackendUnavailable (with the reason) if it cannot run here."""
    if isinstance(name, Backend):
        return name
    descriptor = backend_descriptor(name)
    try:
        module = importlib.import_module(f"{__name__}.{descriptor.module}")
    except ImportError as error:
        raise BackendUnavailable(f"{name}: {error}") from error
    return getattr(module, descriptor.class_name)(device=device, threads=threads)


@dataclass(frozen=True)
class BackendStatus:
    name: str
    device: str | None
    available: bool
    reason: str


#: The (backend, device) pairs `ptybench backends` probes.
PROBED_TARGETS = tuple((d.name, device) for d in _BACKENDS.values() for device in d.probe_devices)


def backend_status(targets: tuple[tuple[str, str], ...] = PROBED_TARGETS) -> list[BackendStatus]:
    """Each (backend, device) with whether it runs here and, if not, why (for `ptybench backends`)."""
    statuses = []
    for name, device in targets:
        try:
            backend = get_backend(name, device)
            statuses.append(BackendStatus(name, backend.device, True, _versions(backend)))
        except (BackendUnavailable, ValueError) as error:
            statuses.append(BackendStatus(name, device, False, str(error)))
    return statuses


def _versions(backend: Backend) -> str:
    info = backend.describe()
    return ", ".join(f"{key} {value}" for key, value in info.items() if key not in ("backend", "device"))


__all__ = ["BACKEND_NAMES", "Backend", "BackendDescriptor", "BackendStatus", "BackendUnavailable", "MemoryStats",
           "backend_descriptor", "backend_status", "get_backend", "parse_target", "register_backend"]
