"""CuPy backend (one CUDA device): cuFFT plans through cupyx.scipy.fft, index gather, scatter_add.

Peak device memory is what the memory pool holds: ``reset_peak_memory`` returns the pool's cached
blocks to the driver, and since the pool keeps every block it ever allocated until asked, its total
afterwards is the high-water mark of the run (what the process really took from the GPU).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ..errors import InputError
from .base import Backend, BackendUnavailable, MemoryStats

try:
    import array_api_compat.cupy as xp_cupy
    import cupy
    import cupyx
    import cupyx.scipy.fft as cufft
except ImportError as error:  # pragma: no cover - depends on the environment
    raise BackendUnavailable(f"cupy: not installed ({error}); on a CUDA machine run `make install-gpu`") from error


@functools.cache
def device_count() -> int:
    """CUDA devices CuPy can use; 0 (not an exception) without a driver or GPU, probed once."""
    try:
        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # CUDARuntimeError, or a missing libcuda raising on first use
        return 0


class CupyBackend(Backend):
    name = "cupy"
    xp = xp_cupy
    is_device_memory = True

    def __init__(self, device: str | int | None = None, threads: int | None = None) -> None:
        index = _device_index(device)
        count = device_count()
        if count == 0:
            raise BackendUnavailable("cupy: installed, but no CUDA device or driver is visible here")
        if index >= count:
            raise InputError(f"device: expected a CUDA device index below {count}, got {device!r}")
        self.cuda_device = cupy.cuda.Device(index)
        self.cuda_device.use()
        self.device = f"cuda:{index}"
        self.threads = threads
        self._pool = cupy.get_default_memory_pool()
        self._copy_stream = cupy.cuda.Stream(non_blocking=True)
        self._kernel_class = _fused_kernel_class()

    # --- transfers -------------------------------------------------------------------------
    def asarray(self, host_array: np.ndarray) -> Any:
        return cupy.array(host_array, copy=True)

    def to_numpy(self, array: Any) -> np.ndarray:
        if isinstance(array, np.ndarray):
            return array
        return cupy.asnumpy(array)

    def index_array(self, host_indices: np.ndarray) -> Any:
        return cupy.asarray(np.ascontiguousarray(host_indices, dtype=np.int64))

    def pinned_empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return cupyx.empty_pinned(shape, dtype=dtype)

    def upload_async(self, host_block: np.ndarray) -> Any:
        # Allocate on the compute stream (the pool may hand back a block the compute stream freed), and
        # let the copy stream wait for the compute queued so far before it writes into it.
        block = cupy.empty(host_block.shape, dtype=host_block.dtype)
        self._copy_stream.wait_event(cupy.cuda.get_current_stream().record())
        block.set(host_block, stream=self._copy_stream)
        done = self._copy_stream.record()
        return block, done

    def ready(self, handle: Any) -> Any:
        block, done = handle
        cupy.cuda.get_current_stream().wait_event(done)
        return block

    def download_async(self, device_block: Any, host_block: np.ndarray) -> None:
        self._copy_stream.wait_event(cupy.cuda.get_current_stream().record())
        device_block.get(stream=self._copy_stream, out=host_block, blocking=False)

    # --- hot operations ----------------------------------------------------------------------
    def fft2(self, array: Any, overwrite: bool = False) -> Any:
        return cufft.fft2(array, norm="ortho", overwrite_x=overwrite)

    def ifft2(self, array: Any, overwrite: bool = False) -> Any:
        return cufft.ifft2(array, norm="ortho", overwrite_x=overwrite)

    @staticmethod
    def _window_indices(rows: Any, cols: Any, frame_shape: tuple[int, int]) -> tuple[Any, Any]:
        row_index = rows[:, None] + cupy.arange(frame_shape[0])[None, :]
        col_index = cols[:, None] + cupy.arange(frame_shape[1])[None, :]
        return row_index, col_index

    def gather_views(self, obj: Any, rows: Any, cols: Any, frame_shape: tuple[int, int]) -> Any:
        row_index, col_index = self._window_indices(rows, cols, frame_shape)
        views = obj[:, row_index[:, :, None], col_index[:, None, :]]  # (M_o, n, Y, X)
        return cupy.ascontiguousarray(views.transpose(1, 0, 2, 3))

    def scatter_add_views(self, target: Any, rows: Any, cols: Any, patches: Any) -> None:
        height, width = patches.shape[-2:]
        row_index, col_index = self._window_indices(rows, cols, (height, width))
        flat_index = (row_index[:, :, None] * target.shape[-1] + col_index[:, None, :]).reshape(-1)
        for mode in range(target.shape[0]):
            source = patches[:, mode if patches.shape[1] > 1 else 0].reshape(-1).astype(target.dtype, copy=False)
            cupyx.scatter_add(target[mode].reshape(-1), flat_index, source)

    # --- bookkeeping -----------------------------------------------------------------------
    def sync(self) -> None:
        self.cuda_device.synchronize()

    def memory_stats(self) -> MemoryStats:
        return MemoryStats(self._pool.used_bytes(), self._pool.total_bytes())

    def reset_peak_memory(self) -> None:
        self.sync()
        self._pool.free_all_blocks()

    def free_memory(self) -> None:
        self.sync()
        self._pool.free_all_blocks()
        cupy.get_default_pinned_memory_pool().free_all_blocks()

    def available_memory_bytes(self) -> int:
        """Free device memory plus what CuPy's pool holds but does not use (it hands it back to arrays)."""
        free = int(self.cuda_device.mem_info[0])
        return free + int(self._pool.total_bytes() - self._pool.used_bytes())

    def device_count(self) -> int:
        return max(device_count(), 1)

    def describe(self) -> dict[str, Any]:
        properties = cupy.cuda.runtime.getDeviceProperties(self.cuda_device.id)
        name = properties["name"]
        return {"backend": self.name, "device": self.device, "cupy": cupy.__version__,
                "gpu": name.decode() if isinstance(name, bytes) else str(name),
                "gpu_memory_bytes": int(properties["totalGlobalMem"])}


def _fused_kernel_class() -> Any:
    """The numba.cuda kernels where numba can reach the GPU (numba-cuda installed), else None: the
    reference kernels through CuPy (correct, slower; the record's ``kernels`` says which ran)."""
    try:
        from numba import cuda

        if not cuda.is_available():
            return None
        from .cuda_kernels import CudaKernels
    except Exception:  # numba without its CUDA target, or a driver numba cannot use
        return None
    return CudaKernels


def _device_index(device: str | int | None) -> int:
    """0, 3, "3", "cuda", "cuda:3" -> a device index; anything else is a ValueError naming ``device``."""
    if device is None or device == "cuda":
        return 0
    text = str(device)
    text = text[len("cuda:"):] if text.startswith("cuda:") else text
    if not text.isdigit():
        raise InputError(f"device: expected a CUDA device index (0, 1, ...) or 'cuda:k' for cupy, got {device!r}")
    return int(text)
