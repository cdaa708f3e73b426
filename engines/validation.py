"""Validation of the seed API's arguments, at the boundary, with errors that name what is wrong.

``O, P = ptychography(diffraction_data, initial_object, initial_probe, scan_positions, mask, ...)``
takes diffraction (N, Y, X) uint32 (float32 accepted for processed data), object (M_o, A, B)
complex64, probe (M_p, Y, X) complex64, positions (N, 2) float32 (top-left corner of each frame in
object pixels, integer part used) and mask (Y, X) bool (True = measured).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InputError, InputTypeError

DIFFRACTION_DTYPES = (np.dtype(np.uint32), np.dtype(np.float32))
#: Frames checked per step when scanning float data for NaN/negatives (bounded temporary memory).
_CHECK_BLOCK = 256


@dataclass(frozen=True)
class ProblemShape:
    """Sizes of one reconstruction problem, as docs/algorithms.md names them."""

    n_frames: int
    frame_shape: tuple[int, int]
    object_modes: int
    object_shape: tuple[int, int]
    probe_modes: int


def frame_corners(scan_positions: np.ndarray) -> np.ndarray:
    """Whole-pixel frame corners of (sub-pixel) positions: the nearest pixel, so no frame is more than half a
    pixel from where it was measured. Every engine and the validation use this one rule (docs/algorithms.md,
    "Positions")."""
    return np.floor(np.asarray(scan_positions, dtype=np.float64) + 0.5).astype(np.int64)


def _describe(value: Any) -> str:
    dtype = getattr(value, "dtype", None)
    shape = getattr(value, "shape", None)
    if dtype is None or shape is None:
        return type(value).__name__
    return f"{dtype} array of shape {tuple(shape)}"


def _require_array(name: str, value: Any, expected: str) -> None:
    if not hasattr(value, "shape") or not hasattr(value, "dtype") or not hasattr(value, "__getitem__"):
        raise InputTypeError(f"{name}: expected {expected}, got {type(value).__name__}")


def _require_dtype(name: str, value: Any, dtypes: tuple[np.dtype, ...], expected: str) -> None:
    if np.dtype(value.dtype) not in dtypes:
        raise InputTypeError(f"{name}: expected {expected}, got {_describe(value)}")


def _require_ndim(name: str, value: Any, ndim: int, expected: str) -> None:
    if len(value.shape) != ndim:
        raise InputError(f"{name}: expected {expected}, got {_describe(value)}")


def _require_finite(name: str, value: np.ndarray) -> None:
    if not np.all(np.isfinite(value)):
        bad = int(np.count_nonzero(~np.isfinite(value)))
        raise InputError(f"{name}: expected finite values, got {bad} NaN/Inf entries")


def _check_diffraction_values(data: Any) -> None:
    """Float data must be finite and non-negative; checked block by block so big data stay on disk."""
    if np.dtype(data.dtype).kind == "u":
        return
    for start in range(0, data.shape[0], _CHECK_BLOCK):
        block = np.asarray(data[start:start + _CHECK_BLOCK])
        if not np.all(np.isfinite(block)):
            raise InputError(f"diffraction_data: expected finite intensities, found NaN/Inf in frames "
                             f"{start}..{start + len(block) - 1}")
        if np.any(block < 0):
            raise InputError(f"diffraction_data: expected non-negative intensities, found a negative "
                             f"value in frames {start}..{start + len(block) - 1}")


def validate_inputs(diffraction_data: Any, initial_object: Any, initial_probe: Any,
                    scan_positions: Any, mask: Any) -> ProblemShape:
    """Check the seed API's five arrays; raise TypeError (type/dtype) or ValueError (shape/value).

    Every message starts with the argument's name and says what was expected and what came.
    ``diffraction_data`` may be any array-like with NumPy slicing (an h5py dataset, a memmap), so
    extreme data need not be loaded to be checked.
    """
    _require_array("diffraction_data", diffraction_data, "an (N, Y, X) uint32 array")
    _require_dtype("diffraction_data", diffraction_data, DIFFRACTION_DTYPES,
                   "an (N, Y, X) uint32 (or float32) array")
    _require_ndim("diffraction_data", diffraction_data, 3, "an (N, Y, X) uint32 array")
    n_frames, height, width = (int(size) for size in diffraction_data.shape)
    if n_frames < 1 or height < 1 or width < 1:
        raise InputError(f"diffraction_data: expected N >= 1 frames of at least 1x1 pixels, "
                         f"got shape {tuple(diffraction_data.shape)}")

    for name, value in (("initial_object", initial_object), ("initial_probe", initial_probe)):
        _require_array(name, value, "a complex64 numpy array")
        if not isinstance(value, np.ndarray):
            raise InputTypeError(f"{name}: expected a complex64 numpy array, got {type(value).__name__}")
        _require_dtype(name, value, (np.dtype(np.complex64),), "a complex64 array")

    _require_ndim("initial_object", initial_object, 3, "a complex64 array of shape (M_o, A, B)")
    _require_ndim("initial_probe", initial_probe, 3,
                  f"a complex64 array of shape (M_p, {height}, {width})")
    object_modes, object_height, object_width = initial_object.shape
    probe_modes = initial_probe.shape[0]
    if object_modes < 1:
        raise InputError(f"initial_object: expected M_o >= 1 object modes, got shape {initial_object.shape}")
    if probe_modes < 1:
        raise InputError(f"initial_probe: expected M_p >= 1 probe modes, got shape {initial_probe.shape}")
    if initial_probe.shape[1:] != (height, width):
        raise InputError(f"initial_probe: expected shape (M_p, {height}, {width}) to match the frames, "
                         f"got {initial_probe.shape}")
    if object_height < height or object_width < width:
        raise InputError(f"initial_object: expected an object at least as large as a frame "
                         f"({height}, {width}), got shape {initial_object.shape}")
    _require_finite("initial_object", initial_object)
    _require_finite("initial_probe", initial_probe)
    for name, value in (("initial_object", initial_object), ("initial_probe", initial_probe)):
        if not np.any(value[0]):
            raise InputError(f"{name}: expected a non-zero first mode (the engines divide by its power), "
                             f"got all zeros")

    _require_array("scan_positions", scan_positions, "an (N, 2) float32 numpy array")
    _require_dtype("scan_positions", scan_positions, (np.dtype(np.float32),), "an (N, 2) float32 array")
    if tuple(scan_positions.shape) != (n_frames, 2):
        raise InputError(f"scan_positions: expected shape ({n_frames}, 2) (one (row, col) per frame), "
                         f"got {tuple(scan_positions.shape)}")
    _require_finite("scan_positions", scan_positions)
    corners = frame_corners(scan_positions)
    limits = np.array([object_height - height, object_width - width])
    outside = np.flatnonzero(np.any((corners < 0) | (corners > limits), axis=1))
    if outside.size:
        first = int(outside[0])
        raise InputError(
            f"scan_positions: expected every frame inside the object (0 <= row <= {limits[0]}, "
            f"0 <= col <= {limits[1]} for a {object_height}x{object_width} object and "
            f"{height}x{width} frames), got {outside.size} frames outside, first frame {first} at "
            f"{tuple(float(v) for v in scan_positions[first])}")

    _require_array("mask", mask, f"a ({height}, {width}) bool array")
    _require_dtype("mask", mask, (np.dtype(bool),), f"a ({height}, {width}) bool array")
    if tuple(mask.shape) != (height, width):
        raise InputError(f"mask: expected shape ({height}, {width}) to match the frames, got {tuple(mask.shape)}")
    if not np.any(mask):
        raise InputError("mask: expected at least one valid (True) pixel, got all False")

    _check_diffraction_values(diffraction_data)
    return ProblemShape(n_frames, (height, width), int(object_modes), (int(object_height),
                        int(object_width)), int(probe_modes))
