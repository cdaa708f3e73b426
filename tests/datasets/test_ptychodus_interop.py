"""ptychodus (the APS pipeline's CXI reader and writer) reads ptybench's files, ptybench runs on its files.

ptychodus is a 1 GB environment of its own (136 packages), so it is not installed for every test run:
`make check-ptychodus` builds it in .venv-ptychodus and runs this test there; elsewhere it skips.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ptybench.datasets import DatasetSpec, load, write_cxi
from ptybench.engines import Reconstruction

PTYCHODUS_PYTHON = os.environ.get("PTYBENCH_PTYCHODUS_PYTHON")
SIDE = Path(__file__).parents[1] / "interop" / "ptychodus_side.py"
SPEC = DatasetSpec(kind="farfield", n_frames=64, frame_shape=(64, 64), photons=1e6, beamstop_radius=2.0, seed=3)

pytestmark = pytest.mark.skipif(not PTYCHODUS_PYTHON, reason="ptychodus not installed here: `make check-ptychodus`")


def test_ptychodus_reads_ptybench_files_and_ptybench_runs_on_ptychodus_files(tmp_path):
    data = load(SPEC)
    source = write_cxi(tmp_path / "ptybench.cxi", data)
    translation = np.zeros((SPEC.n_frames, 3))
    translation[:, 0] = data.positions[:, 1] * data.object_pixel_m
    translation[:, 1] = data.positions[:, 0] * data.object_pixel_m
    np.savez(tmp_path / "expected.npz", frames=data.frames(), translation=translation, probe=data.initial_probe())
    done = subprocess.run([PTYCHODUS_PYTHON, str(SIDE), str(source), str(tmp_path / "expected.npz"),
                           str(tmp_path / "ptychodus")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["frames_equal"] and report["probe_equal"] and report["n_positions"] == SPEC.n_frames
    assert report["distance_m"] == pytest.approx(data.distance_m)
    assert report["bad_pixels"] == int((~data.mask).sum())

    # ptychodus splits its output: diffraction in one file, positions and probe in the other.
    pair = f"{tmp_path / 'ptychodus' / 'diffraction.cxi'},{tmp_path / 'ptychodus' / 'product.cxi'}"
    with load(pair) as theirs:
        np.testing.assert_array_equal(theirs.frames(), data.frames())
        np.testing.assert_allclose(theirs.positions, data.positions - data.positions.min(axis=0), atol=0.51)
        np.testing.assert_array_equal(theirs.initial_probe(), data.initial_probe())
        np.testing.assert_array_equal(theirs.mask, data.mask)
        assert theirs.describe("pair")["initial_probe"] == "file"
        result = Reconstruction(**theirs.arrays(), parameters={"engine": "DM", "iterations": 5}).run()
    assert 0 < result.final.r_factor < 1
