"""Engines on measured and sparse data: the P25 scan reconstructs in its cone-beam geometry, a badly scaled
probe does not stall ML, and ePIE meets its bar on the sparse set."""

from __future__ import annotations

import numpy as np
import pytest

from ptybench.datasets import load
from ptybench.engines import Reconstruction


@pytest.fixture(scope="module")
def p25():
    with load("p25-nearfield") as data:
        return data.arrays(), data.engine_parameters()


def star_contrast(obj: np.ndarray) -> float:
    """Phase contrast between the spokes of the Siemens star at the P25 scan's centre: the spokes alternate
    around a circle, so the phase along it swings; a blank or noisy object has no 36-fold swing."""
    phase = np.angle(obj[0] * np.exp(-1j * np.angle(np.mean(obj[0]))))
    centre = np.array(obj.shape[-2:]) / 2
    angles = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    rows = (centre[0] + 40 * np.sin(angles)).astype(int)
    cols = (centre[1] + 40 * np.cos(angles)).astype(int)
    ring = phase[rows, cols]
    spectrum = np.abs(np.fft.rfft(ring - ring.mean()))
    return float(spectrum[30:45].max() / np.median(spectrum[1:]))


@pytest.mark.parametrize("engine", ["ePIE", "ML", "RAAR"])
def test_the_p25_scan_reconstructs_in_its_geometry(p25, engine):
    arrays, propagation = p25
    result = Reconstruction(**arrays, parameters={**propagation, "engine": engine, "iterations": 15}).run()
    assert result.final.r_factor < 0.1
    assert star_contrast(result.object) > 10  # the star's spokes, not noise


def test_a_wrongly_scaled_probe_does_not_stall_ml(p25):
    """A probe from elsewhere has any scale; matched to the data's counts first, ML starts where it would."""
    arrays, propagation = p25
    finals, factors = [], []
    for scale in (1.0, 5.0):
        scaled = {**arrays, "initial_probe": arrays["initial_probe"] * np.float32(scale)}
        reconstruction = Reconstruction(**scaled, parameters={**propagation, "engine": "ML", "iterations": 5})
        finals.append(reconstruction.run().final.r_factor)
        factors.append(reconstruction.calibration()["initial_probe_scale"])
    assert factors[1] == pytest.approx(factors[0] / 5, rel=1e-4)
    assert finals[1] == pytest.approx(finals[0], rel=1e-3)


@pytest.mark.slow
def test_epie_meets_its_bar_on_the_sparse_set():
    data = load("farfield-128-1024-sparse")
    arrays, truth = data.arrays(), data.ground_truth()
    assert np.mean(arrays["diffraction_data"][:256] == 0) >= 0.9
    reconstruction = Reconstruction(**arrays, parameters={**data.engine_parameters(), "engine": "ePIE",
                                                          "iterations": 30, "evaluate_every": 0},
                                    true_object=truth.object, true_probe=truth.probe)
    result = reconstruction.run()
    assert reconstruction.stage_constants[0]["pbound"] == pytest.approx(reconstruction.problem.noise_floor)
    assert result.final.object_error <= 0.08
