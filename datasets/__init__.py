"""Synthetic far- and near-field datasets with known ground truth, the catalogue, and CXI files.

    >>> from ptybench.datasets import load
    >>> data = load("farfield-64-256")          # a catalogue name or a .cxi path
    >>> block = data.frames(0, 64)              # uint32 (64, 64, 64), made on demand
"""

from __future__ import annotations

import os
from pathlib import Path

from ptybench.engines.validation import ProblemShape, validate_inputs

from . import measured
from .base import Dataset, DatasetGeometry, GroundTruth
from .cache import cache_dir
from .catalogue import DETECTOR_LADDER, FRAME_LADDER, describe, get_spec, ladder, names
from .cxi import CXIDataset, open_cxi, write_cxi
from .geometry import GeometryError, ScanGeometry, split_options
from .spec import DatasetSpec, human_bytes
from .synthetic import SyntheticDataset


def load(name_or_path: str | os.PathLike | DatasetSpec, threads: int | None = None, **geometry: str | float) -> Dataset:
    """A dataset from a catalogue name, a DatasetSpec, a path to a CXI file, or comma-separated paths of
    files that complete each other ("data.cxi,positions.h5": each field from the first file that has it).

    A file's geometry, where the file does not state it, comes as keywords or after a '?'
    ("scan.cxi?propagation=nearfield&focus_to_sample_m=0.00365"; datasets/geometry.py)."""
    if isinstance(name_or_path, DatasetSpec):
        return SyntheticDataset(name_or_path, threads=threads)
    text, options = split_options(str(name_or_path))
    options = {**options, **geometry}
    external = {"external": options.pop("external")} if "external" in options else {}
    if text in measured.NAMES:
        return measured.load_measured(text, **options, **external)
    parts = [text] if Path(text).is_file() else [part.strip() for part in text.split(",")]
    if all(part.endswith((".cxi", ".h5", ".hdf5", ".nxs")) or Path(part).is_file() for part in parts):
        return open_cxi(*parts, **options, **external)
    if options:
        raise GeometryError(f"dataset: {text!r} is a synthetic dataset, whose geometry is its spec; options "
                            f"{sorted(options)} are for files")
    return SyntheticDataset(get_spec(text), threads=threads)


def default_cxi_path(name: str) -> Path:
    """Where `ptybench datasets make NAME` puts a file when no --out is given."""
    return cache_dir() / f"{name}.cxi"


__all__ = [
    "DETECTOR_LADDER",
    "FRAME_LADDER",
    "CXIDataset",
    "Dataset",
    "DatasetGeometry",
    "DatasetSpec",
    "GeometryError",
    "GroundTruth",
    "ProblemShape",
    "ScanGeometry",
    "SyntheticDataset",
    "cache_dir",
    "default_cxi_path",
    "describe",
    "get_spec",
    "human_bytes",
    "ladder",
    "load",
    "names",
    "open_cxi",
    "validate_inputs",
    "write_cxi",
]
