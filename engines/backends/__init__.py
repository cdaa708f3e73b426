"""Backend registry: a name ("numpy", "torch", "cupy") to a Backend, imported only when asked for."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from .base import Backend, BackendUnavailable, MemoryStats

_MODULES = {
    "numpy": ("numpy_backend", "NumpyBackend"),
    "torch": ("torch_backend", "TorchBackend"),
    "cupy": ("cupy_backend", "CupyBackend"),
}

BACKEND_NAMES = tuple(_MODULES)


def get_backend(name: str = "numpy", device: str | int | None = None,
                threads: int | None = None) -> Backend:
    """Build a backend by name; raises BackendUnavailable (with the reason) if it cannot run here."""
    if isinstance(name, Backend):
        return name
    if name not in _MODULES:
        raise ValueError(f"backend: expected one of {list(_MODULES)}, got {name!r}")
    module_name, class_name = _MODULES[name]
    try:
        module = importlib.import_module(f"{__name__}.{module_name}")
    except ImportError as error:
        raise BackendUnavailable(f"{name}: {error}") from error
    return getattr(module, class_name)(device=device, threads=threads)


@dataclass(frozen=True)
class BackendStatus:
    name: str
    device: str | None
    available: bool
    reason: str


#: The (backend, device) pairs `ptybench backends` probes.
PROBED_TARGETS = (("numpy", "cpu"), ("torch", "cpu"), ("torch", "cuda"), ("cupy", "cuda"))


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


__all__ = ["BACKEND_NAMES", "Backend", "BackendStatus", "BackendUnavailable", "MemoryStats",
           "backend_status", "get_backend"]
