"""The backend interface: the few operations the array API lacks or that are hot.

An engine is written once against ``backend.xp`` (an array-api-compat namespace) plus this
interface; a backend supplies unitary FFTs, gather/scatter-add of frame views, synchronisation,
memory statistics and host<->device transfers. Everything else is shared algorithm code.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..environment import env_choice


class BackendUnavailable(RuntimeError):
    """Raised when a backend's library is not installed or has no device; the message says why."""


@dataclass(frozen=True)
class MemoryStats:
    """Device memory of a backend in bytes; ``None`` where the backend cannot measure it (host arrays)."""

    in_use_bytes: int | None
    peak_bytes: int | None


class Backend:
    """Base class; subclasses set ``name``, ``device`` and ``xp`` and implement the abstract methods."""

    name: str = "abstract"
    device: str = "cpu"
    xp: Any = None
    #: True when arrays live in memory separate from the host (a GPU); streaming only pays then.
    is_device_memory: bool = False

    # --- transfers -------------------------------------------------------------------------
    def asarray(self, host_array: np.ndarray) -> Any:
        """Copy a host array onto the backend's device (always a copy: engines own their state)."""
        raise NotImplementedError

    def adopt(self, host_array: np.ndarray) -> Any:
        """A backend array from a host array nobody else holds: no copy where the backend can share it
        (so loading N frames does not briefly need two copies of them)."""
        return self.asarray(host_array)

    def to_numpy(self, array: Any) -> np.ndarray:
        """Copy a backend array to a host NumPy array."""
        raise NotImplementedError

    def index_array(self, host_indices: np.ndarray) -> Any:
        """Integer index array usable to index this backend's arrays."""
        return self.asarray(np.ascontiguousarray(host_indices, dtype=np.int64))

    def pinned_empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """Host buffer for streaming blocks to the device (page-locked where the backend can)."""
        return np.empty(shape, dtype=dtype)

    # Streaming (residency "streamed" on a device): copies run on a side stream so the next
    # block's upload overlaps this block's compute. Host backends copy synchronously.
    def upload_async(self, host_block: np.ndarray) -> Any:
        """Start copying a (pinned) host block to the device; returns a handle for ``ready``."""
        return self.asarray(host_block)

    def ready(self, handle: Any) -> Any:
        """The device array of an upload; later work on the compute stream waits for the copy."""
        return handle

    def download_async(self, device_block: Any, host_block: np.ndarray) -> None:
        """Queue a copy of ``device_block`` into ``host_block`` after the compute queued so far.

        Ordered before any later ``upload_async`` (one copy stream), so a block written back and
        read again is never stale; ``sync`` waits for it.
        """
        host_block[...] = self.to_numpy(device_block)

    # --- arrays ----------------------------------------------------------------------------
    def empty(self, shape: tuple[int, ...], dtype: Any) -> Any:
        return self.xp.empty(shape, dtype=dtype)

    def zeros(self, shape: tuple[int, ...], dtype: Any) -> Any:
        return self.xp.zeros(shape, dtype=dtype)

    # --- hot operations ----------------------------------------------------------------------
    def fft2(self, array: Any, overwrite: bool = False) -> Any:
        """Unitary 2-D FFT over the last two axes; may reuse ``array``'s memory when ``overwrite``."""
        raise NotImplementedError

    def ifft2(self, array: Any, overwrite: bool = False) -> Any:
        """Unitary inverse 2-D FFT over the last two axes."""
        raise NotImplementedError

    def gather_views(self, obj: Any, rows: Any, cols: Any, frame_shape: tuple[int, int]) -> Any:
        """Views O[:, r_j:r_j+Y, c_j:c_j+X] of an (M_o, A, B) object as an (n, M_o, Y, X) array."""
        raise NotImplementedError

    def scatter_add_views(self, target: Any, rows: Any, cols: Any, patches: Any) -> None:
        """target[:, r_j:r_j+Y, c_j:c_j+X] += patches[j] for every j; overlapping patches add up."""
        raise NotImplementedError

    # Gather or scatter fused with a kernel: these are the definitions; a backend may do each in one pass.
    def overlap_waves(self, probe: Any, obj: Any, rows: Any, cols: Any, out: Any = None) -> Any:
        """Exit waves P_k · O_l,j of frames (rows, cols): ``kernels.exit_waves`` of the gathered views
        (into ``out``, a preallocated block buffer, if given)."""
        waves = self.kernels.exit_waves(probe, self.gather_views(obj, rows, cols, tuple(probe.shape[-2:])))
        if out is None:
            return waves
        out[...] = waves
        return out

    # DM/RAAR's update of a block comes in two halves around the Fourier projection; the second completes
    # the first. Between them ``waves`` and ``scratch`` hold what the backend needs: here ψ unchanged and
    # P·O_j in ``scratch``; a one-pass backend instead stores (1 − a − b)·ψ + a·P·O_j in ψ's place while
    # P·O_j is at hand, so the second half reads neither the object nor an overlap buffer.
    def mixed_overlap_waves(self, probe: Any, obj: Any, rows: Any, cols: Any, waves: Any, c: float, a: float,
                            b: float, out: Any, scratch: Any = None) -> Any:
        """c·P·O_j + (1 − c)·ψ into ``out`` (the Fourier projection's input): ``kernels.linear_mix`` of
        ``overlap_waves``, which stay in ``scratch`` (a block buffer) for ``difference_map_update_at``."""
        return self.kernels.linear_mix(self.overlap_waves(probe, obj, rows, cols, scratch), waves, c, out)

    @property
    def difference_map_scratch(self) -> bool:
        """Whether the two halves need ``scratch`` (the definitions here: P·O_j kept between them); a one-pass
        backend says False and the engine allocates no scratch block."""
        return True

    def difference_map_update_at(self, probe: Any, obj: Any, rows: Any, cols: Any, waves: Any, projected: Any,
                                 a: float, b: float, scratch: Any = None) -> Any:
        """ψ ← (1 − a − b)·ψ + b·Π_M + a·P·O_j in place (``kernels.difference_map_update``), completing
        ``mixed_overlap_waves`` of the same block, coefficients, object and probe (P·O_j from ``scratch`` as it
        left it, or recomputed when there is none)."""
        overlap = scratch if scratch is not None else self.overlap_waves(probe, obj, rows, cols)
        return self.kernels.difference_map_update(waves, projected, overlap, a, b)

    def probe_update_terms_at(self, obj: Any, rows: Any, cols: Any, waves: Any) -> tuple[Any, Any]:
        """``kernels.probe_update_terms`` of the views of frames (rows, cols) and their waves."""
        return self.kernels.probe_update_terms(self.gather_views(obj, rows, cols, tuple(waves.shape[-2:])), waves)

    def add_object_terms(self, target: Any, rows: Any, cols: Any, probe: Any, waves: Any) -> None:
        """target += Σ_k P_k* ψ_jk scattered to each frame's window (DM's numerator, ML's gradient)."""
        self.scatter_add_views(target, rows, cols, self.kernels.object_update_terms(probe, waves))

    @property
    def kernels(self) -> Any:
        """The engines' shared hot steps; a backend overrides ``_kernel_class`` to fuse some.

        ``PTYBENCH_KERNELS=reference`` runs the unfused reference definitions instead, so the gain
        of a backend's fused kernels can be measured side by side (the class used is in every record).
        """
        if self._kernels is None:
            from ..kernels import Kernels
            fused = self._kernel_class if env_choice("PTYBENCH_KERNELS", ("fused", "reference"), "fused") == "fused" \
                else None
            self._kernels = (fused or Kernels)(self.xp)
        return self._kernels

    _kernels: Any = None
    _kernel_class: Any = None

    # --- bookkeeping -----------------------------------------------------------------------
    def sync(self) -> None:
        """Wait for queued device work, so a clock read afterwards measures it."""

    def memory_stats(self) -> MemoryStats:
        return MemoryStats(None, None)

    def reset_peak_memory(self) -> None:
        """Start a new peak-memory window."""

    def free_memory(self) -> None:
        """Return cached device memory to the driver (between runs)."""

    def thread_limit(self, threads: int | None) -> contextlib.AbstractContextManager:
        """Context in which the backend's CPU work uses at most ``threads`` threads (None: as it is)."""
        if threads is None:
            return contextlib.nullcontext()
        self.threads = threads
        return self._limit_threads(threads)

    def _limit_threads(self, threads: int) -> contextlib.AbstractContextManager:
        """The backend's own thread pools, limited (and restored on exit); nothing for a GPU."""
        return contextlib.nullcontext()

    def available_memory_bytes(self) -> int:
        """Free memory arrays can take: the host's available memory, within its memory cgroup's and address-space
        limits (device backends override)."""
        from ..host_memory import host_available_bytes

        return host_available_bytes()

    def device_count(self) -> int:
        """Devices of this backend's kind on this node (one rank per device under MPI)."""
        return 1

    def describe(self) -> dict[str, Any]:
        """Name, device and library versions, for result records."""
        return {"backend": self.name, "device": self.device}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} device={self.device!r}>"
