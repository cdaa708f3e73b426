"""The Dataset interface: what the engines and the harness may ask of any dataset, synthetic or a file.

A dataset supplies a few primitives (frames on demand, positions, mask, initial guesses, the physical
geometry); this base class builds the rest from them once, so the harness never asks what kind of
dataset it holds: ``geometry()`` for sizes, ``arrays()`` for the seed API's five arguments,
``ground_truth()`` for the object error (None for measured data), ``describe()`` for records.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from .spec import DatasetSpec


@dataclass(frozen=True)
class DatasetGeometry:
    """Sizes and physical scales of a dataset: what the memory model, the runner and reports need."""

    n_frames: int
    frame_shape: tuple[int, int]
    object_shape: tuple[int, int]
    probe_modes: int
    object_modes: int
    propagation: str
    fresnel_number: float | None
    energy_kev: float
    distance_m: float
    detector_pixel_m: float
    object_pixel_m: float


class FrameSource:
    """Frames start..stop of a dataset as an array-like that reads on slicing: ``shape``, ``dtype`` and
    ``source[a:b]`` (a block of frames, made or read then). The engines read their input block by block, so
    a run given a FrameSource never holds the stored frames beside its own float32 copy: the 6 GB seed
    workload then needs 6 GB of frames, not 12."""

    def __init__(self, dataset: Dataset, start: int, stop: int) -> None:
        self.dataset, self.start, self.stop = dataset, start, stop
        self.shape = (stop - start, *(int(v) for v in dataset.frame_shape))
        self.dtype = dataset.frames(start, min(start + 1, stop)).dtype
        self.ndim = 3

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: slice) -> np.ndarray:
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError(f"FrameSource: expected a contiguous slice of frames, got {index!r}")
        first, last, _ = index.indices(self.shape[0])
        return self.dataset.frames(self.start + first, self.start + max(first, last))


@dataclass(frozen=True)
class GroundTruth:
    object: np.ndarray
    probe: np.ndarray


class Dataset(ABC):
    """Base of SyntheticDataset and CXIDataset. ``spec`` is the synthetic recipe, None for a file
    that was not made by ptybench."""

    spec: DatasetSpec | None = None

    # Every dataset is a context manager, so ``with load(name) as data`` works for a file (which closes its
    # handles) and a synthetic set (nothing to close) alike.
    def close(self) -> None:  # noqa: B027 - a no-op by default, not abstract: most datasets hold nothing open
        """Releases what the dataset holds open (nothing for a synthetic one)."""

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- primitives each dataset supplies ----------------------------------------------------------
    @property
    @abstractmethod
    def n_frames(self) -> int: ...

    @property
    @abstractmethod
    def frame_shape(self) -> tuple[int, int]: ...

    @property
    @abstractmethod
    def object_shape(self) -> tuple[int, int]: ...

    @property
    @abstractmethod
    def positions(self) -> np.ndarray:
        """(N, 2) float32 top-left frame corners (row, col) in object pixels."""

    @property
    @abstractmethod
    def mask(self) -> np.ndarray:
        """(Y, X) bool, True = measured."""

    @abstractmethod
    def frames(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Frames start..stop as stored (uint32 counts, or float32), made or read on demand."""

    @abstractmethod
    def initial_object(self, modes: int | None = None) -> np.ndarray: ...

    @abstractmethod
    def initial_probe(self, modes: int | None = None) -> np.ndarray: ...

    @abstractmethod
    def ground_truth(self) -> GroundTruth | None:
        """The true object and probe (synthetic data), or None (measured data)."""

    @abstractmethod
    def engine_parameters(self) -> dict[str, Any]:
        """The propagation keys an engine needs for these data."""

    energy_kev: float
    distance_m: float
    detector_pixel_m: float
    object_pixel_m: float

    # --- built from the primitives -------------------------------------------------------------------
    def geometry(self) -> DatasetGeometry:
        propagation = self.engine_parameters()
        return DatasetGeometry(
            n_frames=int(self.n_frames), frame_shape=tuple(int(s) for s in self.frame_shape),
            object_shape=tuple(int(s) for s in self.object_shape), probe_modes=int(self.probe_modes),
            object_modes=int(self.object_modes), propagation=propagation["propagation"],
            fresnel_number=propagation.get("fresnel_number"), energy_kev=float(self.energy_kev),
            distance_m=float(self.distance_m), detector_pixel_m=float(self.detector_pixel_m),
            object_pixel_m=float(self.object_pixel_m))

    @property
    def probe_modes(self) -> int:
        return int(self.spec.probe_modes) if self.spec is not None else int(self.initial_probe().shape[0])

    @property
    def object_modes(self) -> int:
        return int(self.spec.object_modes) if self.spec is not None else int(self.initial_object().shape[0])

    def arrays(self, probe_modes: int | None = None, object_modes: int | None = None,
               start: int = 0, stop: int | None = None, lazy: bool = False) -> dict[str, Any]:
        """The seed API's five arguments for frames start..stop (all by default), from the default
        initial guesses. Materialises those frames, or with ``lazy`` gives a FrameSource that reads them
        when the engines do."""
        stop = self.n_frames if stop is None else stop
        return {
            "diffraction_data": FrameSource(self, start, stop) if lazy else self.frames(start, stop),
            "initial_object": self.initial_object(object_modes),
            "initial_probe": self.initial_probe(probe_modes),
            "scan_positions": self.positions[start:stop],
            "mask": np.array(self.mask, dtype=bool),
        }

    def describe(self, name: str) -> dict[str, Any]:
        """The dataset fields of a record."""
        geometry = self.geometry()
        info: dict[str, Any] = {
            "name": name, "n_frames": geometry.n_frames, "height": geometry.frame_shape[0],
            "width": geometry.frame_shape[1], "propagation": geometry.propagation,
            "probe_modes": geometry.probe_modes, "object_modes": geometry.object_modes,
            "object_height": geometry.object_shape[0], "object_width": geometry.object_shape[1],
            "kind": self.spec.kind if self.spec is not None else "file",
        }
        if self.spec is not None:
            info.update(photons=self.spec.photons, seed=self.spec.seed)
        return info
