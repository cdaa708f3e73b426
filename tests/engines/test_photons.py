"""engines/photons.py: the Poisson noise floor, the count quantum, and the photon scale a Problem uses."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from ptybench.engines import Reconstruction
from ptybench.engines.photons import (
    count_quantum,
    noise_floor_sum,
    photon_scale,
    poisson_noise_floor,
)


@pytest.mark.parametrize(("lam", "expected"), [(0.01, 0.018), (0.1, 0.1386), (1.0, 0.4536), (5.0, 0.2903),
                                               (100.0, 0.2511), (1e6, 0.25)])
def test_noise_floor_has_the_known_values_in_both_regimes(lam, expected):
    """e(λ) ≈ 2λ when photon-starved, 0.45 at one photon, 1/4 only at high counts."""
    assert float(poisson_noise_floor(lam)) == pytest.approx(expected, rel=5e-3)


def test_noise_floor_equals_the_monte_carlo_mean():
    rng = np.random.default_rng(0)
    lam = np.array([0.05, 0.5, 2.0, 20.0])
    counts = rng.poisson(lam, size=(400_000, 4))
    empirical = np.mean((np.sqrt(lam) - np.sqrt(counts)) ** 2, axis=0)
    predicted = poisson_noise_floor(lam)
    np.testing.assert_allclose(empirical, predicted, rtol=0.02)


def test_histogram_and_direct_noise_floor_sums_agree():
    counts = np.random.default_rng(1).poisson(3.0, (20, 32, 32)).astype(np.float32)
    assert noise_floor_sum(counts, quantised=True) == pytest.approx(noise_floor_sum(counts, quantised=False),
                                                                     rel=1e-6)


@pytest.mark.parametrize("scale", [1e-6, 1e-3, 0.37, 1.0, 1e3])
@pytest.mark.parametrize("offset", [0, 3])  # 3: no pixel holds a single photon
def test_count_quantum_recovers_the_scale_of_scaled_counts(scale, offset):
    counts = np.random.default_rng(2).poisson(2.0, 50_000) + offset
    quantum = count_quantum((counts * scale).astype(np.float32))
    assert quantum == pytest.approx(scale, rel=1e-4)


def test_processed_data_have_no_quantum():
    counts = np.random.default_rng(3).poisson(2.0, 50_000).astype(np.float64)
    assert count_quantum(counts + np.random.default_rng(4).random(counts.shape)) is None
    assert count_quantum(np.zeros(10)) is None


def test_photon_scale_says_where_the_factor_came_from():
    scaled = (np.random.default_rng(5).poisson(2.0, 10_000) * 1e-3).astype(np.float32)
    assert photon_scale(scaled, is_integer=False, stated=None).source == "estimated"
    assert photon_scale(scaled, is_integer=False, stated=None).photons_per_unit == pytest.approx(1e3, rel=1e-4)
    assert photon_scale(scaled, is_integer=False, stated=250.0).photons_per_unit == 250.0
    assert photon_scale(scaled, is_integer=False, stated=250.0).source == "stated"
    assert photon_scale(scaled.astype(np.uint32), is_integer=True, stated=None).source == "counts"
    smooth = np.random.default_rng(6).random(1000).astype(np.float32)
    assert photon_scale(smooth, is_integer=False, stated=None).source == "assumed"


@pytest.mark.parametrize("scale", [1e-6, 1e3])
def test_problem_reads_scaled_data_in_photons(tiny, tiny_arrays, scale):
    raw = Reconstruction(**tiny_arrays, parameters={"iterations": 0}).calibration()
    arrays = dict(tiny_arrays, diffraction_data=(tiny_arrays["diffraction_data"] * scale).astype(np.float32))
    scaled = Reconstruction(**arrays, parameters={"iterations": 0}).calibration()
    assert raw["photons_per_unit_source"] == "counts" and scaled["photons_per_unit_source"] == "estimated"
    assert scaled["photons_per_unit"] == pytest.approx(1 / scale, rel=1e-4)
    assert scaled["noise_floor"] == pytest.approx(raw["noise_floor"], rel=1e-4)


def test_float_data_without_a_quantum_warn_and_say_assumed(tiny_arrays):
    rng = np.random.default_rng(7)
    data = tiny_arrays["diffraction_data"] + rng.random(tiny_arrays["diffraction_data"].shape)
    arrays = dict(tiny_arrays, diffraction_data=data.astype(np.float32))
    with pytest.warns(UserWarning, match="photons_per_unit"):
        calibration = Reconstruction(**arrays, parameters={"iterations": 0}).calibration()
    assert calibration["photons_per_unit_source"] == "assumed"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stated = Reconstruction(**arrays, parameters={"iterations": 0, "photons_per_unit": 1.0}).calibration()
    assert stated["photons_per_unit_source"] == "stated"


def test_auto_bound_is_the_noise_floor_and_a_number_overrides_it(tiny_arrays):
    auto = Reconstruction(**tiny_arrays, parameters={"engine": "DM", "iterations": 1})
    auto.run()
    fixed = Reconstruction(**tiny_arrays, parameters={"engine": "DM", "iterations": 1, "pbound": 0.3})
    fixed.run()
    assert auto.calibration()["stages"][0]["pbound"] == pytest.approx(auto.calibration()["noise_floor"])
    assert 0 < auto.calibration()["noise_floor"] < 0.45     # below the one-photon maximum of e(λ)
    assert fixed.calibration()["stages"][0]["pbound"] == 0.3
