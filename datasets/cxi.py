"""CXI (HDF5) files: the standard paths other ptychography codes read, plus a ptybench group.

Standard CXI 1.6 paths written and read:
  /cxi_version, /entry_1/instrument_1/source_1/energy (J),
  /entry_1/instrument_1/detector_1/{data, distance (m), x_pixel_size, y_pixel_size (m), mask},
  /entry_1/sample_1/geometry_1/translation (N, 3) in metres (x = column, y = row, z = 0),
  /entry_1/data_1/{data, translation} as links.
The CXI mask is a bit field with 0 = good pixel; ptybench's mask is True = measured.
/entry_1/ptybench keeps what makes a round trip exact: pixel positions, the dataset spec,
ground truth, initial guesses and the propagation.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .base import Dataset, GroundTruth
from .spec import HC_KEV_M, DatasetSpec

CXI_VERSION = 160
JOULES_PER_KEV = 1.602176634e-16
DETECTOR = "entry_1/instrument_1/detector_1"
TRANSLATION = "entry_1/sample_1/geometry_1/translation"
EXTRA = "entry_1/ptybench"
WRITE_BLOCK_BYTES = 256 * 2**20


def write_cxi(path: str | os.PathLike, dataset: Dataset) -> Path:
    """Write a dataset (SyntheticDataset or CXIDataset) to ``path`` block by block, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    spec = dataset.spec
    n_frames, frame_shape = dataset.n_frames, dataset.frame_shape
    positions = dataset.positions
    with h5py.File(partial, "w") as f:
        f["cxi_version"] = CXI_VERSION
        f["entry_1/instrument_1/source_1/energy"] = dataset.energy_kev * JOULES_PER_KEV
        detector = f.require_group(DETECTOR)
        data = detector.create_dataset("data", shape=(n_frames, *frame_shape), dtype=np.uint32,
                                       chunks=(1, *frame_shape))
        block = max(1, WRITE_BLOCK_BYTES // (4 * frame_shape[0] * frame_shape[1]))
        for start in range(0, n_frames, block):
            stop = min(start + block, n_frames)
            data[start:stop] = dataset.frames(start, stop)
        detector["distance"] = dataset.distance_m
        detector["x_pixel_size"] = dataset.detector_pixel_m
        detector["y_pixel_size"] = dataset.detector_pixel_m
        detector["mask"] = np.where(dataset.mask, 0, 1).astype(np.uint32)
        translation = np.zeros((n_frames, 3))
        translation[:, 0] = positions[:, 1] * dataset.object_pixel_m
        translation[:, 1] = positions[:, 0] * dataset.object_pixel_m
        f[TRANSLATION] = translation
        f["entry_1/data_1/data"] = h5py.SoftLink(f"/{DETECTOR}/data")
        f["entry_1/data_1/translation"] = h5py.SoftLink(f"/{TRANSLATION}")
        extra = f.require_group(EXTRA)
        extra["positions_pixels"] = positions
        extra.attrs["object_pixel_m"] = dataset.object_pixel_m
        for key, value in dataset.engine_parameters().items():
            extra.attrs[key] = value
        if spec is not None:
            extra.attrs["spec"] = json.dumps(spec.to_dict())
        extra["initial/object"] = dataset.initial_object()
        extra["initial/probe"] = dataset.initial_probe()
        truth = dataset.ground_truth()
        if truth is not None:
            extra["ground_truth/object"] = truth.object
            extra["ground_truth/probe"] = truth.probe
    os.replace(partial, path)
    return path


class CXIDataset(Dataset):
    """A CXI file read lazily: frames come from disk block by block, like a SyntheticDataset's.

    Files from other codes (no ptybench group) get positions from the translations and the far-field
    pixel size λz/(X·pixel), a flat initial object and a probe back-propagated from the mean pattern.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"dataset: expected a CXI file, {str(self.path)!r} does not exist")
        self._file = h5py.File(self.path, "r")
        if DETECTOR + "/data" not in self._file:
            self._file.close()
            raise ValueError(f"dataset: {str(self.path)!r} has no /{DETECTOR}/data, so it is not a CXI data file")
        self._data = self._file[DETECTOR + "/data"]
        self._extra = self._file.get(EXTRA)
        attrs = self._extra.attrs if self._extra is not None else {}
        self.spec = DatasetSpec.from_dict(json.loads(attrs["spec"])) if "spec" in attrs else None
        self._propagation = str(attrs.get("propagation", "farfield"))
        self._fresnel_number = float(attrs["fresnel_number"]) if "fresnel_number" in attrs else None

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> CXIDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CXIDataset({str(self.path)!r}, {self.n_frames} frames of {self.frame_shape})"

    # --- metadata ------------------------------------------------------------------------
    @property
    def n_frames(self) -> int:
        return int(self._data.shape[0])

    @property
    def frame_shape(self) -> tuple[int, int]:
        return (int(self._data.shape[1]), int(self._data.shape[2]))

    @property
    def energy_kev(self) -> float:
        return float(self._file["entry_1/instrument_1/source_1/energy"][()]) / JOULES_PER_KEV

    @property
    def distance_m(self) -> float:
        return float(self._file[DETECTOR + "/distance"][()])

    @property
    def detector_pixel_m(self) -> float:
        return float(self._file[DETECTOR + "/x_pixel_size"][()])

    @property
    def object_pixel_m(self) -> float:
        if self._extra is not None and "object_pixel_m" in self._extra.attrs:
            return float(self._extra.attrs["object_pixel_m"])
        wavelength = HC_KEV_M / self.energy_kev
        return wavelength * self.distance_m / (self.frame_shape[1] * self.detector_pixel_m)

    def engine_parameters(self) -> dict[str, Any]:
        if self._propagation == "nearfield":
            return {"propagation": "nearfield", "fresnel_number": self._fresnel_number}
        return {"propagation": "farfield"}

    # --- arrays ----------------------------------------------------------------------------
    @property
    def positions(self) -> np.ndarray:
        if self._extra is not None and "positions_pixels" in self._extra:
            return np.asarray(self._extra["positions_pixels"], dtype=np.float32)
        translation = np.asarray(self._file[TRANSLATION])
        pixels = np.stack([translation[:, 1], translation[:, 0]], axis=1) / self.object_pixel_m
        return np.round(pixels - pixels.min(axis=0)).astype(np.float32)

    @property
    def mask(self) -> np.ndarray:
        if DETECTOR + "/mask" not in self._file:
            return np.ones(self.frame_shape, dtype=bool)
        return np.asarray(self._file[DETECTOR + "/mask"]) == 0

    def frames(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        stop = self.n_frames if stop is None else stop
        if not (0 <= start <= stop <= self.n_frames):
            raise ValueError(f"frames: expected 0 <= start <= stop <= {self.n_frames}, got {start}, {stop}")
        block = self._data[start:stop]
        return block if block.dtype == np.uint32 else block.astype(np.float32)

    def ground_truth(self) -> GroundTruth | None:
        if self._extra is None or "ground_truth" not in self._extra:
            return None
        truth = self._extra["ground_truth"]
        return GroundTruth(np.asarray(truth["object"]), np.asarray(truth["probe"]))

    @property
    def object_shape(self) -> tuple[int, int]:
        if self._extra is not None and "initial/object" in self._extra:
            return tuple(int(s) for s in self._extra["initial/object"].shape[1:])
        extent = self.positions.max(axis=0).astype(int)
        return (int(extent[0]) + self.frame_shape[0], int(extent[1]) + self.frame_shape[1])

    def initial_object(self, modes: int | None = None) -> np.ndarray:
        if self._extra is not None and "initial/object" in self._extra and modes is None:
            return np.asarray(self._extra["initial/object"])
        return np.ones((modes or 1, *self.object_shape), dtype=np.complex64)

    def initial_probe(self, modes: int | None = None) -> np.ndarray:
        if self._extra is not None and "initial/probe" in self._extra and modes is None:
            return np.asarray(self._extra["initial/probe"])
        return probe_from_mean_pattern(self.frames(0, min(self.n_frames, 256)), self.mask, modes or 1)


def probe_from_mean_pattern(frames: np.ndarray, mask: np.ndarray, modes: int) -> np.ndarray:
    """The classic guess for data without one: D⁻¹ of √(mean pattern), flat phase, weaker extra modes."""
    mean = np.where(mask, frames.astype(np.float64).mean(axis=0), 0.0)
    probe = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(np.sqrt(mean)), norm="ortho"))
    result = np.empty((modes, *probe.shape), dtype=np.complex64)
    for mode in range(modes):
        result[mode] = probe * (0.1 if mode else 1.0)
    return result


def open_cxi(path: str | os.PathLike) -> CXIDataset:
    return CXIDataset(path)
