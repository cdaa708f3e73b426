"""Residency 'disk' (engines/scratch.py): DM/RAAR exit waves, and intensities that do not fit the host, in scratch
files give the same reconstruction as in memory for every engine, are chosen when they do not fit, leave nothing
behind however the run ends, and a full disk is a clear error before any iteration."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from ptybench.engines import Reconstruction
from ptybench.engines.placement import FrameCosts, choose_placement
from ptybench.engines.scratch import ScratchSpaceError


@pytest.mark.parametrize("engine", ["DM", "RAAR"])
def test_exit_waves_on_disk_reconstruct_exactly_as_in_memory(tiny_arrays, engine, tmp_path):
    parameters = {"engine": engine, "iterations": 4, "probe_update_start": 0, "scratch_directory": str(tmp_path)}
    in_memory = Reconstruction(**tiny_arrays, parameters=parameters)
    on_disk = Reconstruction(**tiny_arrays, parameters={**parameters, "residency": "disk"})
    assert (in_memory.problem.placement.residency, on_disk.problem.placement.residency) == ("resident", "disk")
    results = in_memory.run(), on_disk.run()
    np.testing.assert_array_equal(results[0].object, results[1].object)
    np.testing.assert_array_equal(results[0].probe, results[1].probe)
    store = on_disk._engine.exit_waves if on_disk._engine is not None else None
    stages = results[1].history[-1].stage_seconds
    assert "disk_write" in stages and "disk_read" in stages
    assert store is None or store.bytes_written > 0
    assert list(tmp_path.iterdir()) == []  # unlinked at creation


def test_exit_waves_that_do_not_fit_the_host_go_to_disk_automatically():
    costs = FrameCosts(data=3 * 2**20, temporaries=2**20, fixed=10 * 2**20, wave=2 * 2**20, kept_waves=2 * 2**20)
    assert choose_placement(1000, costs, on_device=False, available_bytes=10 * 2**30).residency == "resident"
    assert choose_placement(1000, costs, on_device=False, available_bytes=2**30).residency == "disk"
    waves_only = choose_placement(1000, costs, on_device=False, available_bytes=2 * 2**30)  # 3 GB > 1.7 usable
    assert waves_only.disk and not waves_only.intensities_on_disk
    both = choose_placement(1000, costs, on_device=False, available_bytes=2**29)  # 1 GB of intensities alone
    assert both.disk and both.intensities_on_disk and "intensities and exit waves" in both.reason
    no_waves = FrameCosts(data=2**20, temporaries=2**20, fixed=10 * 2**20, wave=2 * 2**20)
    assert choose_placement(500, no_waves, on_device=False, available_bytes=2**30).residency == "resident"
    streamed = choose_placement(10**5, no_waves, on_device=False, available_bytes=2**30)
    assert (streamed.residency, streamed.intensities_on_disk, streamed.disk) == ("disk", True, False)
    assert choose_placement(10, costs, on_device=False, available_bytes=None, requested_residency="disk").disk


@pytest.mark.parametrize("engine", ["ePIE", "rPIE-batched", "ML", "DM"])
def test_intensities_on_disk_reconstruct_exactly_as_in_memory(tiny_arrays, engine, tmp_path, monkeypatch):
    """ePIE reads one frame at a time in random order, the batched engine gathers, ML reads twice per iteration;
    DM with a host too small even for the intensities puts both its stores on disk."""
    from ptybench.engines import problem as problem_module

    parameters = {"engine": engine, "iterations": 3, "probe_update_start": 0, "scratch_directory": str(tmp_path)}
    in_memory = Reconstruction(**tiny_arrays, parameters=parameters).run()
    monkeypatch.setattr(problem_module, "host_available_bytes", lambda: 2**16)
    reconstruction = Reconstruction(**tiny_arrays, parameters={**parameters, "residency": "disk"})
    placement = reconstruction.problem.placement
    assert placement.intensities_on_disk and placement.disk == (engine == "DM")
    on_disk = reconstruction.run()
    np.testing.assert_array_equal(in_memory.object, on_disk.object)
    np.testing.assert_array_equal(in_memory.probe, on_disk.probe)
    frame_bytes = 4 * tiny_arrays["diffraction_data"][0].size
    assert on_disk.history[-1].disk_bytes_read >= len(tiny_arrays["diffraction_data"]) * frame_bytes
    assert in_memory.history[-1].disk_bytes_read == 0
    assert list(tmp_path.iterdir()) == []


def test_epie_on_disk_reads_its_random_order_a_block_at_a_time_on_the_helper_thread(tiny_arrays, tmp_path,
                                                                                    monkeypatch):
    """One hand-over to the reader per block of the order, not per frame: every frame read once per iteration,
    in blocks of frames_per_block, all but each iteration's first gathered ahead."""
    from ptybench.engines import problem as problem_module
    from ptybench.engines.scratch import ScratchFrameStore

    gathered, ahead = [], []
    gather_frames, gather_ahead = ScratchFrameStore._gather_frames, ScratchFrameStore.gather_ahead
    monkeypatch.setattr(ScratchFrameStore, "_gather_frames",
                        lambda self, frames: gathered.append(frames) or gather_frames(self, frames))
    monkeypatch.setattr(ScratchFrameStore, "gather_ahead",
                        lambda self, frames: ahead.append(len(frames)) or gather_ahead(self, frames))
    monkeypatch.setattr(problem_module, "host_available_bytes", lambda: 2**16)
    n, block, iterations = len(tiny_arrays["diffraction_data"]), 8, 3
    Reconstruction(**tiny_arrays, parameters={"engine": "ePIE", "iterations": iterations, "frames_per_block": block,
                                              "residency": "disk", "scratch_directory": str(tmp_path)}).run()
    blocks = -(-n // block)
    assert len(gathered) == iterations * blocks and max(map(len, gathered)) == block
    assert all(sorted(j for frames in gathered[k * blocks:(k + 1) * blocks] for j in frames) == list(range(n))
               for k in range(iterations))
    assert len(ahead) == iterations * (blocks - 1)


@pytest.mark.parametrize("engine", ["ePIE", "ML", "DM"])
def test_a_memory_limit_below_the_dataset_streams_it_from_disk_with_the_same_result(engine):
    """The measuring process under --memory-limit 70 MB: 67 MB of stored frames (201 MB with their float32 copy and
    DM's exit waves) are read block by block and kept in scratch files, and the object error equals the
    unlimited run's; the record says how many bytes went through the disk. (The limit is set before the data
    are loaded: loaded whole, they would not fit it.)"""
    from ptybench.measurement import Measurement
    from ptybench.runner import run_isolated

    common = dict(dataset="farfield-128-1024", engine=engine, iterations=1, warmup=0, threads=1, fft_floor=False)
    limited = run_isolated(Measurement(**common, memory_limit_bytes=70 * 10**6))
    free = run_isolated(Measurement(**common))
    assert (limited["status"], free["status"]) == ("ok", "ok"), (limited.get("message"), free.get("message"))
    assert (limited["residency"], free["residency"]) == ("disk", "resident")
    assert "intensities" in limited["placement_reason"] and free["disk"] is None
    assert limited["object_error"] == pytest.approx(free["object_error"], rel=1e-6)
    assert limited["disk"]["read_bytes_per_iteration"] >= 1024 * 128 * 128 * 4
    assert (limited["disk"]["written_bytes_per_iteration"] > 0) == (engine == "DM")


def test_a_killed_run_leaves_no_scratch_file(tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    script = textwrap.dedent(f"""
        from ptybench.datasets import load
        from ptybench.engines import Reconstruction
        data = load("farfield-64-256")
        Reconstruction(**data.arrays(), parameters={{"engine": "DM", "iterations": 100000, "residency": "disk",
                                                     "scratch_directory": {str(scratch)!r}}}).run()
    """)
    child = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        def links(folder: Path) -> list[str]:  # a descriptor may close between listing and reading it
            found = []
            try:
                descriptors = list(folder.iterdir())
            except FileNotFoundError:  # the child has ended
                return found
            for fd in descriptors:
                try:
                    found.append(os.readlink(fd))
                except FileNotFoundError:
                    continue
            return found

        held = []
        for _ in range(600):  # until the child holds its scratch file open
            held = links(Path(f"/proc/{child.pid}/fd"))
            if any(str(scratch) in link for link in held) or child.poll() is not None:
                break
            time.sleep(0.05)
        assert any(str(scratch) in link and "(deleted)" in link for link in held), held
        assert list(scratch.iterdir()) == []
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert list(scratch.iterdir()) == []


def test_a_full_disk_is_a_clear_error_before_any_iteration(tiny_arrays, tmp_path, monkeypatch):
    import errno

    def no_space(descriptor, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    reconstruction = Reconstruction(**tiny_arrays, parameters={"engine": "DM", "iterations": 2, "residency": "disk",
                                                               "scratch_directory": str(tmp_path)})
    with pytest.raises(ScratchSpaceError, match=r"scratch_directory: expected room for .* GB free \(No space"):
        reconstruction.run()
    assert reconstruction.history == [] and list(tmp_path.iterdir()) == []


def test_a_missing_scratch_directory_is_named(tiny_arrays):
    with pytest.raises(ScratchSpaceError, match="expected an existing directory"):
        Reconstruction(**tiny_arrays, parameters={"engine": "DM", "iterations": 1, "residency": "disk",
                                                  "scratch_directory": "/no/such/place"}).run()


def test_disk_residency_is_refused_on_a_device():
    from ptybench.engines.errors import InputError

    costs = FrameCosts(data=2**20, temporaries=2**20, fixed=2**20, wave=2**20, kept_waves=2**20)
    with pytest.raises(InputError, match="residency: 'disk' is for host backends"):
        choose_placement(10, costs, on_device=True, available_bytes=2**30, requested_residency="disk")


def test_the_scratch_file_is_closed_when_the_stage_ends(tiny_arrays, tmp_path):
    """Not left to the garbage collector: a DM stage followed by ML frees its exit waves' file at the switch."""
    reconstruction = Reconstruction(**tiny_arrays, parameters={
        "residency": "disk", "scratch_directory": str(tmp_path),
        "engine": [{"engine": "DM", "iterations": 2}, {"engine": "ML", "iterations": 1}]})
    reconstruction.step()
    store = reconstruction._engine.exit_waves

    def open_scratch() -> list[str]:
        return [link for link in (os.readlink(fd) for fd in Path("/proc/self/fd").iterdir() if fd.exists())
                if str(tmp_path) in link]

    assert open_scratch()
    reconstruction.run()
    assert store._fd is None and not open_scratch()


def test_a_scratch_directory_in_memory_is_warned_about(tmp_path):
    from ptybench.engines.scratch import scratch_directory

    target = tmp_path / "ram"
    target.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(target)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        with pytest.warns(UserWarning, match="is in memory"):
            scratch_directory(str(target))
    finally:
        subprocess.run(["umount", str(target)], check=False)


def test_an_unwritable_scratch_directory_is_named(tiny_arrays, tmp_path, monkeypatch):
    import tempfile as tempfile_module

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile_module, "mkstemp", refuse)
    with pytest.raises(ScratchSpaceError, match="expected a directory this process can write"):
        Reconstruction(**tiny_arrays, parameters={"engine": "DM", "iterations": 1, "residency": "disk",
                                                  "scratch_directory": str(tmp_path)}).run()


def _refuses_direct_io(directory) -> bool:
    probe = os.path.join(directory, "direct-probe")
    with open(probe, "wb"):
        pass
    try:
        os.close(os.open(probe, os.O_RDONLY | os.O_DIRECT))
        return False
    except (OSError, AttributeError):
        return True
    finally:
        os.unlink(probe)


@pytest.mark.parametrize(("frame_shape", "direct"), [((32, 32), True), ((30, 30), False)])
def test_scratch_reads_bypass_the_page_cache_when_frames_are_whole_pages(tmp_path, frame_shape, direct):
    """32² float32 frames are one 4 KiB page: read with O_DIRECT; 30² are not, so buffered. Both return what was
    written, block reads and gathers alike, even straight after a (buffered) write."""
    from ptybench.engines.backends import get_backend
    from ptybench.engines.scratch import DIRECT_ALIGNMENT, ScratchFrameStore

    if direct and _refuses_direct_io(tmp_path):
        pytest.skip("this file system refuses O_DIRECT")
    frames = np.random.default_rng(0).random((12, *frame_shape), dtype=np.float32)
    store = ScratchFrameStore(get_backend("numpy"), frames.shape, np.float32, str(tmp_path), blocks=[(0, 6), (6, 12)])
    try:
        assert (store._direct_fd is not None) == direct
        store.write(0, 12, frames)
        np.testing.assert_array_equal(store.read(0, 6), frames[:6])
        store.write(6, 12, frames[6:] + 1)
        np.testing.assert_array_equal(store.read(6, 12), frames[6:] + 1)
        store.gather_ahead(np.array([11, 2, 7]))
        gathered = store.gather(np.array([11, 2, 7]), None)
        np.testing.assert_array_equal(gathered, np.stack([frames[11] + 1, frames[2], frames[7] + 1]))
        if direct:
            assert gathered.ctypes.data % DIRECT_ALIGNMENT == 0
    finally:
        store.close()
    assert list(tmp_path.iterdir()) == []


def test_the_read_ahead_follows_the_stride_of_the_engines_reads():
    """A sweep reads the next block; ML's mini-batches (every K-th block) the block K on; both wrap around."""
    from ptybench.engines.scratch import BlockReadAhead

    blocks = [(8 * i, 8 * i + 8) for i in range(6)]
    sweep = BlockReadAhead(blocks)
    assert [sweep.after(block) for block in blocks] == blocks[1:] + blocks[:1]
    batches = BlockReadAhead(blocks)
    assert [batches.after(blocks[i]) for i in (0, 3)] == [blocks[1], blocks[0]]  # stride 3, wrapping
    assert batches.after(blocks[1]) is not None and batches.after(blocks[4]) == blocks[1]
    assert BlockReadAhead([blocks[0]]).after(blocks[0]) is None and sweep.after((1, 2)) is None
    pending = {}
    reader = BlockReadAhead(blocks)
    pending[reader.advance(blocks[0], pending)] = "block 1"
    assert reader.advance(blocks[1], pending) == blocks[2]  # the guess was taken (the store popped it itself)
    pending = {blocks[2]: "block 2"}
    assert reader.advance(blocks[4], pending) == blocks[1] and pending == {}  # a wrong guess is dropped


def test_ml_mini_batches_on_disk_reconstruct_exactly_as_in_memory(tiny_arrays, tmp_path, monkeypatch):
    from ptybench.engines import problem as problem_module

    parameters = {"engine": "ML", "iterations": 3, "batch_frames": 16, "frames_per_block": 4,
                  "scratch_directory": str(tmp_path)}
    in_memory = Reconstruction(**tiny_arrays, parameters=parameters).run()
    monkeypatch.setattr(problem_module, "host_available_bytes", lambda: 2**16)
    on_disk = Reconstruction(**tiny_arrays, parameters={**parameters, "residency": "disk"}).run()
    np.testing.assert_array_equal(in_memory.object, on_disk.object)
    np.testing.assert_array_equal(in_memory.probe, on_disk.probe)
    assert list(tmp_path.iterdir()) == []


def test_a_file_system_that_refuses_direct_reads_midway_is_read_buffered(tmp_path, monkeypatch):
    """O_DIRECT opened but a read refused (EINVAL, as some file systems do): that read and the rest go through the
    page cache, with the same data."""
    import errno

    from ptybench.engines.backends import get_backend
    from ptybench.engines.scratch import ScratchFrameStore

    if _refuses_direct_io(tmp_path):
        pytest.skip("this file system refuses O_DIRECT at open")
    frames = np.arange(8 * 32 * 32, dtype=np.float32).reshape(8, 32, 32)
    store = ScratchFrameStore(get_backend("numpy"), frames.shape, np.float32, str(tmp_path))
    preadv, direct_fd = os.preadv, store._direct_fd

    def refusing(fd, buffers, offset):
        if fd == direct_fd:
            raise OSError(errno.EINVAL, "Invalid argument")
        return preadv(fd, buffers, offset)

    monkeypatch.setattr(os, "preadv", refusing)
    try:
        store.write(0, 8, frames)
        np.testing.assert_array_equal(store.read(2, 5), frames[2:5])
        np.testing.assert_array_equal(store.read(5, 8), frames[5:8])
        assert store._direct_refused
    finally:
        store.close()
