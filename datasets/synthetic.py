"""SyntheticDataset: lazily generated frames with known ground truth.

Frame j depends only on (seed, j): its Poisson noise comes from its own random stream, so
``frames(start, stop)`` equals the same slice of the full dataset and an MPI rank can make just its
own frames. Blocks are generated in chunks of bounded memory, never the whole dataset at once.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import Any

import numpy as np

from ptybench.engines.backends.numpy_backend import NumpyBackend
from ptybench.engines.errors import InputError
from ptybench.engines.metrics import illuminated_region
from ptybench.engines.propagation import make_propagator

from . import frame_cache
from .base import Dataset, GroundTruth
from .ground_truth import (
    FRAME_STREAM,
    GUESS_STREAM,
    MASK_STREAM,
    SCAN_STREAM,
    ground_truth_object,
    make_probe,
    stream,
)
from .scans import fermat_spiral, raster, to_frame_corners
from .spec import DatasetSpec

#: Complex temporaries per generation chunk are kept near this size.
CHUNK_BYTES = 64 * 2**20


#: Relative complex noise on the flat initial object (see SyntheticDataset.initial_object).
INITIAL_OBJECT_NOISE = 0.01


class SyntheticDataset(Dataset):
    """A dataset spec made real: positions, ground truth, mask, initial guesses and frames on demand."""

    def __init__(self, spec: DatasetSpec, threads: int | None = None) -> None:
        self.spec = spec
        self.threads = threads
        self._backend = NumpyBackend(threads=threads)

    def __repr__(self) -> str:
        return f"SyntheticDataset({self.spec.describe()})"

    # --- metadata (docs/design.md, "Registries") --------------------------------------------------
    n_frames = property(lambda self: self.spec.n_frames)
    frame_shape = property(lambda self: self.spec.frame_shape)
    energy_kev = property(lambda self: self.spec.energy_kev)
    distance_m = property(lambda self: self.spec.distance_m)
    detector_pixel_m = property(lambda self: self.spec.detector_pixel_m)
    object_pixel_m = property(lambda self: self.spec.object_pixel_m)

    # --- geometry and ground truth (cached: computed once per dataset) -------------------------
    @cached_property
    def _scan(self) -> tuple[np.ndarray, tuple[int, int]]:
        spec = self.spec
        if spec.scan == "fermat":
            points = fermat_spiral(spec.n_frames, spec.scan_step)
        else:
            points = raster(spec.n_frames, spec.scan_step, spec.jitter, stream(spec.seed, SCAN_STREAM))
        margin = max(2, min(spec.frame_shape) // 16)
        return to_frame_corners(points, spec.frame_shape, margin)

    @property
    def positions(self) -> np.ndarray:
        """(N, 2) float32 top-left frame corners (row, col) in object pixels."""
        return self._scan[0].copy()

    @property
    def object_shape(self) -> tuple[int, int]:
        return self._scan[1]

    @cached_property
    def illuminated_region(self) -> np.ndarray:
        """(A, B) bool: where the object error is measured (docs/algorithms.md, "Error metrics")."""
        return illuminated_region(self._probe, self._scan[0].astype(np.int64), self.object_shape)

    @cached_property
    def _object(self) -> np.ndarray:
        return ground_truth_object(self.object_shape, self.spec.object_modes, self.spec.seed,
                                   self.illuminated_region)

    @cached_property
    def _probe(self) -> np.ndarray:
        spec = self.spec
        return make_probe(spec.kind, spec.frame_shape, spec.probe_diameter_px, spec.photons, spec.probe_modes,
                          spec.seed, spec.pixel_fresnel_number, pupil_radius=spec.pupil_radius)

    def ground_truth(self) -> GroundTruth:
        return GroundTruth(self.ground_truth_object(), self.ground_truth_probe())

    def ground_truth_object(self) -> np.ndarray:
        return self._object.copy()

    def ground_truth_probe(self) -> np.ndarray:
        return self._probe.copy()

    @cached_property
    def mask(self) -> np.ndarray:
        """(Y, X) bool, True = measured: a central beam stop and dead pixels, as the spec asks."""
        spec = self.spec
        height, width = spec.frame_shape
        mask = np.ones(spec.frame_shape, dtype=bool)
        if spec.beamstop_radius > 0:
            rows, cols = np.ogrid[:height, :width]
            mask &= (rows - height // 2) ** 2 + (cols - width // 2) ** 2 > spec.beamstop_radius**2
        if spec.dead_pixel_fraction > 0:
            mask &= stream(spec.seed, MASK_STREAM).random(spec.frame_shape) >= spec.dead_pixel_fraction
        return mask

    # --- what a user would start from -------------------------------------------------------
    def initial_object(self, modes: int | None = None) -> np.ndarray:
        """Flat transmission for mode 0 with 1 % seeded complex noise; weak random modes after it.

        No knowledge of the sample. The noise matters: from an exactly flat object the model's far
        field is dark outside the probe's spectrum, and the first Fourier projection gives those
        pixels the phase of FFT rounding noise, so two FFT libraries (two backends) would follow
        different, equally valid paths. With it, backends agree to float rounding.
        """
        modes = self.spec.object_modes if modes is None else modes
        guess = np.ones((modes, *self.object_shape), dtype=np.complex64)
        rng = stream(self.spec.seed, GUESS_STREAM)
        noise = rng.standard_normal((2, *self.object_shape), dtype=np.float32)
        guess[0] += INITIAL_OBJECT_NOISE * (noise[0] + 1j * noise[1]) / np.sqrt(2)
        for mode in range(1, modes):
            guess[mode] = 0.1 * np.exp(2j * np.pi * rng.random(self.object_shape))
        return guess

    def initial_probe(self, modes: int | None = None) -> np.ndarray:
        """The nominal optics without the aberrations (far field) or the diffuser (near field).

        That is what a user can model before reconstructing; it is scaled to the incident flux.
        """
        spec = self.spec
        modes = spec.probe_modes if modes is None else modes
        return make_probe(spec.kind, spec.frame_shape, spec.probe_diameter_px, spec.photons, modes,
                          spec.seed, spec.pixel_fresnel_number, nominal=True, pupil_radius=spec.pupil_radius)

    def engine_parameters(self) -> dict[str, Any]:
        """The propagation parameters an engine needs to reconstruct this dataset."""
        if self.spec.kind == "nearfield":
            return {"propagation": "nearfield", "fresnel_number": self.spec.pixel_fresnel_number}
        return {"propagation": "farfield"}

    # --- frames --------------------------------------------------------------------------------
    def _check_range(self, start: int, stop: int | None) -> tuple[int, int]:
        n_frames = self.spec.n_frames
        stop = n_frames if stop is None else stop
        if not (0 <= start <= stop <= n_frames):
            raise InputError(f"frames: expected 0 <= start <= stop <= {n_frames}, got start={start}, stop={stop}")
        return start, stop

    def _chunk_frames(self) -> int:
        spec = self.spec
        per_frame = 8 * spec.frame_shape[0] * spec.frame_shape[1] * spec.probe_modes * spec.object_modes
        return max(1, CHUNK_BYTES // per_frame)

    def expected_intensities(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Noise-free model intensities Σ_kl |D(P_k O_l,j)|² (+ background), detector order, float32."""
        start, stop = self._check_range(start, stop)
        out = np.empty((stop - start, *self.spec.frame_shape), dtype=np.float32)
        step = self._chunk_frames()
        for chunk_start in range(start, stop, step):
            chunk_stop = min(chunk_start + step, stop)
            out[chunk_start - start:chunk_stop - start] = self._model_intensities(chunk_start, chunk_stop)
        return out

    def _model_intensities(self, start: int, stop: int) -> np.ndarray:
        spec = self.spec
        propagator = make_propagator(self._backend, spec.kind, spec.frame_shape, spec.pixel_fresnel_number)
        corners = self._scan[0][start:stop].astype(np.intp)
        views = self._backend.gather_views(self._object, corners[:, 0], corners[:, 1], spec.frame_shape)
        exit_waves = self._probe[None, :, None] * views[:, None, :]
        intensity = np.sum(np.abs(propagator.forward(exit_waves, overwrite=True)) ** 2, axis=(1, 2))
        intensity = propagator.to_detector(intensity)
        if spec.background > 0:
            intensity += spec.background
        return intensity.astype(np.float32)

    def frames(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """(stop − start, Y, X) uint32 Poisson counts; masked pixels read 0. A small dataset's frames are
        kept on disk once made in full (datasets/frame_cache.py) and read from there after."""
        start, stop = self._check_range(start, stop)
        y, x = self.spec.frame_shape
        if not frame_cache.fits(4 * self.spec.n_frames * y * x):
            return self._generate(start, stop)
        path = frame_cache.cache_path(self.spec, self._backend.fft.describe())
        kept = frame_cache.read(path, start, stop, (self.spec.n_frames, y, x))
        if kept is not None:
            return kept
        if (start, stop) != (0, self.spec.n_frames):
            return self._generate(start, stop)  # a rank's share: only a whole dataset is kept
        made = self._generate(start, stop)
        frame_cache.write(path, made)
        return made

    def _generate(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, *self.spec.frame_shape), dtype=np.uint32)
        outside_mask = ~self.mask
        step = self._chunk_frames()
        with ThreadPoolExecutor(max_workers=self._backend.threads) as pool:
            for chunk_start in range(start, stop, step):
                chunk_stop = min(chunk_start + step, stop)
                expected = self._model_intensities(chunk_start, chunk_stop)

                def sample(j: int, expected: np.ndarray = expected, chunk_start: int = chunk_start) -> None:
                    counts = stream(self.spec.seed, FRAME_STREAM, j).poisson(expected[j - chunk_start])
                    counts[outside_mask] = 0
                    out[j - start] = counts

                list(pool.map(sample, range(chunk_start, chunk_stop)))
        return out
