"""The peer comparison's plumbing, without the peers: what the export holds, that each peer's layout maps
back to ptybench's arrays exactly and reproduces ptybench's intensities under that peer's own propagator
convention, and that a peer that cannot run is reported, not raised. (``make peers`` runs the peers.)"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from ptybench.datasets import DatasetSpec, load
from ptybench.peers import compare, run_ptychi, run_ptylab

SPEC = DatasetSpec(kind="farfield", n_frames=12, frame_shape=(32, 32), photons=1e5, seed=5)


@pytest.fixture(scope="module")
def data():
    return load(SPEC)


@pytest.fixture(scope="module")
def exported(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("peers") / "inputs.npz"
    compare.export_inputs(data, path)
    with np.load(path) as npz:
        return {key: npz[key] for key in npz.files}


@pytest.fixture(scope="module")
def from_truth(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("peers") / "truth.npz"
    return compare.export_inputs(data, path, from_truth=True)


def test_export_holds_ptybench_arrays_as_photons(data, exported):
    arrays = data.arrays()
    assert exported["intensities"].dtype == np.float32
    np.testing.assert_array_equal(exported["intensities"], arrays["diffraction_data"].astype(np.float32))
    np.testing.assert_array_equal(exported["positions_px"], arrays["scan_positions"])
    np.testing.assert_array_equal(exported["mask"], arrays["mask"])
    np.testing.assert_array_equal(exported["initial_object"], arrays["initial_object"][0])
    np.testing.assert_array_equal(exported["initial_probe"], arrays["initial_probe"][0])
    assert float(exported["object_pixel_m"]) == pytest.approx(
        float(exported["wavelength_m"]) * float(exported["distance_m"]) / (32 * float(exported["detector_pixel_m"])))


def test_ptychi_layout_maps_back_exactly(exported):
    layout = run_ptychi.ptychi_inputs(exported)
    np.testing.assert_array_equal(np.fft.fftshift(layout["diffraction_data"], axes=(-2, -1)), exported["intensities"])
    np.testing.assert_array_equal(np.fft.fftshift(layout["valid_pixel_mask"]), exported["mask"])
    # pty-chi: centre = position + origin, first pixel = centre − (Y−1)/2; integer positions, no rounding.
    positions = np.stack([layout["probe_position_y_px"], layout["probe_position_x_px"]], axis=1)
    assert np.array_equal(positions, np.round(positions))
    np.testing.assert_array_equal(positions + layout["position_origin"] - (32 - 1) / 2, exported["positions_px"])
    obj, probe = run_ptychi.from_ptychi(layout["object_data"], layout["probe_data"])
    np.testing.assert_array_equal(obj, exported["initial_object"])
    np.testing.assert_allclose(probe, exported["initial_probe"], rtol=1e-6)
    assert run_ptychi.position_origin((33, 32)) == (0.0, -0.5)


def test_ptylab_layout_maps_back_exactly(exported):
    layout = run_ptylab.ptylab_inputs(exported)
    np.testing.assert_array_equal(layout["ptychogram"], exported["intensities"])
    corners = run_ptylab.ptylab_corners(layout["encoder"], layout["dxo"], layout["No"], 32)
    np.testing.assert_array_equal(corners, exported["positions_px"])
    assert layout["No"] % 2 == 0 and layout["No"] >= max(exported["initial_object"].shape)
    assert layout["dxo"] == pytest.approx(float(exported["object_pixel_m"]), rel=1e-12)
    six_d = layout["object"].reshape(1, 1, 1, 1, layout["No"], layout["No"])
    np.testing.assert_array_equal(run_ptylab.from_ptylab(six_d, layout["object_shape"]), exported["initial_object"])
    assert not layout["mask_ignored"]


def test_peer_layouts_reproduce_ptybench_intensities(data, from_truth):
    """Started from the truth, each peer's propagator convention gives ptybench's noise-free frames."""
    expected = data.expected_intensities()
    height, width = SPEC.frame_shape

    chi = run_ptychi.ptychi_inputs(from_truth)
    centres = np.stack([chi["probe_position_y_px"], chi["probe_position_x_px"]], axis=1) + chi["position_origin"]
    starts = np.round(centres - (np.array([height, width]) - 1) / 2).astype(int)
    patches = np.stack([chi["object_data"][0, r:r + height, c:c + width] for r, c in starts])
    model = np.abs(np.fft.fft2(chi["probe_data"][0, 0] * patches)) ** 2  # unnormalised, FFT order
    np.testing.assert_allclose(np.fft.fftshift(model, axes=(-2, -1)), expected, rtol=1e-4,
                               atol=1e-4 * expected.max())

    lab = run_ptylab.ptylab_inputs(from_truth)
    corners = run_ptylab.ptylab_corners(lab["encoder"], lab["dxo"], lab["No"], width)
    patches = np.stack([lab["object"][r:r + height, c:c + width] for r, c in corners])
    shifted = np.fft.ifftshift(lab["probe"] * patches, axes=(-2, -1))
    model = np.abs(np.fft.fftshift(np.fft.fft2(shifted, norm="ortho"), axes=(-2, -1))) ** 2  # PtyLab's fft2c
    np.testing.assert_allclose(model, expected, rtol=1e-4, atol=1e-4 * expected.max())


def test_ptychi_near_field_layout_reproduces_ptybench_intensities(tmp_path):
    """Near field: pty-chi's angular-spectrum transfer function over Δ²/(λF), written here in NumPy from its
    definition, gives ptybench's noise-free frames from the truth, with data and probe as they are. (A 0.2 µm
    pixel puts the distance at millimetres, as on a beamline: at the default 75 µm it would be 580 m, and z/λ of
    4e12 leaves float64's exp(2πi z/λ √(1 − …)) with milliradians of rounding.)"""
    spec = DatasetSpec(kind="nearfield", n_frames=6, frame_shape=(32, 32), photons=1e5, seed=5,
                       detector_pixel_m=2e-7)
    near = load(spec)
    inputs = compare.export_inputs(near, tmp_path / "near.npz", from_truth=True)
    assert run_ptychi.is_nearfield(inputs) and not run_ptychi.is_nearfield({"fresnel_number": np.nan})
    chi = run_ptychi.ptychi_inputs(inputs)
    np.testing.assert_array_equal(chi["diffraction_data"], inputs["intensities"])
    pixel, wavelength = float(inputs["object_pixel_m"]), float(inputs["wavelength_m"])
    distance = run_ptychi.propagation_distance_m(inputs)
    assert pixel**2 / (wavelength * distance) == pytest.approx(spec.pixel_fresnel_number)
    frequencies = np.fft.fftfreq(32)
    ratio = (frequencies[:, None] ** 2 + frequencies[None, :] ** 2) * (wavelength / pixel) ** 2
    transfer = np.exp(2j * np.pi * distance / wavelength * np.sqrt(1 - ratio))
    centres = np.stack([chi["probe_position_y_px"], chi["probe_position_x_px"]], axis=1) + chi["position_origin"]
    starts = np.round(centres - (32 - 1) / 2).astype(int)
    patches = np.stack([chi["object_data"][0, r:r + 32, c:c + 32] for r, c in starts]).astype(np.complex128)
    model = np.abs(np.fft.ifft2(transfer * np.fft.fft2(chi["probe_data"][0, 0] * patches))) ** 2
    expected = near.expected_intensities()
    np.testing.assert_allclose(model, expected, rtol=1e-3, atol=1e-4 * expected.max())
    obj, probe = run_ptychi.from_ptychi(chi["object_data"], chi["probe_data"], nearfield=True)
    np.testing.assert_array_equal(obj, inputs["initial_object"])
    np.testing.assert_array_equal(probe, inputs["initial_probe"])


def test_missing_peer_is_skipped_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("PTYBENCH_PTYCHI_PYTHON", str(tmp_path / "nowhere" / "python"))
    python = compare.peer_python("pty-chi")
    assert python == tmp_path / "nowhere" / "python"
    pair = compare.PAIRS[0]
    run, obj = compare.run_peer(pair, python, tmp_path / "inputs.npz", tmp_path, 2, 2, 0)
    assert run.status == "skipped" and obj is None
    assert str(python) in run.reason and "PTYBENCH_PTYCHI_PYTHON" in run.reason and "make peers" in run.reason

    ours = compare.Run("ptybench", pair.engine, "ok", 0.5, 0.1)
    rows = compare.table_rows([(pair, ours, run)])
    assert rows[0]["peer s/iter"] == "" and rows[0]["s/iter ratio ptybench/peer"] == ""
    assert rows[0]["peer status"].startswith("skipped: no Python at")
    markdown = compare.write_tables(rows, tmp_path, "test")
    assert "skipped: no Python at" in markdown and (tmp_path / "table.csv").read_text().count("\n") == 2


def test_failing_peer_is_reported_with_its_last_words(tmp_path, exported):
    """This Python has no PtyLab: the script fails, and the run says so in one line (the log keeps the rest)."""
    np.savez(tmp_path / "inputs.npz", **exported)
    pair = next(p for p in compare.PAIRS if p.peer == "PtyLab")
    run, obj = compare.run_peer(pair, Path(sys.executable), tmp_path / "inputs.npz", tmp_path, 2, 2, 0, timeout=60)
    assert run.status == "failed" and obj is None
    assert "No module named 'PtyLab'" in run.reason and (tmp_path / "ptylab-epie.log").is_file()


def test_time_to_the_peers_error_is_summed_until_ptybench_first_reaches_it(tmp_path):
    """The chase column: seconds until ptybench's error first reaches the peer's final error, against the
    peer's total; never reached is said, with the iterations and seconds tried, and gives no ratio."""
    pair = next(p for p in compare.PAIRS if p.peer_engine == "LSQML")
    ours = compare.Run("ptybench", "ML", "ok", 0.5, 0.06, seconds=[1.0, 0.5, 0.5, 0.5], errors=[0.2, 0.1, 0.04, 0.03])
    peer = compare.Run("pty-chi", "LSQML", "ok", 2.0, 0.05, seconds=[3.0, 2.0, 2.0])
    assert compare.seconds_to_error(ours, 0.05) == 2.0
    assert compare.seconds_to_error(ours, 0.01) is None and compare.seconds_to_error(ours, None) is None
    row = compare.table_rows([(pair, ours, peer)])[0]
    assert row["ptybench s to peer err"] == "2" and row["peer s"] == "7"
    assert row["time-to-error ratio ptybench/peer"] == f"{2 / 7:.3g}"
    slow = compare.Run("ptybench", "ML", "ok", 0.5, 0.2, seconds=[1.0, 0.5], errors=[0.3, 0.2])
    row = compare.table_rows([(pair, slow, peer)])[0]
    assert row["ptybench s to peer err"] == "> 1.5 (not in 2 it)" and row["time-to-error ratio ptybench/peer"] == ""


def test_repeats_give_the_median_run_its_spread_and_the_median_paired_ratio():
    """--repeats: the two codes alternate; the table keeps the median repeat, the range, and the median of
    each repeat's ratio (runs side by side in time), not a ratio of two medians taken at different times."""
    pair = next(p for p in compare.PAIRS if p.peer_engine == "LSQML")
    ours = [(compare.Run("ptybench", "ML", "ok", s, 0.03, seconds=[1.0, s], errors=[0.1, 0.03]), None)
            for s in (0.5, 0.9, 0.4)]
    theirs = [(compare.Run("pty-chi", "LSQML", "ok", s, 0.04, seconds=[3.0, s]), None) for s in (2.0, 3.0, 2.0)]
    merged_ours, merged_theirs = compare.median_repeat(ours)[0], compare.median_repeat(theirs)[0]
    assert merged_ours.seconds_per_iteration == 0.5 and merged_ours.repeat_seconds == [0.5, 0.9, 0.4]
    row = compare.table_rows([(pair, merged_ours, merged_theirs)])[0]
    assert row["ptybench s/iter"] == "0.5 [0.4–0.9]" and row["peer s/iter"] == "2 [2–3]"
    assert row["s/iter ratio ptybench/peer"] == "0.25 [0.2–0.3]"  # 0.5/2, 0.9/3, 0.4/2
    failed = [(compare.Run("pty-chi", "LSQML", "failed", reason="boom"), None)]
    assert compare.median_repeat(failed)[0].status == "failed"


def test_ptybench_side_runs_in_a_fresh_process_like_a_peer_and_reconstructs_as_in_process(data, tmp_path):
    """Both codes are measured the same way: ptybench's run is a child process started like a peer's script, and
    what it returns is what the engine computes in this process."""
    from ptybench.engines import Reconstruction

    arrays = data.arrays()
    truth = data.ground_truth()
    inputs = compare.export_ptybench_inputs(arrays, truth, tmp_path / "ours.npz")
    pair = next(p for p in compare.PAIRS if p.engine == "DM")
    run, obj = compare.run_ptybench(pair, inputs, tmp_path, 2, 1, 0, "numpy")
    assert run.status == "ok", run.reason
    assert len(run.seconds) == compare.CHASE * 2 and len(run.errors) == compare.CHASE * 2
    assert run.seconds_per_iteration == pytest.approx(float(np.median(run.seconds[1:2])))
    here = Reconstruction(arrays["diffraction_data"], arrays["initial_object"][:1], arrays["initial_probe"][:1],
                          arrays["scan_positions"], arrays["mask"],
                          {**pair.parameters, "iterations": 2, "threads": 1, "seed": 0, "backend": "numpy"})
    here.run()
    np.testing.assert_allclose(obj, here.object, rtol=1e-5, atol=1e-6)
    assert (tmp_path / "ptybench-dm.log").exists()
