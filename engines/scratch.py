"""Per-frame arrays on disk: a scratch file read and written block by block, the next block read ahead.

DM and RAAR keep one exit wave per frame, twice the intensities' bytes: 12 GB for the 6 GB seed workload, which
then needs 20 GB of host memory. With residency "disk" the exit waves live in a scratch file instead, and an
iteration reads and writes each block once; intensities that do not fit the host's memory either go to a
scratch file of their own, written once while loading and read every iteration (positioned I/O, no memory
map: a map would count against an address-space limit like the one the batch system or ``--memory-limit``
sets). Reading block i starts the read
of block i + 1 on a helper thread, so the disk works while the engine computes; the time the engine then waits
is the stage ``disk_read`` (near zero when the reads are hidden), writes are ``disk_write``.

The file is unlinked as soon as it is created, so nothing is left behind however the run ends (a killed
process's open file is freed by the kernel), and its whole size is reserved up front (``posix_fallocate``), so a
full disk is an error before the first iteration, not a lost point halfway.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from .errors import InputError


class ScratchSpaceError(InputError):
    """The scratch directory cannot hold the per-frame arrays: the message names the directory, the bytes
    needed and the bytes free."""


def scratch_directory(requested: str | None) -> str:
    """Where scratch files go: the run's ``scratch_directory``, else $PTYBENCH_SCRATCH, else the system's
    temporary directory; a warning when that is in memory (tmpfs), which is the memory the file was to spare."""
    directory = requested or os.environ.get("PTYBENCH_SCRATCH") or tempfile.gettempdir()
    if _filesystem_type(directory) in ("tmpfs", "ramfs"):
        warnings.warn(f"scratch_directory: {directory} is in memory ({_filesystem_type(directory)}); exit waves "
                      f"put there use the memory residency 'disk' was to spare. Set parameters"
                      f"['scratch_directory'] or $PTYBENCH_SCRATCH to a directory on disk", stacklevel=3)
    return directory


def _filesystem_type(directory: str) -> str | None:
    """The type of the file system holding ``directory`` (Linux /proc/mounts; None elsewhere)."""
    try:
        mounts = [line.split()[1:3] for line in open("/proc/mounts", encoding="utf-8")]
    except OSError:
        return None
    path = os.path.realpath(directory)
    best = max((m for m in mounts if len(m) == 2 and (path == m[0] or path.startswith(m[0].rstrip("/") + "/"))),
               key=lambda m: len(m[0]), default=None)
    return best[1] if best else None


class ScratchFrameStore:
    """FrameStore's interface (``read``, ``write``, ``gather``) over a scratch file; ``bytes_read`` and
    ``bytes_written`` count the traffic."""

    resident = False

    def __init__(self, backend: Any, shape: tuple[int, ...], dtype: Any, directory: str,
                 blocks: list[tuple[int, int]] | None = None, timer: Any = None) -> None:
        self.backend, self.shape, self.dtype = backend, tuple(shape), np.dtype(dtype)
        self.frame_bytes = int(np.prod(shape[1:])) * self.dtype.itemsize
        self.timer = timer
        self.bytes_read = self.bytes_written = 0
        self._next_block = {block: blocks[(i + 1) % len(blocks)] for i, block in enumerate(blocks or [])
                            if len(blocks) > 1}
        self._pending: dict[tuple[int, int], Future] = {}
        self._fd = self._open(directory, shape[0] * self.frame_bytes)
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ptybench-scratch")

    @staticmethod
    def _open(directory: str, size: int) -> int:
        if not os.path.isdir(directory):
            raise ScratchSpaceError(f"scratch_directory: expected an existing directory, got {directory!r}")
        try:
            descriptor, path = tempfile.mkstemp(prefix="ptybench-scratch-", suffix=".bin", dir=directory)
        except OSError as error:
            raise ScratchSpaceError(f"scratch_directory: expected a directory this process can write, got "
                                    f"{directory!r} ({error.strerror})") from None
        os.unlink(path)  # the open descriptor keeps the space; nothing is left once it closes
        try:
            os.posix_fallocate(descriptor, 0, size)
        except OSError as error:
            os.close(descriptor)
            free = shutil.disk_usage(directory).free
            raise ScratchSpaceError(
                f"scratch_directory: expected room for {size / 1e9:.2f} GB of per-frame arrays in {directory}, "
                f"got {free / 1e9:.2f} GB free ({error.strerror}); free space there or set "
                f"parameters['scratch_directory'] (or $PTYBENCH_SCRATCH) to a larger disk") from None
        return descriptor

    def read_host(self, start: int, stop: int) -> np.ndarray:
        """Frames start..stop as a host array (loading and statistics on the host, whatever the backend)."""
        return self._read_frames(start, stop)

    def _read_frames(self, start: int, stop: int) -> np.ndarray:
        block = np.empty((stop - start, *self.shape[1:]), dtype=self.dtype)
        view = memoryview(block).cast("B")
        offset, done = start * self.frame_bytes, 0
        while done < len(view):  # a positioned read may return less than asked
            count = os.preadv(self._fd, [view[done:]], offset + done)
            if count == 0:
                raise OSError(f"scratch file ended at byte {offset + done}")
            done += count
        self.bytes_read += done
        return block

    def _stage(self, name: str) -> Any:
        from contextlib import nullcontext

        return self.timer(name) if self.timer is not None else nullcontext()

    def read_ahead(self, start: int, stop: int) -> None:
        """Start reading frames start..stop on the helper thread (the next frame of a PIE engine's random order)."""
        if (start, stop) not in self._pending:
            self._pending[(start, stop)] = self._reader.submit(self._read_frames, start, stop)

    def read(self, start: int, stop: int) -> Any:
        key = (start, stop)
        pending = self._pending.pop(key, None)
        following = self._next_block.get(key)
        if following is not None and following not in self._pending:
            self._pending[following] = self._reader.submit(self._read_frames, *following)
        with self._stage("disk_read"):
            block = pending.result() if pending is not None else self._read_frames(start, stop)
        return self.backend.asarray(block)

    def write(self, start: int, stop: int, block: Any) -> None:
        self._pending.pop((start, stop), None)  # a read-ahead copy of this range is stale now
        host = np.ascontiguousarray(block if isinstance(block, np.ndarray) else self.backend.to_numpy(block),
                                    dtype=self.dtype)
        view = memoryview(host).cast("B")
        with self._stage("disk_write"):
            offset, done = start * self.frame_bytes, 0
            while done < len(view):
                done += os.pwrite(self._fd, view[done:], offset + done)
        self.bytes_written += done

    def gather(self, frames: np.ndarray, device_frames: Any) -> Any:
        return self.backend.asarray(np.concatenate([self._read_frames(int(j), int(j) + 1) for j in frames]))

    def close(self) -> None:
        """Frees the scratch space (the engine's ``release`` calls it; also done when the store is collected).
        Never joins the reader from the reader's own thread (collection can happen there)."""
        if getattr(self, "_fd", None) is None:
            return
        descriptor, self._fd = self._fd, None
        try:
            own_thread = threading.current_thread().name.startswith("ptybench-scratch")
            self._pending.clear()
            self._reader.shutdown(wait=not own_thread, cancel_futures=True)
        finally:
            os.close(descriptor)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: the kernel frees the file with the process
            pass
