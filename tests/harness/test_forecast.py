"""ptybench/forecast.py: forecasts from runs at the target's own frame size (only N extrapolated), the ladder's power
law as the fallback and cross-check, and what each row says was measured and extrapolated."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_records import TARGET, ladder, synthetic_record

from ptybench.forecast import fit_frame_cost, forecast, format_forecast

PER_FRAME, PER_PIXEL = 0.08, 2e-8  # seconds per frame and per object pixel, per iteration


def _object_side(frames: int) -> int:
    return int(768 + 80 * np.sqrt(frames))  # the scan grows with √N around one frame


def target_size_records(frames=(16, 48), repeats=3, noise=0.03, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    records = []
    for repeat in range(repeats):
        for n in frames:
            record = synthetic_record(768, n, repeat=repeat)
            side = _object_side(n)
            record["dataset"] = "seed-2552x768"
            record["dataset_changes"] = {"n_frames": n}
            record["dataset_info"].update(object_height=side, object_width=side)
            record["seconds_per_iteration"] = scale * (PER_FRAME * n + PER_PIXEL * side * side) * (
                1 + noise * rng.standard_normal())
            record["validation"], record["fom"] = {"result": "none", "threshold": None}, None
            records.append(record)
    return records


def _truth(n: int) -> float:
    side = _object_side(n)
    return PER_FRAME * n + PER_PIXEL * side * side


def test_the_frame_cost_fit_recovers_the_per_frame_and_per_pixel_costs():
    points = [{"frames": float(n), "object_pixels": float(_object_side(n) ** 2), "seconds": _truth(n)}
              for n in (8, 16, 48)]
    cost = fit_frame_cost(points)
    assert cost.per_frame == pytest.approx(PER_FRAME, rel=1e-3)
    assert cost.per_object_pixel == pytest.approx(PER_PIXEL, rel=1e-2)


def test_the_target_forecast_extrapolates_only_n_and_its_interval_holds_the_truth():
    side = _object_side(TARGET.n_frames)
    target = TARGET.__class__(TARGET.n_frames, (768, 768), (side, side))
    records = target_size_records() + ladder()
    (row,) = forecast(records, target, 498, [1e4])
    truth = _truth(TARGET.n_frames) / TARGET.n_frames
    assert row["method"] == "target frame size"
    assert row["seconds_per_frame_iteration"] == pytest.approx(truth, rel=0.10)
    low, high = row["interval"]
    assert low * row["seconds_per_frame_iteration"] <= truth <= high * row["seconds_per_frame_iteration"]
    assert "768² at N = 16 (3 runs), 48 (3 runs)" in row["measured"] and "on disk" not in row["measured"]
    assert "N 48 → 2552" in row["extrapolated"]
    assert row["ladder_over_target"] is not None and row["iterations"] == 8  # iterations from the ladder
    text = format_forecast([row])
    assert "target size" in text and "cross-check: the ladder's power law" in text


def test_two_independent_sets_of_runs_forecast_within_their_noise_of_each_other():
    side = _object_side(TARGET.n_frames)
    target = TARGET.__class__(TARGET.n_frames, (768, 768), (side, side))
    first, second = (forecast(target_size_records(seed=seed), target, 498, [1e4])[0] for seed in (1, 2))
    assert first["seconds_per_iteration"] == pytest.approx(second["seconds_per_iteration"], rel=0.15)


def test_without_target_size_runs_the_ladder_is_used_and_says_so():
    (row,) = forecast(ladder(), TARGET, 498, [1e4])
    assert row["method"] == "ladder" and "detector side 256 → 768" in row["extrapolated"]
    assert row["interval"] is not None and row["hold_out"] is not None


def test_target_size_runs_alone_forecast_time_per_iteration_without_iterations():
    side = _object_side(TARGET.n_frames)
    target = TARGET.__class__(TARGET.n_frames, (768, 768), (side, side))
    (row,) = forecast(target_size_records(), target, 498, [1e4])
    assert row["iterations"] is None and row["seconds_per_projection"] is None
    assert "?" in format_forecast([row])


def test_one_slow_run_among_three_does_not_move_the_forecast():
    """A quarter of this VM's processes run 1.3-2x slow with nothing visible; the median of each N's runs is the
    typical run, which one slow process does not move (and the forecast does not keep only the fastest either)."""
    side = _object_side(TARGET.n_frames)
    target = TARGET.__class__(TARGET.n_frames, (768, 768), (side, side))
    records = target_size_records(noise=0.0)
    records[-1]["seconds_per_iteration"] *= 1.6  # one process at N = 48 ran slow
    (row,) = forecast(records, target, 498, [1e4])
    assert "the median of each N's runs" in row["measured"]
    assert row["seconds_per_iteration"] == pytest.approx(_truth(TARGET.n_frames), rel=0.02)
    records[3]["seconds_per_iteration"] *= 1.6  # a second of three slow at N = 48: the typical run is slow there
    (slow,) = forecast(records, target, 498, [1e4])
    assert slow["seconds_per_iteration"] > 1.3 * row["seconds_per_iteration"]


@pytest.mark.parametrize("disk_speed", [1e7, None])
def test_a_target_that_does_not_fit_memory_is_priced_at_the_disks_measured_speed(disk_speed):
    """The seed's 6 GB of intensities on a 2 GB machine go to disk: an iteration reads them at least once, so at
    10 MB/s the disk, not the compute (~200 s), sets the pace; without a measured disk nothing is priced."""
    side = _object_side(TARGET.n_frames)
    target = TARGET.__class__(TARGET.n_frames, (768, 768), (side, side))
    records = target_size_records()
    for record in records:
        record["engine"] = "ePIE"
        record["machine"] = {**record["machine"], "memory_bytes": 2 * 10**9}  # a copy: MACHINE is shared
        record["disk"] = ({"disk_read_bytes_per_second": disk_speed, "disk_write_bytes_per_second": disk_speed}
                          if disk_speed else None)
        record["residency"] = "disk"  # measured as the target will run here (ptybench/workload.py)
    (row,) = forecast(records, target, 498, [1e4])
    assert row["residency"] == "disk" and "per-frame arrays on disk (as the target needs here)" in row["measured"]
    text = format_forecast([row])
    if disk_speed is None:
        assert row["disk_seconds_per_iteration"] is None and "its I/O is not priced" in text
        assert row["seconds_per_iteration"] == pytest.approx(_truth(TARGET.n_frames), rel=0.10)
    else:
        io = TARGET.n_frames * 768 * 768 * 4 / disk_speed
        assert row["disk_seconds_per_iteration"] == pytest.approx(io)
        assert row["seconds_per_iteration"] == pytest.approx(io) and "the disk sets the pace" in text


def test_a_target_at_the_edge_of_memory_takes_the_runs_of_its_predicted_residency_and_shows_the_others():
    """Runs at 16 and 48 frames measured both in memory and with their arrays on disk (twice as slow): the row is
    the in-memory one, as the memory model predicts for this large machine, and the disk runs are shown beside."""
    side = _object_side(TARGET.n_frames)
    target = TARGET.__class__(TARGET.n_frames, (768, 768), (side, side))
    in_memory, on_disk = target_size_records(noise=0.0), target_size_records(noise=0.0, scale=2.0)
    for record in in_memory:
        record["residency"] = "resident"
    for record in on_disk:
        record["residency"] = "disk"
    (row,) = forecast(in_memory + on_disk, target, 498, [1e4])
    assert row["residency"] == "resident" and "(6 runs)" not in row["measured"]
    assert row["seconds_per_iteration"] == pytest.approx(_truth(TARGET.n_frames), rel=0.02)
    assert row["other_residency"]["residency"] == "disk"
    assert row["other_residency"]["seconds_per_frame_iteration"] == pytest.approx(
        2 * row["seconds_per_frame_iteration"], rel=0.02)
    assert "at the edge of this machine's memory" in format_forecast([row]) and "(2.00×)" in format_forecast([row])
    (alone,) = forecast(in_memory, target, 498, [1e4])
    assert alone["other_residency"] is None and alone["seconds_per_iteration"] == row["seconds_per_iteration"]
