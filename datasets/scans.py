"""Scan trajectories: Fermat spiral (default: no raster-grid ambiguity) and jittered raster.

Positions are the top-left corner of each frame in object pixels (row, col), whole numbers stored as
float32: the engines use the integer part (docs/algorithms.md), so the stored positions are exactly the
ones that made the data.
"""

from __future__ import annotations

import math

import numpy as np

GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))


def fermat_spiral(n_points: int, step: float) -> np.ndarray:
    """Centred (row, col) points r_j = c√j, θ_j = j·golden angle; c set so neighbours sit ~step apart.

    n points fill a disc of area π c² n, so each point owns π c² and the spacing is ≈ √π·c.
    """
    index = np.arange(n_points, dtype=np.float64)
    c = step / math.sqrt(math.pi)
    radius = c * np.sqrt(index)
    angle = index * GOLDEN_ANGLE
    return np.stack([radius * np.sin(angle), radius * np.cos(angle)], axis=1)


def raster(n_points: int, step: float, jitter: float, rng: np.random.Generator) -> np.ndarray:
    """Row-by-row grid of n points (nearly square), each moved by Gaussian jitter of `jitter` pixels."""
    columns = math.ceil(math.sqrt(n_points))
    index = np.arange(n_points)
    points = np.stack([(index // columns) * step, (index % columns) * step], axis=1).astype(np.float64)
    points -= points.mean(axis=0)
    if jitter > 0:
        points += rng.normal(scale=jitter, size=points.shape)
    return points


def to_frame_corners(points: np.ndarray, frame_shape: tuple[int, int], margin: int) -> tuple[np.ndarray,
                                                                                             tuple[int, int]]:
    """Shift centred points to top-left frame corners >= margin; return them and the object shape.

    The object is the scan extent plus one frame plus ``margin`` on every side.
    """
    corners = np.round(points - points.min(axis=0)).astype(np.int64) + margin
    extent = corners.max(axis=0)
    object_shape = (int(extent[0] + frame_shape[0] + margin), int(extent[1] + frame_shape[1] + margin))
    return corners.astype(np.float32), object_shape
