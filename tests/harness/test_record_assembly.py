"""Record assembly without MPI or devices: the critical path of a distributed iteration, timing statistics,
time to quality, and the memory probes of the measuring process."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from ptybench.memory_probes import allocation_failure, is_out_of_memory, process_status_bytes
from ptybench.record import Record
from ptybench.record_assembly import add_distributed, add_timing, disk_summary, time_to_quality


def blank() -> Record:
    return Record(dataset="d", engine="DM", backend="numpy", device=None, ranks=2, threads=1, frames_per_block=None,
                  iterations=3, warmup=1, parameters={}, dataset_changes={}, status="ok")


def rank(walls, communication):
    return {"iteration_seconds": walls, "communication_seconds": communication, "bytes_reduced_per_iteration": 8.0,
            "allreduce_calls_per_iteration": 2.0}


def test_the_slowest_ranks_compute_and_its_own_communication_make_the_critical_path():
    # iteration 1: rank 0 computes 0.8 (waits 0.2), rank 1 computes 0.5 (waits 0.5): rank 0 sets the pace.
    # iteration 2: rank 1 is the slow one (compute 0.9, communication 0.1).
    record = blank()
    add_distributed(record, [rank([1.0, 1.0], [0.2, 0.6]), rank([1.0, 1.0], [0.5, 0.1])])
    assert record.compute_seconds == pytest.approx(np.median([0.8, 0.9]))
    assert record.communication_seconds == pytest.approx(np.median([0.2, 0.1]))
    assert record.load_imbalance == pytest.approx(np.median([0.8 / 0.65, 0.9 / 0.65]))
    assert record.bytes_reduced_per_iteration == 8.0 and record.allreduce_calls_per_iteration == 2.0


def test_no_timed_iterations_leave_the_critical_path_unset():
    record = blank()
    add_distributed(record, [rank([], []), rank([], [])])
    assert record.compute_seconds is None and record.per_rank is not None


def iteration(seconds, object_error=None, err_fmag=None, r_factor=None):
    return SimpleNamespace(seconds=seconds, object_error=object_error, err_fmag=err_fmag, r_factor=r_factor,
                           stage_seconds={"propagation": seconds / 2})


def test_timing_statistics_skip_the_warm_up_and_the_final_errors_are_the_last_iterations():
    history = [iteration(9.0), iteration(1.0, 0.3, 2.0, 0.2), iteration(3.0, 0.2, 1.5, 0.1),
               iteration(2.0, 0.1, 1.0, 0.05)]
    record = blank()
    add_timing(record, history, SimpleNamespace(warmup=1, target_error=0.2))
    assert record.seconds_per_iteration == 2.0 and record.seconds_min == 1.0 and record.seconds_max == 3.0
    assert record.iteration_seconds == [1.0, 3.0, 2.0] and record.iterations_done == 4
    assert (record.object_error, record.err_fmag, record.r_factor) == (0.1, 1.0, 0.05)
    assert (record.iterations_to_target, record.seconds_to_target) == (3, 13.0)  # warm-up counts toward quality
    assert record.r_factor_history == [None, 0.2, 0.1, 0.05]


def test_time_to_quality_on_the_fourier_error_ignores_iterations_that_were_not_evaluated():
    history = [iteration(1.0, err_fmag=None), iteration(1.0, err_fmag=5.0), iteration(1.0, err_fmag=None),
               iteration(1.0, err_fmag=0.4)]
    assert time_to_quality(history, 0.5, "err_fmag") == (4, 4.0)
    assert time_to_quality(history, 0.1, "err_fmag") == (None, None)
    assert time_to_quality(history, None) == (None, None)


def test_memory_probes_read_this_process_and_recognise_every_backends_out_of_memory():
    resident, peak = process_status_bytes("VmRSS"), process_status_bytes("VmHWM")
    assert resident is not None and peak >= resident > 10 * 2**20
    assert process_status_bytes("NoSuchField") is None
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(type("OutOfMemoryError", (Exception,), {})("cupy"))
    assert not is_out_of_memory(ValueError("shape mismatch"))


def test_a_library_that_exits_on_a_failed_allocation_is_read_as_out_of_memory():
    """OpenBLAS exits with status 1 after printing this, before Python could raise MemoryError."""
    stderr = "some warning\nOpenBLAS error: Memory allocation still failed after 10 retries, giving up.\n"
    assert allocation_failure(stderr) == "OpenBLAS error: Memory allocation still failed after 10 retries, giving up."
    assert allocation_failure("terminate called after throwing an instance of 'std::bad_alloc'") is not None
    assert allocation_failure("Traceback ...\nValueError: shape mismatch") is None


def test_disk_traffic_is_the_mean_of_the_timed_iterations_and_the_hidden_share_uses_the_bandwidth():
    def iteration(read, written, wait):
        return SimpleNamespace(disk_bytes_read=read, disk_bytes_written=written,
                               stage_seconds={"disk_read": wait, "disk_write": 0.5})

    timed = [iteration(1e9, 2e9, 0.2), iteration(3e9, 2e9, 0.6)]
    summary = disk_summary(timed, read_bytes_per_second=1e9)
    assert summary["read_bytes_per_iteration"] == 2e9 and summary["written_bytes_per_iteration"] == 2e9
    assert summary["read_wait_seconds"] == pytest.approx(0.4) and summary["write_seconds"] == pytest.approx(0.5)
    assert summary["read_seconds_at_disk_speed"] == 2.0 and summary["read_hidden_share"] == pytest.approx(0.8)
    assert "read_hidden_share" not in disk_summary(timed)
    assert disk_summary([iteration(0, 0, 0.0)]) is None and disk_summary([]) is None
