"""Property-based: whatever arrays, dtypes, values and metadata come in, the outcome is a result or one of
ptybench's error types with a message — never another exception, a hang or a silent NaN."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptybench.datasets import DatasetSpec, load, write_cxi
from ptybench.engines import ReconstructionDiverged, ptychography
from ptybench.engines.errors import InputError

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
DTYPES = [np.uint8, np.uint16, np.uint32, np.int32, np.int64, np.float32, np.float64, np.complex64, np.bool_]
SPECIAL = [0.0, 1.0, -1.0, np.nan, np.inf, -np.inf, 1e30, 2.0**32 - 1]


@st.composite
def problems(draw):
    n_frames = draw(st.integers(1, 5))
    frame = draw(st.sampled_from([8, 12, 16]))
    side = frame + draw(st.integers(-2, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))

    def rarely() -> bool:  # one case in five: most examples stay valid enough to reach the engines
        return draw(st.integers(0, 4)) == 0

    def array(shape, dtype, scale):
        values = rng.random(shape) * scale
        if values.size and rarely():  # plant a special value somewhere
            values.flat[draw(st.integers(0, values.size - 1))] = draw(st.sampled_from(SPECIAL))
        with np.errstate(invalid="ignore", over="ignore"):
            return values.astype(draw(st.sampled_from(DTYPES)) if rarely() else dtype)

    shapes = {"frames": (n_frames + (draw(st.integers(-1, 1)) if rarely() else 0), frame, frame)}
    arrays = {
        "diffraction_data": array(shapes["frames"], np.uint32, 100),
        "initial_object": array((1, side, side), np.complex64, 1) + np.complex64(0.5),
        "initial_probe": array((draw(st.integers(1, 2)), frame, frame), np.complex64, 1),
        "scan_positions": array((n_frames, 2), np.float32, max(side - frame, 0) + (3 if rarely() else 0)),
        "mask": rng.random((frame, frame)) > draw(st.sampled_from([0.0, 0.5, 1.0])),
    }
    engine = draw(st.sampled_from(["DM", "ePIE", "ML", "RAAR", "rPIE"]))
    return arrays, {"engine": engine, "iterations": 2, "probe_update_start": 0}


@SETTINGS
@given(problems())
def test_ptychography_returns_finite_arrays_or_raises_a_ptybench_error(problem):
    arrays, parameters = problem
    try:
        obj, probe = ptychography(**arrays, parameters=parameters)
    except (InputError, ReconstructionDiverged) as error:
        assert str(error)
        return
    assert np.all(np.isfinite(obj)) and np.all(np.isfinite(probe))


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    spec = DatasetSpec(kind="farfield", n_frames=6, frame_shape=(16, 16), photons=1e4, seed=1)
    return write_cxi(tmp_path_factory.mktemp("cxi") / "template.cxi", load(spec))


DETECTOR = "entry_1/instrument_1/detector_1"
FIELDS = [f"{DETECTOR}/distance", f"{DETECTOR}/x_pixel_size", "entry_1/instrument_1/source_1/energy"]


@st.composite
def files(draw):
    changes = {}
    for field in FIELDS:
        if draw(st.booleans()):
            changes[field] = draw(st.sampled_from([0.0, -1.0, np.nan, np.inf, 1e-30, 1e30, "text", 5.0]))
    translation_rows = draw(st.sampled_from([6, 5, 0]))
    translation_value = draw(st.sampled_from([None, np.nan, 1e30, "x"]))
    data_dtype = draw(st.sampled_from([None, np.complex64, np.int8, np.float64]))
    options = draw(st.sampled_from([{}, {"propagation": "nearfield"}, {"propagation": "sideways"},
                                    {"propagation": "nearfield", "focus_to_sample_m": -1},
                                    {"propagation": "nearfield", "beam": "parallel"}]))
    drop_group = draw(st.booleans())
    return changes, translation_rows, translation_value, data_dtype, options, drop_group


@SETTINGS
@given(files())
def test_the_cxi_loader_returns_a_dataset_or_raises_a_ptybench_error(template, tmp_path_factory, case):
    changes, rows, value, dtype, options, drop_group = case
    path = tmp_path_factory.mktemp("case") / "case.cxi"
    path.write_bytes(template.read_bytes())
    with h5py.File(path, "a") as f:
        for field, new in changes.items():
            del f[field]
            f[field] = new
        translation = f["entry_1/sample_1/geometry_1/translation"][()]
        del f["entry_1/sample_1/geometry_1/translation"]
        if value == "x":
            f["entry_1/sample_1/geometry_1/translation"] = np.array(["x"] * max(rows, 1), dtype="S1")
        else:
            translation = translation[:rows].copy()
            if value is not None and rows:
                translation[0, 0] = value
            f["entry_1/sample_1/geometry_1/translation"] = translation
        if dtype is not None:
            frames = f[f"{DETECTOR}/data"][()]
            del f[f"{DETECTOR}/data"]
            f[f"{DETECTOR}/data"] = frames.astype(dtype)
        if drop_group:
            del f["entry_1/ptybench"]
    try:
        with load(path, **options) as data:
            arrays = data.arrays()
            assert np.all(np.isfinite(arrays["scan_positions"]))
            assert data.object_pixel_m > 0 and np.isfinite(data.object_pixel_m)
    except InputError as error:
        assert str(error)
