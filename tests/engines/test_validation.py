"""validate_inputs: every bad argument gets a TypeError/ValueError naming it, expected and actual."""

from __future__ import annotations

import numpy as np
import pytest

from ptybench.datasets import validate_inputs


@pytest.fixture
def good():
    rng = np.random.default_rng(0)
    return {
        "diffraction_data": rng.poisson(5.0, (4, 16, 16)).astype(np.uint32),
        "initial_object": np.ones((1, 40, 40), dtype=np.complex64),
        "initial_probe": np.ones((1, 16, 16), dtype=np.complex64),
        "scan_positions": np.array([[0, 0], [0, 24], [24, 0], [24, 24]], dtype=np.float32),
        "mask": np.ones((16, 16), dtype=bool),
    }


def test_good_inputs_give_the_problem_shape(good):
    shape = validate_inputs(**good)
    assert (shape.n_frames, shape.frame_shape, shape.object_shape) == (4, (16, 16), (40, 40))
    assert (shape.object_modes, shape.probe_modes) == (1, 1)


def test_float32_intensities_are_accepted(good):
    good["diffraction_data"] = good["diffraction_data"].astype(np.float32)
    assert validate_inputs(**good).n_frames == 4


def _replace(good, name, value):
    return {**good, name: value}


CASES = [
    # (argument, bad value factory, error type, words the message must contain)
    ("diffraction_data", lambda g: g["diffraction_data"].tolist(), TypeError, ["uint32", "list"]),
    ("diffraction_data", lambda g: g["diffraction_data"].astype(np.float64), TypeError, ["uint32", "float64"]),
    ("diffraction_data", lambda g: g["diffraction_data"][0], ValueError, ["(N, Y, X)", "(16, 16)"]),
    ("diffraction_data", lambda g: g["diffraction_data"][:0], ValueError, ["N >= 1", "(0, 16, 16)"]),
    ("diffraction_data", lambda g: np.where(np.eye(16, dtype=bool), np.nan, 1.0)[None].repeat(4, 0)
     .astype(np.float32), ValueError, ["finite", "NaN"]),
    ("diffraction_data", lambda g: -np.ones((4, 16, 16), np.float32), ValueError, ["non-negative"]),
    ("initial_object", lambda g: g["initial_object"].astype(np.complex128), TypeError, ["complex64", "complex128"]),
    ("initial_object", lambda g: g["initial_object"][0], ValueError, ["(M_o, A, B)", "(40, 40)"]),
    ("initial_object", lambda g: g["initial_object"][:0], ValueError, ["M_o >= 1"]),
    ("initial_object", lambda g: np.ones((1, 10, 10), np.complex64), ValueError, ["at least as large"]),
    ("initial_object", lambda g: np.full((1, 40, 40), np.inf, np.complex64), ValueError, ["finite"]),
    ("initial_probe", lambda g: g["initial_probe"].real.copy(), TypeError, ["complex64", "float32"]),
    ("initial_probe", lambda g: np.ones((1, 8, 16), np.complex64), ValueError, ["(M_p, 16, 16)", "(1, 8, 16)"]),
    ("initial_probe", lambda g: g["initial_probe"][:0], ValueError, ["M_p >= 1"]),
    ("scan_positions", lambda g: g["scan_positions"].astype(np.float64), TypeError, ["float32", "float64"]),
    ("scan_positions", lambda g: g["scan_positions"][:3], ValueError, ["(4, 2)", "(3, 2)"]),
    ("scan_positions", lambda g: g["scan_positions"] + np.float32(1), ValueError, ["inside the object", "frame 1"]),
    ("scan_positions", lambda g: g["scan_positions"] - np.float32(1), ValueError, ["inside the object", "frame 0"]),
    ("mask", lambda g: g["mask"].astype(np.uint8), TypeError, ["bool", "uint8"]),
    ("mask", lambda g: np.ones((16, 8), bool), ValueError, ["(16, 16)", "(16, 8)"]),
    ("mask", lambda g: np.zeros((16, 16), bool), ValueError, ["all False"]),
]


@pytest.mark.parametrize(("name", "make_bad", "error", "words"), CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_bad_input_is_named_with_expected_and_actual(good, name, make_bad, error, words):
    with pytest.raises(error) as info:
        validate_inputs(**_replace(good, name, make_bad(good)))
    message = str(info.value)
    assert message.startswith(f"{name}:")
    assert "expected" in message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize(("change", "message"), [
    (lambda a: {"diffraction_data": np.zeros_like(a["diffraction_data"])}, "diffraction_data: expected photons"),
    (lambda a: {"initial_object": np.zeros_like(a["initial_object"])}, "initial_object: expected a non-zero"),
    (lambda a: {"initial_probe": np.zeros_like(a["initial_probe"])}, "initial_probe: expected a non-zero"),
    (lambda a: {"mask": np.pad(np.ones((2, 2), bool), ((0, 30), (0, 30)))}, "initial_probe: expected detector-side"),
], ids=["all-zero data", "all-zero object", "all-zero probe", "probe power only on masked pixels"])
def test_degenerate_inputs_are_input_errors_before_any_iteration(tiny_arrays, change, message):
    """Not "the object became NaN at iteration 0", not a silent zero object: the argument and why."""
    from ptybench.engines import Reconstruction

    arrays = {**tiny_arrays, **change(tiny_arrays)}
    with pytest.raises(ValueError, match=message):
        Reconstruction(**arrays, parameters={"engine": "DM", "iterations": 1})


@pytest.mark.parametrize("name", ["true_object", "true_probe"])
def test_ground_truth_of_the_wrong_shape_names_the_argument(tiny, tiny_arrays, name):
    from ptybench.engines import Reconstruction

    truth = {"true_object": tiny.ground_truth_object(), "true_probe": tiny.ground_truth_probe(),
             name: np.ones((1, 7, 7), np.complex64)}
    with pytest.raises(ValueError, match=f"{name}: expected an array of shape"):
        Reconstruction(**tiny_arrays, parameters={"iterations": 1}, **truth)
