"""Propagators: unitary (Parseval), invertible, detector-centred zero order, near field -> identity."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ptybench.engines.backends.numpy_backend import NumpyBackend
from ptybench.engines.propagation import FarFieldPropagator, NearFieldPropagator, make_propagator

SHAPE = (32, 48)


def random_waves(seed: int = 0, n: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, *SHAPE)) + 1j * rng.standard_normal((n, *SHAPE))).astype(np.complex64)


@pytest.fixture(params=["farfield", "nearfield"])
def propagator(request):
    return make_propagator(NumpyBackend(threads=1), request.param, SHAPE, fresnel_number=0.05)


def test_propagator_is_unitary(propagator):
    waves = random_waves()
    detector = propagator.forward(waves.copy())
    np.testing.assert_allclose(np.sum(np.abs(detector) ** 2), np.sum(np.abs(waves) ** 2), rtol=1e-5)
    assert detector.dtype == np.complex64


def test_propagator_is_invertible(propagator):
    waves = random_waves(1)
    np.testing.assert_allclose(propagator.backward(propagator.forward(waves.copy())), waves, atol=1e-5)


def test_farfield_matches_the_convention_with_zero_frequency_at_the_centre():
    waves = random_waves(2)
    internal = FarFieldPropagator(NumpyBackend(), SHAPE).forward(waves.copy())
    expected = np.fft.fftshift(np.fft.fft2(waves), axes=(-2, -1)) / np.sqrt(SHAPE[0] * SHAPE[1])
    np.testing.assert_allclose(FarFieldPropagator.to_detector(internal), expected, atol=1e-4)
    flat = np.ones((1, *SHAPE), dtype=np.complex64)
    detector = FarFieldPropagator.to_detector(FarFieldPropagator(NumpyBackend(), SHAPE).forward(flat))
    assert np.unravel_index(np.argmax(np.abs(detector[0])), SHAPE) == (SHAPE[0] // 2, SHAPE[1] // 2)


def test_nearfield_reduces_to_identity_as_distance_goes_to_zero():
    waves = random_waves(3)
    # F = Δx²/(λz) grows without bound as z -> 0.
    distances = [np.abs(NearFieldPropagator(NumpyBackend(), SHAPE, f).forward(waves.copy()) - waves).max()
                 for f in (1.0, 1e2, 1e4, 1e7)]
    assert distances[0] > 0.5
    assert all(a > b for a, b in itertools.pairwise(distances))
    assert distances[-1] < 1e-4


def test_nearfield_propagator_matches_the_transfer_function_definition():
    waves = random_waves(4, n=1)
    fresnel = 0.1
    u = np.fft.fftfreq(SHAPE[0])[:, None]
    v = np.fft.fftfreq(SHAPE[1])[None, :]
    expected = np.fft.ifft2(np.fft.fft2(waves) * np.exp(-1j * np.pi * (u**2 + v**2) / fresnel))
    got = NearFieldPropagator(NumpyBackend(), SHAPE, fresnel).forward(waves.copy())
    np.testing.assert_allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize(("propagation", "fresnel", "message"),
                         [("fresnel", None, "propagation"), ("nearfield", None, "fresnel_number"),
                          ("nearfield", -1.0, "fresnel_number")])
def test_bad_propagation_arguments_are_named(propagation, fresnel, message):
    with pytest.raises(ValueError, match=message):
        make_propagator(NumpyBackend(), propagation, SHAPE, fresnel)


@pytest.mark.parametrize("shape", [(6, 8), (7, 5), (16, 16)])
def test_in_place_reordering_equals_ifftshift(shape):
    data = np.arange(3 * shape[0] * shape[1], dtype=np.uint32).reshape(3, *shape)
    out = np.empty(data.shape, dtype=np.float32)
    FarFieldPropagator.to_internal_into(data, out)
    np.testing.assert_array_equal(out, np.fft.ifftshift(data, axes=(-2, -1)).astype(np.float32))
