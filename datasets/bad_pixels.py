"""Bad pixels found in the data, for files that carry no mask.

Two kinds a detector produces and a reconstruction must not fit:

- dead: zero in every frame where the pixel's neighbours see light (a working pixel with a neighbourhood
  mean of μ counts reads 0 in all N frames with chance e^(−μN); a dark fringe of a near-field probe stays
  on one pixel for the whole scan, so the threshold is μN = 50, not the 14 that chance alone allows);
- hot: a mean more than ``HOT_FACTOR`` times the largest mean among its eight neighbours (a far-field
  central speckle spans several pixels, so a real peak has bright neighbours).

Saturated pixels (the integer type's largest value) are masked by the engines for any input
(engines/problem.py), so they are not repeated here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: A pixel dark in every frame is dead when its neighbours' mean counts, summed over the frames, exceed this.
DEAD_EXPECTED_COUNTS = 50.0
#: A pixel is hot when its mean exceeds this many times the brightest neighbour's mean (and one count).
HOT_FACTOR = 100.0


@dataclass(frozen=True)
class BadPixels:
    dead: np.ndarray
    hot: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """True = measured (ptybench's convention)."""
        return ~(self.dead | self.hot)

    def describe(self) -> str:
        return f"estimated from the data: {int(self.dead.sum())} dead, {int(self.hot.sum())} hot pixels masked"


def find_bad_pixels(frames: np.ndarray) -> BadPixels:
    """Dead and hot pixels of (N, Y, X) frames (a sample of the scan is enough)."""
    frames = np.asarray(frames)
    mean = frames.astype(np.float64).mean(axis=0)
    footprint = np.ones((3, 3), dtype=bool)
    footprint[1, 1] = False
    neighbours_sum = ndimage.convolve(mean, footprint.astype(np.float64), mode="nearest")
    neighbours_mean = neighbours_sum / footprint.sum()
    never_lit = ~np.any(frames > 0, axis=0)
    dead = never_lit & (neighbours_mean * frames.shape[0] > DEAD_EXPECTED_COUNTS)
    brightest_neighbour = ndimage.maximum_filter(mean, footprint=footprint, mode="nearest")
    hot = mean > HOT_FACTOR * np.maximum(brightest_neighbour, 1.0)
    return BadPixels(dead, hot)
