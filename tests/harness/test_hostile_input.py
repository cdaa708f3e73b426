"""Untrusted folders and files (issue: reliability and security): a module planted where the user runs is not
imported by the measuring child; HDF5 indirection to other files is refused unless asked for; data that are
not intensities are refused."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np
import pytest

from ptybench.datasets import DatasetSpec, load, write_cxi
from ptybench.measurement import Measurement
from ptybench.results import read_records
from ptybench.runner import run_isolated

DETECTOR = "entry_1/instrument_1/detector_1"
SMALL = DatasetSpec(kind="farfield", n_frames=8, frame_shape=(32, 32), photons=1e5, seed=2)


def test_a_module_planted_in_the_working_folder_is_not_imported(tmp_path, monkeypatch):
    marker = tmp_path / "planted-ran"
    for name in ("psutil", "numpy", "h5py"):
        (tmp_path / f"{name}.py").write_text(f"open({str(marker)!r}, 'a').write('{name}')\n")
    monkeypatch.chdir(tmp_path)
    record = run_isolated(Measurement(dataset="farfield-64-256", engine="ePIE", iterations=1, warmup=0,
                                      threads=1, fft_floor=False))
    assert record["status"] == "ok", record["message"]
    assert not marker.exists()


def test_external_raw_storage_is_refused_by_default(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(8 * 32 * 32, dtype=np.uint32).tobytes())
    path = write_cxi(tmp_path / "crafted.cxi", load(SMALL))
    with h5py.File(path, "a") as f:
        del f[f"{DETECTOR}/data"]
        f.create_dataset(f"{DETECTOR}/data", shape=(8, 32, 32), dtype=np.uint32,
                         external=[(str(secret), 0, h5py.h5f.UNLIMITED)])
    with pytest.raises(ValueError, match=rf"/{DETECTOR}/data .* external storage"):
        load(path)


def test_an_external_link_to_another_file_is_refused_unless_allowed_inside_the_folder(tmp_path):
    other = write_cxi(tmp_path / "frames.cxi", load(SMALL))
    path = write_cxi(tmp_path / "master.cxi", load(SMALL))
    with h5py.File(path, "a") as f:
        del f[f"{DETECTOR}/data"]
        f[f"{DETECTOR}/data"] = h5py.ExternalLink(str(other), f"/{DETECTOR}/data")
    with pytest.raises(ValueError, match=rf"/{DETECTOR}/data .* external link"):
        load(path)
    with load(path, external="same-folder") as data:
        assert data.frames(0, 2).shape == (2, 32, 32)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    moved = outside / "master.cxi"
    path.rename(moved)
    with pytest.raises(ValueError, match="outside the file's folder"):
        load(moved, external="same-folder")


def test_a_virtual_dataset_is_refused_by_default(tmp_path):
    other = write_cxi(tmp_path / "frames.cxi", load(SMALL))
    path = write_cxi(tmp_path / "vds.cxi", load(SMALL))
    layout = h5py.VirtualLayout(shape=(8, 32, 32), dtype=np.uint32)
    layout[:] = h5py.VirtualSource(str(other), f"/{DETECTOR}/data", shape=(8, 32, 32))
    with h5py.File(path, "a") as f:
        del f[f"{DETECTOR}/data"]
        f.create_virtual_dataset(f"{DETECTOR}/data", layout)
    with pytest.raises(ValueError, match=rf"/{DETECTOR}/data .* virtual dataset"):
        load(path)
    with load(path, external="same-folder") as data:
        np.testing.assert_array_equal(data.frames(0, 2), load(SMALL).frames(0, 2))


def test_complex_or_negative_frames_are_not_intensities(tmp_path):
    path = write_cxi(tmp_path / "complex.cxi", load(SMALL))
    with h5py.File(path, "a") as f:
        del f[f"{DETECTOR}/data"]
        f[f"{DETECTOR}/data"] = np.ones((8, 32, 32), dtype=np.complex64)
    with pytest.raises(ValueError, match=rf"/{DETECTOR}/data .* complex64.* intensities are real"):
        load(path)


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("PTYBENCH_KERNELS", "fusd", r"PTYBENCH_KERNELS: expected one of \['fused', 'reference'\], got 'fusd'"),
    ("PTYBENCH_STALL_S", "abc", "PTYBENCH_STALL_S: expected a number"),
])
def test_a_mistyped_environment_value_names_the_variable(monkeypatch, tmp_path, variable, value, message):
    from ptybench.engines.backends import get_backend
    from ptybench.scaling import StallWatch

    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=message):
        if variable == "PTYBENCH_KERNELS":
            get_backend("numpy").kernels  # noqa: B018
        else:
            StallWatch(tmp_path, 2)


def test_a_missing_plugin_module_names_the_variable(monkeypatch):
    from ptybench.engines import registry

    monkeypatch.setenv(registry.PLUGIN_VARIABLE, "no_such_engine_module")
    monkeypatch.setattr(registry, "_loaded", False)
    with pytest.raises(ValueError, match=r"PTYBENCH_ENGINE_MODULES: .* cannot import 'no_such_engine_module'"):
        registry.engine_names()
    monkeypatch.delenv(registry.PLUGIN_VARIABLE)
    assert "DM" in registry.engine_names()


@pytest.mark.parametrize("clash", [{"iterations": 7}, {"backend": "torch"}, {"threads": 1}])
def test_parameters_that_the_measurement_sets_are_refused(clash):
    with pytest.raises(ValueError, match=r"parameters: \[.*\] are set by the measurement itself"):
        Measurement(dataset="farfield-64-256", engine="DM", iterations=1, parameters=clash)


def _default_sigint() -> None:
    """A pytest started in the background (``make test &``) ignores SIGINT, and its children inherit that;
    the sweep under test must see Ctrl-C as a terminal user's process does."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_an_interrupted_sweep_says_one_line_exits_128_plus_signal_and_releases_its_claim(tmp_path, signum, code):
    out = tmp_path / "r.jsonl"
    sweep = subprocess.Popen([sys.executable, "-m", "ptybench", "sweep", "--datasets", "farfield-64-1024",
                              "--engines", "DM", "--iterations", "400", "--warmup", "0", "--threads", "1",
                              "--out", str(out), "--no-progress"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    claims = tmp_path / "r.jsonl.claims"
    for _ in range(600):  # until the point is claimed (the child is measuring), at most a minute
        if claims.is_dir() and any(claims.iterdir()):
            break
        time.sleep(0.1)
    sweep.send_signal(signum)
    _, err = sweep.communicate(timeout=60)
    assert sweep.returncode == code
    assert "Traceback" not in err and err.strip().startswith("ptybench: ") and len(err.strip().splitlines()) == 1
    assert not any(claims.iterdir())


def test_a_symlink_planted_as_a_claim_or_temporary_file_is_never_written_through(tmp_path):
    from ptybench import results
    from ptybench.html_report import write_report
    from ptybench.sweep import run_points

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "r.jsonl"
    measurement = Measurement(dataset="farfield-64-256", engine="DM", iterations=1)
    claims = tmp_path / "r.jsonl.claims"
    claims.mkdir()
    (claims / results.measurement_key(measurement.identity())).symlink_to(victim)
    with pytest.raises(ValueError, match="is a symbolic link; refused"):
        run_points([measurement], out, progress=False, run=lambda m: pytest.fail("measured"))
    for planted in ("report.html.tmp", ".report.html.tmp"):
        (tmp_path / planted).symlink_to(victim)
    write_report(tmp_path / "report.html", [], [])
    results.write_json_atomically(tmp_path / "record.json", {"a": 1})
    assert victim.read_text() == "precious\n"
    assert (tmp_path / "report.html").read_text().startswith("<!DOCTYPE html>")


@pytest.fixture
def small_filesystem(tmp_path, request):
    """A 256 kB tmpfs, or the size given as the fixture's parameter (root only: skipped with the reason
    elsewhere)."""
    folder = tmp_path / "small"
    folder.mkdir()
    size = getattr(request, "param", "256k")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip() or done.returncode})")
    yield folder
    for _ in range(3):  # a bind mount a test put over it, then the tmpfs
        if subprocess.run(["umount", "-l", str(folder)], capture_output=True).returncode != 0:
            break


def record_of(number: int) -> dict:
    return {"dataset": "farfield-64-256", "engine": "DM", "backend": "numpy", "status": "ok", "repeat": number,
            "message": "x" * 2000}


def test_a_full_disk_leaves_no_torn_line_and_keeps_the_record(small_filesystem, tmp_path, monkeypatch):
    from ptybench import results

    out = small_filesystem / "r.jsonl"
    (small_filesystem / "filler").write_bytes(b"\0" * (256 * 1024 - 8192))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where a record goes when its folder is full
    stored = 0
    with pytest.raises(OSError, match=r"could not be appended .* it is kept in ") as caught:
        for number in range(100):
            results.append(out, record_of(number))
            stored += 1
    kept = str(caught.value).rsplit("kept in ", 1)[1]
    assert len(read_records(kept)) == 1 and read_records(kept)[0]["repeat"] == stored
    assert len(read_records(out)) == stored and out.read_bytes().endswith(b"\n")  # no torn line
    with pytest.raises(OSError, match="bytes free"):
        results.require_free_space(out)


def test_a_folder_turned_read_only_keeps_the_record(small_filesystem, tmp_path, monkeypatch):
    from ptybench import results

    out = small_filesystem / "r.jsonl"
    results.append(out, record_of(0))
    subprocess.run(["mount", "-o", "remount,ro", str(small_filesystem)], check=True)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(OSError, match="kept in") as caught:
        results.append(out, record_of(1))
    kept = str(caught.value).rsplit("kept in ", 1)[1]
    assert read_records(kept)[0]["repeat"] == 1 and len(read_records(out)) == 1


@pytest.mark.parametrize(("option", "value"), [("--account", "abc\n#SBATCH --wrap=rm"), ("--partition", "gpu; rm -rf"),
                                               ("--module", "module load x\nrm -rf ~")])
def test_a_job_header_value_cannot_add_a_line_to_the_script(tmp_path, capsys, option, value):
    from ptybench.cli import main

    out = tmp_path / "job.sh"
    assert main(["scale", "--emit-job", "slurm", "--nodes", "1", "--ranks-per-node", "2", "--dataset",
                 "farfield-64-256", "--engine", "DM", option, value, "--out", str(out)]) == 2
    assert option in capsys.readouterr().err and not out.exists()


def test_an_existing_job_script_is_not_overwritten_without_force(tmp_path, capsys):
    from ptybench.cli import main

    out = tmp_path / "job.sh"
    out.write_text("mine\n")
    command = ["scale", "--emit-job", "slurm", "--nodes", "1", "--ranks-per-node", "2", "--dataset",
               "farfield-64-256", "--engine", "DM", "--out", str(out)]
    assert main(command) == 2
    assert "pass --force" in capsys.readouterr().err and out.read_text() == "mine\n"
    assert main([*command, "--force"]) == 0 and out.read_text().startswith("#!/bin/bash")


def test_a_child_killed_while_the_oom_count_rose_is_recorded_as_oom(monkeypatch):
    """The kernel's OOM killer sends SIGKILL; the memory cgroup's oom_kill count is the evidence."""
    from ptybench import isolation, runner

    assert isolation.death_by_oom_killer(-signal.SIGKILL, 3, 4).startswith("killed by the kernel's out-of-memory")
    assert isolation.death_by_oom_killer(-signal.SIGKILL, 3, 3) is None  # killed by someone else
    assert isolation.death_by_oom_killer(1, 3, 4) is None
    counts = iter([5, 6])
    monkeypatch.setattr(runner, "oom_kill_count", lambda: next(counts))
    monkeypatch.setattr(runner, "run_child", lambda *args, **kwargs: isolation.ChildOutcome(-9, "", False, 1.0))
    record = run_isolated(Measurement(dataset="farfield-64-256", engine="DM", iterations=1))
    assert record["status"] == "oom" and "oom_kill count went from 5 to 6" in record["message"]


def test_a_memory_limit_below_the_prediction_is_refused_with_it(tmp_path, capsys):
    from ptybench.cli import main

    assert main(["run", "--dataset", "farfield-64-1024", "--engine", "DM", "--memory-limit", "20MB", "--out",
                 str(tmp_path / "r.jsonl")]) == 2
    assert re.search(r"--memory-limit: 20\.0 MB is below what the memory model predicts .* \(\d+\.\d MB",
                     capsys.readouterr().err)


@pytest.mark.parametrize("small_filesystem", ["16m"], indirect=True)
def test_a_folder_turned_read_only_during_a_point_names_where_its_record_was_kept(small_filesystem, tmp_path,
                                                                                  monkeypatch):
    from ptybench.sweep import run_points

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    measurement = Measurement(dataset="farfield-64-256", engine="DM", iterations=1)

    def measured_then_read_only(point):  # a read-only bind mount over the folder (the claim is open in it)
        subprocess.run(["mount", "--bind", str(small_filesystem), str(small_filesystem)], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(small_filesystem)], check=True)
        return {**point.identity(), "status": "ok", "message": ""}

    with pytest.raises(OSError, match=r"could not be appended .* kept in ") as caught:
        run_points([measurement], small_filesystem / "r.jsonl", progress=False, run=measured_then_read_only)
    assert read_records(str(caught.value).rsplit("kept in ", 1)[1])[0]["engine"] == "DM"
