"""Generated frames kept on disk, so the same synthetic dataset is made once, not once per measured point.

A sweep measures every point in a fresh process, and each of those processes used to regenerate its
frames (6 s for farfield-128-4096 on one core: a forward model and Poisson sampling per frame), often
longer than the measurement itself. Frames are a pure function of the spec, the generator's code, NumPy
(its Poisson sampler) and the FFT library (its rounding decides the odd count), so the file's name is a
hash of all four and a change to any of them makes a new file instead of reading a stale one.

Only datasets up to ``PTYBENCH_FRAME_CACHE_BYTES`` of counts are kept (default 512 MB; 0 turns the cache
off). Larger sets stay generated on demand, block by block, as they always were. Files live in
``$PTYBENCH_CACHE/frames``; deleting that folder is always safe.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from functools import cache
from pathlib import Path

import numpy as np

from ptybench.engines.errors import InputError

from .cache import cache_dir
from .spec import DatasetSpec

VARIABLE = "PTYBENCH_FRAME_CACHE_BYTES"
DEFAULT_LIMIT_BYTES = 512 * 10**6
#: The modules whose code decides the counts: any edit to them gives new file names.
GENERATOR_MODULES = ("synthetic", "ground_truth", "scans", "spec")


_bypassed = False


@contextmanager
def bypassed() -> Iterator[None]:
    """Frames are generated inside, never read or kept: a warm-up that must load the generator's own code,
    threads and FFT plans (before a memory limit applies) uses it."""
    global _bypassed
    previous, _bypassed = _bypassed, True
    try:
        yield
    finally:
        _bypassed = previous


def limit_bytes() -> int:
    text = os.environ.get(VARIABLE, "").strip()
    if not text:
        return DEFAULT_LIMIT_BYTES
    try:
        value = int(float(text))
    except ValueError:
        value = -1
    if value < 0:
        raise InputError(f"{VARIABLE}: expected a number of bytes >= 0 (0 turns the frame cache off), got {text!r}")
    return value


@cache
def _code_fingerprint() -> str:
    from ptybench.engines import propagation

    here = Path(__file__).parent
    digest = hashlib.sha256()
    for path in [*(here / f"{name}.py" for name in GENERATOR_MODULES), Path(propagation.__file__)]:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def cache_path(spec: DatasetSpec, fft_library: str) -> Path:
    key = json.dumps({"spec": asdict(spec), "numpy": np.__version__, "fft": fft_library,
                      "code": _code_fingerprint()}, sort_keys=True, default=str)
    name = f"{spec.kind}-{spec.frame_shape[0]}x{spec.frame_shape[1]}-{spec.n_frames}"
    return cache_dir() / "frames" / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npy"


def fits(n_bytes: int) -> bool:
    return not _bypassed and 0 < n_bytes <= limit_bytes()


def read(path: Path, start: int, stop: int, shape: tuple[int, ...]) -> np.ndarray | None:
    """Frames start..stop from a kept file of the given whole ``shape``, or None when there is none (or it
    cannot be read, or holds something else). Only those frames are read: no map of the whole file, which
    would count against an address-space limit (``--memory-limit``) and defeat reading block by block."""
    try:
        with open(path, "rb") as file:
            version = np.lib.format.read_magic(file)
            readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in readers:
                return None
            kept_shape, fortran_order, dtype = readers[version](file)
            frame_values = int(np.prod(shape[1:]))
            offset = file.tell()
            whole = offset + int(np.prod(shape)) * dtype.itemsize
            if kept_shape != shape or fortran_order or dtype != np.uint32 or os.fstat(file.fileno()).st_size != whole:
                return None
            file.seek(offset + start * frame_values * dtype.itemsize)
            frames = np.fromfile(file, dtype=dtype, count=(stop - start) * frame_values)
    except (OSError, ValueError):
        return None
    return frames.reshape((stop - start, *shape[1:]))


def write(path: Path, frames: np.ndarray) -> None:
    """Atomically: a reader sees the whole file or none, and two writers of one dataset race harmlessly.
    A full disk or a read-only cache only costs the next process a regeneration."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".partial")
        try:
            with os.fdopen(handle, "wb") as out:
                np.save(out, frames)
            os.replace(partial, path)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
    except OSError:
        return
