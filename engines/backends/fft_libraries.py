"""FFT libraries the NumPy backend can use: one unitary batched 2-D complex64 transform each.

The FFT is most of an iteration's floor, so the library is a choice, measured rather than assumed
(docs/design.md, "FFT library"). ``PTYBENCH_FFT`` names one (``scipy``, ``mkl``, ``ducc0``,
``pyfftw``); the default ``auto`` takes ``mkl`` (mkl_fft) for frames of 128² and larger where it is
installed — it was 1.3–1.6× faster than scipy.fft there — for batches of more than one frame, and
scipy.fft (pocketfft) everywhere else.
Every record says which library ran (``backend_info.fft``), and the FFT floor is measured with it.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import InputError

#: Environment variable naming the library; read when a NumPy backend is made.
VARIABLE = "PTYBENCH_FFT"
#: ``auto`` uses mkl_fft from this many pixels per frame up (at 64², 2 threads, scipy.fft was faster).
AUTO_MKL_MIN_PIXELS = 128 * 128

Transform = Callable[[np.ndarray, int, bool], np.ndarray]


@dataclass(frozen=True)
class FFTLibrary:
    """``forward(batch, workers, overwrite)`` / ``inverse(...)``: unitary 2-D FFTs over the last two axes."""

    name: str
    version: str
    forward: Transform
    inverse: Transform


def _scipy() -> FFTLibrary:
    import scipy
    import scipy.fft

    return FFTLibrary("scipy", scipy.__version__,
                      lambda a, w, o: scipy.fft.fft2(a, norm="ortho", workers=w, overwrite_x=o),
                      lambda a, w, o: scipy.fft.ifft2(a, norm="ortho", workers=w, overwrite_x=o))


def _mkl() -> FFTLibrary:
    import mkl_fft
    from mkl_fft.interfaces import scipy_fft

    return FFTLibrary("mkl", mkl_fft.__version__,
                      lambda a, w, o: scipy_fft.fft2(a, norm="ortho", workers=w, overwrite_x=o),
                      lambda a, w, o: scipy_fft.ifft2(a, norm="ortho", workers=w, overwrite_x=o))


def _ducc0() -> FFTLibrary:
    import ducc0

    def transform(forward: bool) -> Transform:
        return lambda a, w, o: ducc0.fft.c2c(a, axes=(-2, -1), forward=forward, inorm=1, nthreads=w,
                                             out=a if o else None)

    return FFTLibrary("ducc0", ducc0.__version__, transform(True), transform(False))


def _pyfftw() -> FFTLibrary:
    import pyfftw
    from pyfftw.interfaces import cache, scipy_fft

    cache.enable()  # keep plans between calls: planning costs more than the transform
    return FFTLibrary("pyfftw", pyfftw.__version__,
                      lambda a, w, o: scipy_fft.fft2(a, norm="ortho", workers=w, overwrite_x=o),
                      lambda a, w, o: scipy_fft.ifft2(a, norm="ortho", workers=w, overwrite_x=o))


LIBRARIES: dict[str, Callable[[], FFTLibrary]] = {"scipy": _scipy, "mkl": _mkl, "ducc0": _ducc0, "pyfftw": _pyfftw}
#: The Python module each library needs, for "is it installed" without importing it.
MODULES = {"scipy": ("scipy.fft",), "mkl": ("mkl_fft", "mkl"), "ducc0": ("ducc0",), "pyfftw": ("pyfftw",)}
#: What to pip install for each.
PACKAGES = {"scipy": "scipy", "mkl": "mkl-fft mkl-service", "ducc0": "ducc0", "pyfftw": "pyfftw"}


def installed(name: str) -> bool:
    return all(importlib.util.find_spec(module) is not None for module in MODULES[name])


def requested() -> str:
    """The library named in ``PTYBENCH_FFT`` (``auto`` when unset); a ValueError naming it otherwise."""
    name = os.environ.get(VARIABLE, "auto").strip() or "auto"
    if name != "auto" and name not in LIBRARIES:
        raise InputError(f"{VARIABLE}: expected auto or one of {', '.join(LIBRARIES)}, got {name!r}")
    return name


def load(name: str) -> FFTLibrary:
    """The library by name; a ValueError saying how to install it when it is missing."""
    if not installed(name):
        raise InputError(f"{VARIABLE}: {name!r} is not installed here (pip install {PACKAGES[name]})")
    return LIBRARIES[name]()


class FFTChoice:
    """The library per frame size for one backend: the requested one, or ``auto``'s rule."""

    def __init__(self, name: str | None = None) -> None:
        self.requested = name or requested()
        if self.requested == "auto":
            self._small = load("scipy")
            self._large = load("mkl") if installed("mkl") else self._small
        else:
            self._small = self._large = load(self.requested)

    def for_batch(self, pixels: int, transforms: int) -> FFTLibrary:
        """The library for ``transforms`` 2-D FFTs of ``pixels`` each (one frame at a time, as ePIE
        does, ran 8 % slower in mkl_fft than in scipy.fft at 128²: its per-call cost)."""
        return self._large if pixels >= AUTO_MKL_MIN_PIXELS and transforms > 1 else self._small

    def describe(self) -> str:
        """"mkl_fft 2.3.2 (≥ 128², else scipy 1.17.1)" or one library's name and version."""
        if self._large is self._small:
            return f"{self._large.name} {self._large.version}"
        return f"{self._large.name} {self._large.version} (>= 128², else {self._small.name} {self._small.version})"
