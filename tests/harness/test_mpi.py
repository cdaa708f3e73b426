"""MPI: distributed engines equal serial ones, frames partition exactly, a failing rank ends the job,
and the scaling fits recover known parameters."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from ptybench.cli import main
from ptybench.datasets import get_spec, load
from ptybench.engines import Reconstruction, ptychography
from ptybench.measurement import Measurement
from ptybench.results import read_records
from ptybench.scaling import (
    AllreduceModel,
    MPIUnavailable,
    fit_allreduce,
    fit_amdahl,
    fit_gustafson,
    karp_flatt,
    mpiexec_path,
    predict_strong,
    run_mpi,
    scaling_points,
)

try:
    mpiexec_path()
    import mpi4py  # noqa: F401
    MPI_MISSING = None
except (MPIUnavailable, ImportError) as error:
    MPI_MISSING = str(error)

needs_mpi = pytest.mark.skipif(MPI_MISSING is not None, reason=MPI_MISSING or "")
#: High dose: serial and 2-rank runs differ only in the order of additions; this keeps DM's
#: sensitivity near dark model pixels (tests/engines/test_backends.py) out of the comparison.
HIGH_DOSE = {"photons": 1e8}


def distributed(engine: str, ranks: int, tmp_path, iterations: int = 5, parameters: dict | None = None,
                frames_per_block: int | None = None, **changes) -> tuple[dict, Any, Any]:
    measurement = Measurement(dataset="farfield-64-256", engine=engine, iterations=iterations, warmup=0, threads=1,
                              ranks=ranks, fft_floor=False, timeout_s=120, dataset_changes=changes,
                              parameters=parameters or {}, frames_per_block=frames_per_block)
    arrays = tmp_path / f"{engine}-{ranks}.npz"
    record = run_mpi(measurement, str(arrays))
    assert record["status"] == "ok", record.get("message")
    saved = np.load(arrays)
    return record, saved["object"], saved["probe"]


def relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


@needs_mpi
@pytest.mark.mpi
@pytest.mark.parametrize("engine", ["DM", "RAAR", "ML"])
def test_two_ranks_equal_serial_after_five_iterations(engine, tmp_path):
    record, obj, probe = distributed(engine, 2, tmp_path, **HIGH_DOSE)
    data = load(get_spec("farfield-64-256").with_changes(**HIGH_DOSE))
    serial_object, serial_probe = ptychography(**data.arrays(), parameters={"engine": engine, "iterations": 5,
                                                                            "threads": 1})
    assert relative_difference(serial_object, obj) < 1e-5
    assert relative_difference(serial_probe, probe) < 1e-5
    assert [d["frames"] for d in record["per_rank"]] == [[0, 128], [128, 256]]
    assert record["communication_seconds"] > 0 and record["compute_seconds"] > 0
    # the object error is measured on the whole illuminated region, not on rank 0's frames only
    truth = data.ground_truth_object()
    from ptybench.engines.metrics import illuminated_region, object_error

    region = illuminated_region(data.ground_truth_probe(), np.floor(data.positions).astype(int),
                                truth.shape[-2:])
    assert record["object_error"] == pytest.approx(object_error(serial_object, truth, region), rel=1e-4)


@needs_mpi
@pytest.mark.mpi
@pytest.mark.parametrize("parameters", [{"position_refinement_start": 1, "positions": "nearest"},
                                        {"position_refinement_start": 1, "positions": "subpixel"},
                                        {"background_start": 1}], ids=["refined", "subpixel-refined", "background"])
def test_refinement_and_background_on_two_ranks_equal_serial(tmp_path, parameters):
    """Each rank refines its own frames (engines/positions.py; with sub-pixel placement the scan's affine part
    is taken out of every rank's moves together), and the background is fitted to every rank's frames
    (engines/background.py): the same moves and background, the same object as one process."""
    _, obj, probe = distributed("DM", 2, tmp_path, parameters=parameters, **HIGH_DOSE)
    data = load(get_spec("farfield-64-256").with_changes(**HIGH_DOSE))
    serial_object, serial_probe = ptychography(**data.arrays(), parameters={"engine": "DM", "iterations": 5,
                                                                            "threads": 1, **parameters})
    # float rounding only (measured 0.6-1.02e-5, thread counts differing): a frame placed differently by one rank
    # would differ by about 1e-2
    assert relative_difference(serial_object, obj) < 1e-4
    assert relative_difference(serial_probe, probe) < 1e-4


@needs_mpi
@pytest.mark.mpi
@pytest.mark.slow
def test_two_rank_epie_reaches_the_epie_bar(tmp_path):
    record, _, _ = distributed("ePIE", 2, tmp_path, iterations=100)
    assert record["object_error"] <= 0.05, record["object_error"]


@needs_mpi
@pytest.mark.mpi
def test_two_rank_batched_epie_merges_like_epie(tmp_path):
    """Each rank updates from its own batches (75 frames: one of 48, one of 27), then the ranks merge as
    ePIE's do; the result reconstructs (a different algorithm from serial, as the ePIE merge is)."""
    record, obj, probe = distributed("ePIE-batched", 2, tmp_path, iterations=20, parameters={"batch_frames": 48},
                                     n_frames=150)
    assert np.all(np.isfinite(obj)) and np.all(np.isfinite(probe))
    assert [d["frames"] for d in record["per_rank"]] == [[0, 75], [75, 150]]
    assert record["object_error"] < 0.1, record["object_error"]  # measured 0.076 (serial 0.046)


@needs_mpi
@pytest.mark.mpi
def test_ml_mini_batches_run_in_step_on_uneven_ranks(tmp_path):
    """Every rank makes the same number of batch updates (and reductions) even when its frames and
    blocks differ from the others': 3 ranks of 34/33/33 frames, blocks of 16, batches of 32."""
    record, obj, _ = distributed("ML", 3, tmp_path, iterations=10, parameters={"batch_frames": 32},
                                 frames_per_block=16, n_frames=100)
    assert np.all(np.isfinite(obj))
    assert record["object_error"] < 0.12, record["object_error"]  # measured 0.088


@needs_mpi
@pytest.mark.mpi
def test_frames_are_partitioned_without_loss_for_n_not_divisible_by_ranks(tmp_path):
    record, _, _ = distributed("DM", 3, tmp_path, iterations=1, n_frames=100)
    ranges = [tuple(d["frames"]) for d in record["per_rank"]]
    assert ranges == [(0, 34), (34, 67), (67, 100)]


def test_frame_range_covers_every_frame_once():
    from ptybench.engines.mpi import frame_range

    for n_frames in (1, 7, 100, 257):
        for size in (1, 2, 3, 5, 8):
            frames = [f for rank in range(size) for f in range(*frame_range(n_frames, rank, size))]
            assert frames == list(range(n_frames))


@needs_mpi
@pytest.mark.mpi
def test_a_rank_that_raises_ends_the_job_promptly_with_its_message(faulty_engine):
    """Not a timeout: the other rank does not wait in a collective until the job's limit."""
    measurement = Measurement(dataset="farfield-64-256", engine="Faulty", iterations=200, warmup=0, threads=1,
                              ranks=2, fft_floor=False, timeout_s=120)
    record = run_mpi(measurement, extra_environment=faulty_engine(1, "raise"))
    assert record["status"] == "error"
    assert "rank 1: deliberate failure" in record["message"]


@needs_mpi
@pytest.mark.mpi
def test_scale_command_records_points_and_draws_the_plot(tmp_path, capsys, saved_figures):
    out = tmp_path / "s.jsonl"
    arguments = ["scale", "--mode", "weak", "--ranks", "1,2", "--dataset", "farfield-64-256", "--engine", "ML",
                 "--iterations", "2", "--warmup", "0", "--frames-per-rank", "64", "--out", str(out)]
    assert main(arguments) == 0
    text = capsys.readouterr().out
    assert "Gustafson fit" in text and (tmp_path / "weak-ML.png").exists()
    (figure,) = saved_figures
    efficiency, stages = figure.axes
    assert efficiency.get_ylabel() == "weak-scaling efficiency"
    measured = next(line for line in efficiency.get_lines() if line.get_label().startswith("measured"))
    assert list(measured.get_xdata()) == [1, 2] and measured.get_ydata()[0] == pytest.approx(1.0)
    assert [patch.get_height() > 0 for patch in stages.patches[:2]] == [True, True]  # compute bars
    records = read_records(out)
    assert [(r["ranks"], r["dataset_info"]["n_frames"]) for r in records] == [(1, 64), (2, 128)]
    assert main(arguments) == 0  # resumes: both points reused
    assert len(read_records(out)) == 2


def test_missing_mpi_is_a_clear_message(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr("sys.executable", str(tmp_path / "python"))
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(MPIUnavailable, match="pip install"):
        mpiexec_path()
    assert main(["scale", "--dataset", "farfield-64-256"]) == 2
    assert "MPI not found" in capsys.readouterr().err


def test_weak_points_grow_n_with_ranks_and_strong_points_do_not():
    base = Measurement(dataset="farfield-64-1024", engine="DM")
    weak = scaling_points(base, "weak", [1, 2, 4], frames_per_rank=256)
    assert [(p.ranks, p.dataset_changes["n_frames"]) for p in weak] == [(1, 256), (2, 512), (4, 1024)]
    assert [p.dataset_changes for p in scaling_points(base, "strong", [1, 2])] == [{}, {}]
    with pytest.raises(ValueError, match="mode"):
        scaling_points(base, "diagonal", [1])


# --- fits recover the parameters of synthetic timings -------------------------------------------
def test_amdahl_fit_recovers_serial_fraction_and_t1():
    ranks = np.array([1, 2, 4, 8, 16])
    truth = 12.0 * (0.07 + 0.93 / ranks)
    noisy = truth * (1 + 0.01 * np.random.default_rng(0).standard_normal(len(ranks)))
    fit = fit_amdahl(ranks, noisy)
    assert fit.serial_fraction == pytest.approx(0.07, abs=0.01) and fit.t1 == pytest.approx(12.0, rel=0.02)
    assert fit.speedup(1e9) == pytest.approx(1 / fit.serial_fraction, rel=1e-3)


def test_gustafson_fit_and_karp_flatt_recover_serial_fraction():
    ranks = np.array([1, 2, 4, 8])
    assert fit_gustafson(ranks, ranks - 0.2 * (ranks - 1)) == pytest.approx(0.2)
    speedup = 1 / (0.05 + 0.95 / ranks)                     # Amdahl with s = 0.05
    np.testing.assert_allclose(karp_flatt(speedup, ranks)[1:], 0.05)
    assert np.isnan(karp_flatt(speedup, ranks)[0])


def test_allreduce_model_recovers_latency_and_bandwidth():
    model = AllreduceModel(latency_s=5e-6, bandwidth_bytes_per_s=4e9)
    sizes = np.array([2**k for k in range(12, 27, 2)], dtype=float)
    fitted = fit_allreduce(sizes, [model.seconds(s, 4) for s in sizes], ranks=4)
    assert fitted.latency_s == pytest.approx(5e-6, rel=1e-3)
    assert fitted.bandwidth_bytes_per_s == pytest.approx(4e9, rel=1e-3)
    rows = predict_strong(fit_amdahl([1, 2], [1.0, 0.5]), model, 1e6, [1, 64])
    assert rows[0]["communication_s"] == 0 and rows[1]["communication_s"] > 0 and rows[1]["efficiency"] < 1


def test_reconstruction_records_communication_as_its_own_stage():
    data = load("farfield-64-256")
    result = Reconstruction(**data.arrays(), parameters={"engine": "DM", "iterations": 2}).run()
    stages = result.history[-1].stage_seconds
    assert "communication" in stages and sum(stages.values()) <= result.history[-1].seconds * 1.01


@needs_mpi
def test_a_serial_run_and_a_one_rank_mpi_run_make_records_with_the_same_fields():
    """One measurement path: `ptybench run` and a 1-rank `ptybench scale` differ only in the launcher."""
    from ptybench.record import RECORD_FIELDS
    from ptybench.runner import run_isolated

    measurement = Measurement(dataset="farfield-64-256", engine="DM", iterations=2, warmup=0, threads=1,
                              fft_floor=False)
    serial = run_isolated(measurement)
    distributed = run_mpi(measurement)
    assert serial["status"] == distributed["status"] == "ok", (serial["message"], distributed["message"])
    assert set(serial) == set(distributed) == {"schema", *RECORD_FIELDS}
    assert set(serial["memory"]) == set(distributed["memory"])
    assert serial["object_error"] == pytest.approx(distributed["object_error"], rel=1e-6)
    assert len(serial["per_rank"]) == len(distributed["per_rank"]) == 1


@needs_mpi
def test_a_standard_cxi_file_runs_on_two_ranks(tmp_path):
    """Each rank reads its own frames of a file with only standard fields (no ptybench group)."""
    import h5py

    from ptybench.datasets import write_cxi

    path = write_cxi(tmp_path / "beamline.cxi", load("farfield-64-256"))
    with h5py.File(path, "a") as handle:
        del handle["entry_1/ptybench"]
    record = run_mpi(Measurement(dataset=str(path), engine="DM", iterations=2, warmup=0, threads=1,
                                 fft_floor=False, ranks=2))
    assert record["status"] == "ok", record["message"]
    assert [r["frames"] for r in record["per_rank"]] == [[0, 128], [128, 256]]
    assert record["object_error"] is None and 0 < record["r_factor"] < 1


@needs_mpi
def test_a_rank_killed_by_a_signal_is_named_with_the_signal(faulty_engine):
    measurement = Measurement(dataset="farfield-64-256", engine="Faulty", iterations=1, warmup=0, threads=1,
                              fft_floor=False, ranks=2)
    record = run_mpi(measurement, extra_environment=faulty_engine(1, "kill"))
    assert record["status"] == "error"
    assert record["message"].startswith("rank 1 (pid ") and "killed by SIGKILL (signal 9)" in record["message"]
