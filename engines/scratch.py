"""Per-frame arrays on disk: a scratch file read and written block by block, the next block read ahead.

DM and RAAR keep one exit wave per frame, twice the intensities' bytes: 12 GB for the 6 GB seed workload, which
then needs 20 GB of host memory. With residency "disk" the exit waves live in a scratch file instead, and an
iteration reads and writes each block once; intensities that do not fit the host's memory either go to a
scratch file of their own, written once while loading and read every iteration (positioned I/O, no memory
map: a map would count against an address-space limit like the one the batch system or ``--memory-limit``
sets). Reading a block starts the read of the one the engine reads next (``BlockReadAhead``) on a helper
thread, so the disk works while the engine computes; the time the engine then waits is the stage ``disk_read``
(near zero when the reads are hidden), writes are ``disk_write``.

Reads bypass the page cache (``O_DIRECT``) where the file system and the frame size allow it (frames a whole
number of 4 KiB pages, into page-aligned buffers): data larger than memory would only churn the cache, and on a
host with no spare core the kernel's copying and reclaiming of cached pages is taken from the compute (at 256²
ePIE on 2 cores: +2.5 s of FFT time in a 22 s iteration, measured 2026-12-07). Writes stay buffered; a read of a
range still dirty in the cache is written back first by the kernel, so reads always see the last write.

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


class BlockReadAhead:
    """Which block to fetch while the engine computes on the one it just read: the next in the stride of its last
    two reads, wrapping around (1 for a sweep, K for ML's mini-batches of every K-th block). One read ahead is in
    flight at a time: a guess the engine did not take (a batch's first block) is dropped, not kept in memory."""

    def __init__(self, blocks: list[tuple[int, int]] | None) -> None:
        self.blocks = list(blocks or [])
        self._index = {block: i for i, block in enumerate(self.blocks)}
        self._last: int | None = None
        self._guess: tuple[int, int] | None = None

    def after(self, block: tuple[int, int]) -> tuple[int, int] | None:
        """The block to fetch now that ``block`` is being read (None: unknown block, or fewer than two)."""
        index = self._index.get(block)
        count = len(self.blocks)
        if index is None or count < 2:
            return None
        stride = 1 if self._last is None else (index - self._last) % count or 1
        self._last = index
        self._guess = self.blocks[(index + stride) % count]
        return self._guess

    def advance(self, block: tuple[int, int], pending: dict) -> tuple[int, int] | None:
        """``block`` is being read: drop the last guess from ``pending`` when it was wrong, and return the block
        to start fetching now (None when there is none, or it is already on its way)."""
        if self._guess is not None and self._guess != block:
            pending.pop(self._guess, None)
        following = self.after(block)
        return following if following is not None and following not in pending else None


def frames_key(frames: Any) -> tuple[str, tuple[int, ...]]:
    """A pending gather's key (a list of frames): apart from the (start, stop) keys of block reads."""
    return "frames", tuple(int(j) for j in frames)


#: O_DIRECT transfers must start at, and cover, whole logical blocks; a page is safe on every file system.
DIRECT_ALIGNMENT = 4096


def aligned_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialised array whose data start on a DIRECT_ALIGNMENT boundary (what O_DIRECT reads need)."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(size + DIRECT_ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % DIRECT_ALIGNMENT
    return raw[start:start + size].view(dtype).reshape(shape)


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
        self._read_ahead = BlockReadAhead(blocks)
        self._pending: dict[tuple[int, int], Future] = {}
        self._fd, self._direct_fd = self._open(directory, shape[0] * self.frame_bytes,
                                               direct=self.frame_bytes % DIRECT_ALIGNMENT == 0)
        self._direct_refused = False
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ptybench-scratch")

    @staticmethod
    def _open(directory: str, size: int, direct: bool) -> tuple[int, int | None]:
        """The scratch file's descriptor, and a second one for reads past the page cache (None where the file
        system refuses O_DIRECT, e.g. tmpfs, or ``direct`` is False)."""
        if not os.path.isdir(directory):
            raise ScratchSpaceError(f"scratch_directory: expected an existing directory, got {directory!r}")
        try:
            descriptor, path = tempfile.mkstemp(prefix="ptybench-scratch-", suffix=".bin", dir=directory)
        except OSError as error:
            raise ScratchSpaceError(f"scratch_directory: expected a directory this process can write, got "
                                    f"{directory!r} ({error.strerror})") from None
        direct_fd = None
        if direct and hasattr(os, "O_DIRECT"):
            try:
                direct_fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
            except OSError:
                direct_fd = None
        os.unlink(path)  # the open descriptors keep the space; nothing is left once they close
        try:
            os.posix_fallocate(descriptor, 0, size)
        except OSError as error:
            os.close(descriptor)
            if direct_fd is not None:
                os.close(direct_fd)
            free = shutil.disk_usage(directory).free
            raise ScratchSpaceError(
                f"scratch_directory: expected room for {size / 1e9:.2f} GB of per-frame arrays in {directory}, "
                f"got {free / 1e9:.2f} GB free ({error.strerror}); free space there or set "
                f"parameters['scratch_directory'] (or $PTYBENCH_SCRATCH) to a larger disk") from None
        return descriptor, direct_fd

    def read_host(self, start: int, stop: int) -> np.ndarray:
        """Frames start..stop as a host array (loading and statistics on the host, whatever the backend)."""
        return self._read_frames(start, stop)

    def _empty(self, frames: int) -> np.ndarray:
        shape = (frames, *self.shape[1:])
        direct = self._direct_fd is not None and not self._direct_refused
        return aligned_empty(shape, self.dtype) if direct else np.empty(shape, self.dtype)

    def _read_frames(self, start: int, stop: int) -> np.ndarray:
        block = self._empty(stop - start)
        self._read_into(start, block)
        return block

    def _read_into(self, start: int, out: np.ndarray) -> None:
        """Frames from ``start`` on into ``out`` (contiguous), read in place: past the page cache when ``out`` is
        aligned and the file allows it."""
        view = memoryview(out).cast("B")
        offset, done = start * self.frame_bytes, 0
        direct = None if self._direct_refused or out.ctypes.data % DIRECT_ALIGNMENT else self._direct_fd
        while done < len(view):  # a positioned read may return less than asked
            try:
                count = os.preadv(self._fd if direct is None else direct, [view[done:]], offset + done)
            except OSError:
                if direct is None:
                    raise
                direct, self._direct_refused = None, True  # EINVAL after all: buffered from now on (close() frees it)
                continue
            if count == 0:
                raise OSError(f"scratch file ended at byte {offset + done}")
            done += count
        self.bytes_read += done

    def _stage(self, name: str) -> Any:
        from contextlib import nullcontext

        return self.timer(name) if self.timer is not None else nullcontext()

    def read(self, start: int, stop: int) -> Any:
        key = (start, stop)
        pending = self._pending.pop(key, None)
        following = self._read_ahead.advance(key, self._pending)
        if following is not None:
            self._pending[following] = self._reader.submit(self._read_frames, *following)
        with self._stage("disk_read"):
            block = pending.result() if pending is not None else self._read_frames(start, stop)
        return self.backend.adopt(block)  # read for this call alone: no second copy on a host backend

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

    def _gather_frames(self, frames: tuple[int, ...]) -> np.ndarray:
        block = self._empty(len(frames))
        for k, j in enumerate(frames):
            self._read_into(j, block[k])
        return block

    def gather_ahead(self, frames: np.ndarray) -> None:
        """Start reading the frames listed on the helper thread, for a ``gather`` of the same list soon: one
        hand-over per list, not per frame (a PIE engine's next frames in its random order)."""
        key = frames_key(frames)
        if key not in self._pending:
            self._pending[key] = self._reader.submit(self._gather_frames, key[1])

    def gather(self, frames: np.ndarray, device_frames: Any) -> Any:
        key = frames_key(frames)
        pending = self._pending.pop(key, None)
        with self._stage("disk_read"):
            block = pending.result() if pending is not None else self._gather_frames(key[1])
        return self.backend.adopt(block)  # read for this call alone: no second copy on a host backend

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
            direct, self._direct_fd = getattr(self, "_direct_fd", None), None
            if direct is not None:
                os.close(direct)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: the kernel frees the file with the process
            pass
