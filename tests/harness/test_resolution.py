"""Resolution without ground truth (ptybench/resolution.py): the FRC, its threshold and the half-scan command."""

from __future__ import annotations

import numpy as np
import pytest

from ptybench.resolution import compare_halves, fourier_ring_correlation, half_bit_threshold


def low_passed(noise: np.ndarray, cutoff: float) -> np.ndarray:
    """``noise`` keeping spatial frequencies below ``cutoff`` cycles per pixel."""
    height, width = noise.shape
    radius = np.hypot(*np.meshgrid(np.fft.fftfreq(height), np.fft.fftfreq(width), indexing="ij"))
    return np.real(np.fft.ifft2(np.fft.fft2(noise) * (radius < cutoff)))


def test_an_image_correlates_with_itself_at_every_ring():
    image = np.random.default_rng(0).standard_normal((64, 64))
    result = fourier_ring_correlation(image, image)
    np.testing.assert_allclose(result.frc[1:], 1.0)
    assert result.resolution_pixels is None  # up to Nyquist


def test_shared_content_below_a_frequency_sets_the_resolution_there():
    """Two images sharing everything below 0.1 cycles/pixel, independent above: resolution near 10 pixels."""
    rng = np.random.default_rng(1)
    shared = low_passed(rng.standard_normal((128, 128)), 0.1) * 20
    first = shared + rng.standard_normal((128, 128))
    second = shared + rng.standard_normal((128, 128))
    result = fourier_ring_correlation(first, second)
    assert 8 <= result.resolution_pixels <= 12.5
    assert np.mean(result.frc[result.frequency > 0.2]) < 0.1


def test_the_half_bit_threshold_has_its_published_limits():
    assert half_bit_threshold(np.array([1]))[0] == pytest.approx(1.0, abs=1e-3)
    assert half_bit_threshold(np.array([10**12]))[0] == pytest.approx(0.2071 / 1.2071, rel=1e-4)


def test_a_global_phase_factor_is_not_a_difference():
    rng = np.random.default_rng(2)
    obj = np.exp(1j * low_passed(rng.standard_normal((48, 48)), 0.3))
    result = compare_halves(obj, obj * np.exp(1j * 1.3))
    np.testing.assert_allclose(result.frc[1:], 1.0, atol=1e-9)


def test_unequal_shapes_are_refused():
    with pytest.raises(ValueError, match="two equal 2-D shapes"):
        fourier_ring_correlation(np.ones((4, 4)), np.ones((4, 5)))


def test_the_command_reports_a_resolution_for_two_half_scans_of_a_synthetic_set(tmp_path, capsys, saved_figures):
    from ptybench.cli import main

    assert main(["resolution", "farfield-64-256", "--engine", "DM", "--iterations", "30",
                 "--plot", str(tmp_path / "frc.png")]) == 0
    out = capsys.readouterr().out
    assert "farfield-64-256 DM, 30 iterations per half" in out and "resolution" in out
    (figure,) = saved_figures
    assert figure.axes[0].get_xlabel().startswith("spatial frequency")
    frc = figure.axes[0].lines[0].get_ydata()
    assert np.all(frc[1:6] > 0.9)  # bright data: the halves agree at low frequencies


def test_halves_that_agree_at_no_frequency_resolve_nothing():
    """Two independent images: not a resolution of the crop's size, but none (infinite)."""
    rng = np.random.default_rng(3)
    result = fourier_ring_correlation(rng.standard_normal((64, 96)), rng.standard_normal((64, 96)))
    assert result.resolution_pixels == np.inf
