"""DatasetSpec: the few numbers that define a synthetic ptychography dataset, and what follows from them."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from ptybench.engines.errors import InputError

KINDS = ("farfield", "nearfield")
SCANS = ("fermat", "raster")
#: h·c in keV·m, so wavelength_m = HC_KEV_M / energy_keV.
HC_KEV_M = 1.2398419843320026e-9


@dataclass(frozen=True)
class DatasetSpec:
    """A synthetic dataset: frame j depends only on (seed, j), so any block can be made on its own.

    Sizes are in pixels; ``photons`` is the incident flux per frame (Σ|P|², summed over probe modes);
    ``overlap`` is the linear overlap 1 − step / probe diameter (Bunk et al. 2008).
    """

    kind: str = "farfield"
    n_frames: int = 256
    frame_shape: tuple[int, int] = (64, 64)
    probe_modes: int = 1
    object_modes: int = 1
    photons: float = 1e6
    overlap: float = 0.75
    scan: str = "fermat"
    jitter: float = 0.0
    seed: int = 0
    fresnel_number: float | None = None
    probe_diameter: float | None = None
    beamstop_radius: float = 0.0
    dead_pixel_fraction: float = 0.0
    background: float = 0.0
    energy_kev: float = 8.0
    detector_pixel_m: float = 75e-6
    detector_distance_m: float | None = None
    #: Far field: radius of the optic's pupil in cycles per pixel, the bright disc the probe makes on the
    #: detector (0.25: a fifth of the pixels; a small disc leaves most pixels dark, as on sparse real data).
    pupil_radius: float = 0.25

    def __post_init__(self) -> None:
        object.__setattr__(self, "frame_shape", tuple(int(s) for s in self.frame_shape))
        self._check()

    def _check(self) -> None:
        def fail(name: str, expected: str) -> None:
            raise InputError(f"{name}: expected {expected}, got {getattr(self, name)!r}")

        if self.kind not in KINDS:
            fail("kind", f"one of {list(KINDS)}")
        if self.scan not in SCANS:
            fail("scan", f"one of {list(SCANS)}")
        if int(self.n_frames) != self.n_frames or self.n_frames < 1:
            fail("n_frames", "an integer >= 1")
        if len(self.frame_shape) != 2 or min(self.frame_shape) < 16:
            fail("frame_shape", "(Y, X) with Y, X >= 16")
        for name in ("probe_modes", "object_modes"):
            if int(getattr(self, name)) != getattr(self, name) or getattr(self, name) < 1:
                fail(name, "an integer >= 1")
        if not self.photons > 0:
            fail("photons", "a positive photon count per frame")
        if not 0.0 <= self.overlap < 1.0:
            fail("overlap", "a linear overlap in [0, 1)")
        for name in ("jitter", "beamstop_radius", "background"):
            if not getattr(self, name) >= 0:
                fail(name, "a number >= 0")
        if not 0.0 <= self.dead_pixel_fraction < 0.5:
            fail("dead_pixel_fraction", "a fraction in [0, 0.5)")
        if self.probe_diameter is not None and not 2 <= self.probe_diameter <= min(self.frame_shape):
            fail("probe_diameter", "a diameter in pixels between 2 and the frame size")
        if not 0.02 <= self.pupil_radius <= 0.5:
            fail("pupil_radius", "a radius in cycles per pixel between 0.02 and 0.5")
        if self.fresnel_number is not None and not self.fresnel_number > 0:
            fail("fresnel_number", "a positive Fresnel number per pixel")
        if self.kind == "farfield" and self.fresnel_number is not None:
            fail("fresnel_number", "None for a far-field dataset")

    # --- what follows from the spec ----------------------------------------------------------
    @property
    def wavelength_m(self) -> float:
        return HC_KEV_M / self.energy_kev

    @property
    def pixel_fresnel_number(self) -> float | None:
        """Near field: F = Δx²/(λz) per pixel; defaults to 2/Y (a field Fresnel number of 2Y)."""
        if self.kind != "nearfield":
            return None
        return self.fresnel_number if self.fresnel_number is not None else 2.0 / min(self.frame_shape)

    @property
    def distance_m(self) -> float:
        """Sample-detector distance: given, or 5 m (far field) / the one that gives F (near field)."""
        if self.detector_distance_m is not None:
            return self.detector_distance_m
        if self.kind == "farfield":
            return 5.0
        return self.detector_pixel_m**2 / (self.wavelength_m * self.pixel_fresnel_number)

    @property
    def object_pixel_m(self) -> float:
        """Far field: λz/(X·pixel) (the real-space pixel); near field: the (effective) detector pixel."""
        if self.kind == "farfield":
            return self.wavelength_m * self.distance_m / (self.frame_shape[1] * self.detector_pixel_m)
        return self.detector_pixel_m

    @property
    def probe_diameter_px(self) -> float:
        """Diameter of the illuminated disc in pixels: given, or a fraction of the frame (far field
        0.375, which keeps the probe well inside the oversampling limit of half the frame; near field
        0.75, a beam filling most of the field of view)."""
        if self.probe_diameter is not None:
            return float(self.probe_diameter)
        fraction = 0.375 if self.kind == "farfield" else 0.75
        return fraction * min(self.frame_shape)

    @property
    def scan_step(self) -> float:
        return max(self.probe_diameter_px * (1.0 - self.overlap), 1.0)

    @property
    def frame_bytes(self) -> int:
        """Bytes of one uint32 frame as stored."""
        return 4 * self.frame_shape[0] * self.frame_shape[1]

    @property
    def data_bytes(self) -> int:
        return self.n_frames * self.frame_bytes

    def with_changes(self, **changes: Any) -> DatasetSpec:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["frame_shape"] = list(self.frame_shape)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"dataset spec: unknown keys {unknown}; known keys are {sorted(known)}")
        values = dict(data)
        if "frame_shape" in values:
            values["frame_shape"] = tuple(values["frame_shape"])
        return cls(**values)

    def describe(self) -> str:
        y, x = self.frame_shape
        text = (f"{self.kind}, {self.n_frames} frames of {y}x{x}, {self.photons:.3g} photons/frame, "
                f"{self.scan} scan, overlap {self.overlap:.2f}, probe modes {self.probe_modes}, "
                f"object modes {self.object_modes}, seed {self.seed}")
        if self.kind == "nearfield":
            text += f", Fresnel number {self.pixel_fresnel_number:.4g}/pixel"
        return text


def human_bytes(n_bytes: float) -> str:
    """1234567 -> '1.2 MB' (decimal units, as storage is sold)."""
    if n_bytes < 1000:
        return f"{int(n_bytes)} B"
    exponent = min(int(math.log10(n_bytes) // 3), 5)
    return f"{n_bytes / 1000**exponent:.3g} {'BkMGTP'[exponent]}B"
