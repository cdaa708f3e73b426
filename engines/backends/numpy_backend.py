"""NumPy backend: a chosen FFT library with worker threads (numpy.fft computes complex64 in complex128)."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import array_api_compat.numpy as xp_numpy
import numba
import numpy as np
import scipy
from threadpoolctl import threadpool_limits

from ..errors import InputError
from . import numba_kernels as fused
from .base import Backend
from .fft_libraries import FFTChoice
from .numba_kernels import NumbaKernels, gather_views, scatter_add_views

#: Below this many elements an FFT call runs on one worker (measured: one 64² frame takes ~30 µs on
#: one worker and ~150 µs on two).
PARALLEL_FFT_MIN_SIZE = 2 * 128 * 128


class NumpyBackend(Backend):
    name = "numpy"
    xp = xp_numpy
    _kernel_class = NumbaKernels

    def __init__(self, device: str | None = None, threads: int | None = None) -> None:
        if device not in (None, "cpu"):
            raise InputError(f"device: the numpy backend runs on 'cpu', got {device!r}")
        self.device = "cpu"
        self.threads = threads or len(os.sched_getaffinity(0))
        self.fft = FFTChoice()

    def asarray(self, host_array: np.ndarray) -> np.ndarray:
        return np.array(host_array, copy=True)

    def adopt(self, host_array: np.ndarray) -> np.ndarray:
        return host_array

    def to_numpy(self, array: Any) -> np.ndarray:
        return np.asarray(array)

    def index_array(self, host_indices: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(host_indices, dtype=np.intp)

    def _workers(self, array: np.ndarray) -> int:
        """scipy.fft splits a batch over workers; one small transform only pays thread start-up."""
        return self.threads if array.size >= PARALLEL_FFT_MIN_SIZE else 1

    def _transform(self, forward: bool, array: np.ndarray, overwrite: bool) -> np.ndarray:
        # A 3-D batch runs ~30 % faster in scipy.fft than the same data as (n, M_p, M_o, Y, X).
        batch = array.reshape(-1, *array.shape[-2:]) if array.ndim > 3 and array.flags.c_contiguous else array
        pixels = array.shape[-1] * array.shape[-2]
        library = self.fft.for_batch(pixels, array.size // pixels)
        transform = library.forward if forward else library.inverse
        return transform(batch, self._workers(array), overwrite).reshape(array.shape)

    def fft2(self, array: np.ndarray, overwrite: bool = False) -> np.ndarray:
        return self._transform(True, array, overwrite)

    def ifft2(self, array: np.ndarray, overwrite: bool = False) -> np.ndarray:
        return self._transform(False, array, overwrite)

    def gather_views(self, obj: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                     frame_shape: tuple[int, int]) -> np.ndarray:
        return gather_views(obj, rows, cols, frame_shape)

    def scatter_add_views(self, target: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                          patches: np.ndarray) -> None:
        scatter_add_views(target, rows, cols, patches)

    def _fused(self) -> bool:
        return isinstance(self.kernels, NumbaKernels)  # not under PTYBENCH_KERNELS=reference

    def overlap_waves(self, probe: Any, obj: Any, rows: Any, cols: Any, out: Any = None) -> Any:
        return fused.overlap_waves(probe, obj, rows, cols, out) if self._fused() else super().overlap_waves(
            probe, obj, rows, cols, out)

    @property
    def difference_map_scratch(self) -> bool:
        return not self._fused()

    def mixed_overlap_waves(self, probe: Any, obj: Any, rows: Any, cols: Any, waves: Any, c: float, a: float,
                            b: float, out: Any, scratch: Any = None) -> Any:
        if not self._fused():
            return super().mixed_overlap_waves(probe, obj, rows, cols, waves, c, a, b, out, scratch)
        return fused.mixed_overlap_waves(probe, obj, rows, cols, waves, c, a, b, out)

    def difference_map_update_at(self, probe: Any, obj: Any, rows: Any, cols: Any, waves: Any, projected: Any,
                                 a: float, b: float, scratch: Any = None) -> Any:
        if not self._fused():
            return super().difference_map_update_at(probe, obj, rows, cols, waves, projected, a, b, scratch)
        return fused.difference_map_update_at(waves, projected, b)

    def probe_update_terms_at(self, obj: Any, rows: Any, cols: Any, waves: Any) -> tuple[Any, Any]:
        if not self._fused():
            return super().probe_update_terms_at(obj, rows, cols, waves)
        return fused.probe_update_terms_at(obj, rows, cols, waves)

    def add_object_terms(self, target: Any, rows: Any, cols: Any, probe: Any, waves: Any) -> None:
        if not self._fused():
            return super().add_object_terms(target, rows, cols, probe, waves)
        return fused.add_object_terms(target, rows, cols, probe, waves)

    @contextlib.contextmanager
    def _limit_threads(self, threads: int) -> Any:
        # numba's pool is process-wide: restore it so a run's budget does not leak into the caller.
        previous = numba.get_num_threads()
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        try:
            with threadpool_limits(limits=threads):
                yield
        finally:
            numba.set_num_threads(previous)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "device": self.device, "threads": self.threads,
                "numpy": np.__version__, "scipy": scipy.__version__, "fft": self.fft.describe()}
