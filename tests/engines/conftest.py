"""A tiny problem (fast engine tests) built from a small synthetic spec."""

from __future__ import annotations

import pytest

from ptybench.datasets import DatasetSpec, load

TINY = DatasetSpec(kind="farfield", n_frames=48, frame_shape=(32, 32), photons=2e5, seed=11)


@pytest.fixture(scope="session")
def tiny():
    return load(TINY)


@pytest.fixture(scope="session")
def tiny_arrays(tiny):
    return tiny.arrays()


@pytest.fixture(scope="session")
def tiny_nearfield():
    return load(TINY.with_changes(kind="nearfield", n_frames=24, photons=1e6))


#: Photons per pixel added to every frame of ``tiny_with_background`` (the pattern's median pixel holds about 4).
TINY_BACKGROUND = 3.0


@pytest.fixture(scope="session")
def tiny_with_background():
    """The tiny far-field scan with TINY_BACKGROUND photons per pixel in every frame (Poisson counts)."""
    return load(TINY.with_changes(background=TINY_BACKGROUND))
