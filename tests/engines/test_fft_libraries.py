"""Every FFT library the NumPy backend can use computes the same unitary transform; the choice is data."""

from __future__ import annotations

import numpy as np
import pytest

from ptybench.engines.backends import get_backend
from ptybench.engines.backends.fft_libraries import LIBRARIES, VARIABLE, FFTChoice, installed


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((3, 2, 24, 20)) + 1j * rng.standard_normal((3, 2, 24, 20))).astype(np.complex64)


@pytest.mark.parametrize("name", list(LIBRARIES))
def test_each_installed_library_is_the_unitary_2d_transform(name, batch, monkeypatch):
    if not installed(name):
        pytest.skip(f"{name} is not installed here")
    monkeypatch.setenv(VARIABLE, name)
    backend = get_backend("numpy", threads=2)
    assert backend.describe()["fft"].startswith(name)
    expected = np.fft.fft2(batch, norm="ortho")
    forward = backend.fft2(batch.copy(), overwrite=True)
    assert forward.dtype == np.complex64 and forward.shape == batch.shape
    np.testing.assert_allclose(forward, expected, atol=2e-5 * np.abs(expected).max())
    np.testing.assert_allclose(backend.ifft2(forward), batch, atol=2e-5 * np.abs(batch).max())


def test_auto_takes_mkl_for_large_frames_only_where_installed():
    choice = FFTChoice("auto")
    assert choice.for_batch(64 * 64, 100).name == "scipy"
    assert choice.for_batch(128 * 128, 1).name == "scipy"       # one frame at a time (ePIE)
    assert choice.for_batch(128 * 128, 100).name == ("mkl" if installed("mkl") else "scipy")


def test_an_unknown_or_missing_library_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(VARIABLE, "fftpack")
    with pytest.raises(ValueError, match=r"PTYBENCH_FFT: expected auto or one of scipy, mkl, .*, got 'fftpack'"):
        get_backend("numpy")
    missing = next((name for name in LIBRARIES if not installed(name)), None)
    if missing is not None:
        monkeypatch.setenv(VARIABLE, missing)
        with pytest.raises(ValueError, match=rf"PTYBENCH_FFT: '{missing}' is not installed here \(pip install"):
            get_backend("numpy")
