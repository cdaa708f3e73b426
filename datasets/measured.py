"""Measured scans shipped with the package: real data beside the synthetic catalogue.

Each entry is a CXI file in ``datasets/data/`` plus what the file does not store (its geometry), and the
attribution its licence asks for; ``ptybench datasets list`` and ``info`` show both.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class MeasuredEntry:
    filename: str
    geometry: dict[str, Any]
    note: str
    attribution: str
    licence: str
    extra: dict[str, Any] = field(default_factory=dict)


ENTRIES = {
    "p25-nearfield": MeasuredEntry(
        filename="p25-nearfield.cxi",
        geometry={"propagation": "nearfield", "focus_to_sample_m": 3.65e-3},
        note="measured: PETRA III P25 near-field scan, 200 x 100², cone beam (M ≈ 308)",
        attribution="PETRA III (DESY) beamline P25; N. Samadi, A. Karabay, P. Sheng, C. Qiu, K. Spiers, W. Xu, "
                    "A. Levitan, M. Guizar-Sicairos; Zenodo 10.5281/zenodo.17899482 (via the cdtools examples)",
        licence="CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/)"),
}
NAMES = tuple(ENTRIES)


def path_of(name: str) -> Path:
    return Path(str(resources.files("ptybench.datasets") / "data" / ENTRIES[name].filename))


def load_measured(name: str, **geometry: Any) -> Any:
    """The entry's file with its known geometry (options given here override it)."""
    from .cxi import open_cxi

    data = open_cxi(path_of(name), **{**ENTRIES[name].geometry, **geometry})
    data.catalogue_name = name
    if not geometry:
        data.scan_geometry = dataclasses.replace(data.scan_geometry, source=f"catalogue entry {name}")
    return data
