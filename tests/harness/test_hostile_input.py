"""Untrusted folders and files (issue: reliability and security): a module planted where the user runs is not
imported by the measuring child; HDF5 indirection to other files is refused unless asked for; data that are
not intensities are refused."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from ptybench.datasets import DatasetSpec, load, write_cxi
from ptybench.measurement import Measurement
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
