"""Scan geometry: which propagation regime a measured file is in, and its object pixel and Fresnel number.

A CXI file stores the detector distance, pixel size and energy, but not the regime. The same numbers mean
very different object pixels:

- far field: the object pixel is λz/(X·Δ) (the reciprocal of the detector's angular extent);
- near field, parallel beam: the object pixel is the detector pixel Δ, the Fresnel number of one pixel is
  F = Δ²/(λz);
- near field, cone beam (a sample z₁ downstream of a focus, detector z₂ further on): by the Fresnel scaling
  theorem the measurement equals a parallel-beam one with magnification M = (z₁ + z₂)/z₁, pixel Δ/M and
  distance z₂/M, so F = (Δ/M)²/(λ·z₂/M) = Δ²/(M·λ·z₂).

Reading a near-field file with far-field numbers gives a scan 10-100× too wide and no error, so a regime
that the file does not state and the user does not give is an error (``GeometryError``), never a guess.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from ptybench.engines.errors import InputError

PROPAGATIONS = ("farfield", "nearfield")
BEAMS = ("parallel", "cone")
#: Options a user may give for a file (``load(path, **options)`` or ``path.cxi?key=value&key=value``).
GEOMETRY_OPTIONS = ("propagation", "focus_to_sample_m", "beam")
#: A stored image's pixel within this fraction of the far-field pixel says the file is far field.
PIXEL_MATCH = 0.05


class GeometryError(InputError):
    """The regime or geometry of a file cannot be told, or what was given contradicts the file."""


@dataclass(frozen=True)
class ScanGeometry:
    """What a reconstruction of measured data needs: the regime, the object pixel (positions in pixels
    follow from it) and, in the near field, the Fresnel number of one object pixel."""

    propagation: str
    object_pixel_m: float
    fresnel_number: float | None
    beam: str | None
    magnification: float
    effective_distance_m: float
    source: str
    focus_to_sample_m: float | None = None

    def engine_parameters(self) -> dict[str, Any]:
        if self.propagation == "nearfield":
            return {"propagation": "nearfield", "fresnel_number": self.fresnel_number}
        return {"propagation": "farfield"}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def farfield_geometry(wavelength_m: float, distance_m: float, pixel_m: float, width: int,
                      source: str) -> ScanGeometry:
    return ScanGeometry("farfield", wavelength_m * distance_m / (width * pixel_m), None, None, 1.0, distance_m,
                        source)


def nearfield_geometry(wavelength_m: float, distance_m: float, pixel_m: float, focus_to_sample_m: float | None,
                       source: str) -> ScanGeometry:
    """Parallel beam when ``focus_to_sample_m`` is None, else a cone beam with Fresnel scaling."""
    magnification = 1.0 if focus_to_sample_m is None else (focus_to_sample_m + distance_m) / focus_to_sample_m
    effective_distance = distance_m / magnification
    pixel = pixel_m / magnification
    return ScanGeometry("nearfield", pixel, pixel**2 / (wavelength_m * effective_distance),
                        "parallel" if focus_to_sample_m is None else "cone", magnification, effective_distance,
                        source, focus_to_sample_m)


def parse_options(options: dict[str, Any]) -> dict[str, Any]:
    """Checked geometry options: unknown keys, regimes and non-positive distances are errors naming them."""
    unknown = sorted(set(options) - set(GEOMETRY_OPTIONS))
    if unknown:
        raise GeometryError(f"dataset options: unknown {unknown}; expected some of {list(GEOMETRY_OPTIONS)}")
    parsed = dict(options)
    if parsed.get("propagation") is not None and parsed["propagation"] not in PROPAGATIONS:
        raise GeometryError(f"propagation: expected one of {list(PROPAGATIONS)}, got {parsed['propagation']!r}")
    if parsed.get("beam") is not None and parsed["beam"] not in BEAMS:
        raise GeometryError(f"beam: expected one of {list(BEAMS)}, got {parsed['beam']!r}")
    if parsed.get("focus_to_sample_m") is not None:
        parsed["focus_to_sample_m"] = positive_length("focus_to_sample_m", parsed["focus_to_sample_m"])
        if parsed.get("beam") == "parallel":
            raise GeometryError("beam: 'parallel' contradicts focus_to_sample_m (a cone beam); give one of them")
        parsed["beam"] = "cone"
    if parsed.get("beam") == "cone" and parsed.get("focus_to_sample_m") is None:
        raise GeometryError("focus_to_sample_m: a cone beam needs the focus-to-sample distance in metres, got none")
    if parsed.get("beam") is not None:
        if parsed.get("propagation") == "farfield":
            raise GeometryError(f"beam: {parsed['beam']!r} describes near-field data, but propagation is 'farfield'")
        parsed["propagation"] = "nearfield"
    return parsed


def positive_length(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise GeometryError(f"{name}: expected a positive length in metres, got {value!r}") from None
    if not (math.isfinite(number) and number > 0):
        raise GeometryError(f"{name}: expected a positive length in metres, got {value!r}")
    return number


def split_options(text: str) -> tuple[str, dict[str, str]]:
    """``scan.cxi?propagation=nearfield&focus_to_sample_m=3.65e-3`` -> path and options (the CLI's way to
    give a file's geometry; the string travels unchanged into records, so a record says what was assumed)."""
    if "?" not in text:
        return text, {}
    path, _, query = text.partition("?")
    options = {}
    for item in filter(None, query.split("&")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise GeometryError(f"dataset options: expected key=value pairs after '?', got {item!r} in {text!r}")
        options[key.strip()] = value.strip()
    return path, options
