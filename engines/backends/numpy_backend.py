"""NumPy backend: scipy.fft with worker threads (numpy.fft computes complex64 in complex128)."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import array_api_compat.numpy as xp_numpy
import numpy as np
import scipy
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view
from threadpoolctl import threadpool_limits

from .base import Backend


class NumpyBackend(Backend):
    name = "numpy"
    xp = xp_numpy

    def __init__(self, device: str | None = None, threads: int | None = None) -> None:
        if device not in (None, "cpu"):
            raise ValueError(f"device: the numpy backend runs on 'cpu', got {device!r}")
        self.device = "cpu"
        self.threads = threads or len(os.sched_getaffinity(0))

    def asarray(self, host_array: np.ndarray) -> np.ndarray:
        return np.array(host_array, copy=True)

    def to_numpy(self, array: Any) -> np.ndarray:
        return np.asarray(array)

    def index_array(self, host_indices: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(host_indices, dtype=np.intp)

    def fft2(self, array: np.ndarray, overwrite: bool = False) -> np.ndarray:
        return scipy.fft.fft2(array, norm="ortho", workers=self.threads, overwrite_x=overwrite)

    def ifft2(self, array: np.ndarray, overwrite: bool = False) -> np.ndarray:
        return scipy.fft.ifft2(array, norm="ortho", workers=self.threads, overwrite_x=overwrite)

    def gather_views(self, obj: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                     frame_shape: tuple[int, int]) -> np.ndarray:
        windows = sliding_window_view(obj, frame_shape, axis=(1, 2))  # (M_o, A', B', Y, X), no copy
        return windows.transpose(1, 2, 0, 3, 4)[rows, cols]

    def scatter_add_views(self, target: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                          patches: np.ndarray) -> None:
        height, width = patches.shape[-2:]
        for row, col, patch in zip(rows.tolist(), cols.tolist(), patches, strict=True):
            target[:, row:row + height, col:col + width] += patch

    def thread_limit(self, threads: int | None) -> contextlib.AbstractContextManager:
        if threads is None:
            return contextlib.nullcontext()
        self.threads = threads
        return threadpool_limits(limits=threads)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "device": self.device, "threads": self.threads,
                "numpy": np.__version__, "scipy": scipy.__version__}
