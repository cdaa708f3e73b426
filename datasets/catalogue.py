"""The catalogue: every named dataset spec, and the size ladders benchmarks climb.

Names read ``{kind}-{detector}-{frames}`` (``farfield-128-4096``: 4096 far-field frames of 128²),
with ``-lowcount`` for the photon-starved twin of a ladder point, plus a few named sets: the small
test sets, a two-mode set, a masked set and the seed workload.

Two flux regimes, because engines behave differently in them: bright sets (photons grow with the
detector area, every pixel well exposed) and low-count sets (a fixed flux per frame, as a source
delivers it: on a far-field detector of 128² or more most pixels away from the centre see no photon).
"""

from __future__ import annotations

from ptybench.engines.errors import InputError

from .spec import DatasetSpec

FRAME_LADDER = (256, 1024, 4096, 16384, 65536)
DETECTOR_LADDER = (64, 128, 256, 512, 1024, 2048)


REGIMES = ("bright", "lowcount")
#: Photons per frame of the low-count sets, whatever the detector size.
LOWCOUNT_PHOTONS = {"farfield": 1e6, "nearfield": 1e5}
#: Far-field low-count sets start here: at 64² a million photons still light most pixels.
LOWCOUNT_MIN_FARFIELD_DETECTOR = 128


def ladder_photons(kind: str, detector: int, regime: str = "bright") -> float:
    """Bright: photons per frame grow with detector area (about 250 per pixel far field, 2500 near
    field). Low count: a fixed flux per frame (LOWCOUNT_PHOTONS)."""
    if regime not in REGIMES:
        raise InputError(f"regime: expected one of {list(REGIMES)}, got {regime!r}")
    if regime == "lowcount":
        return LOWCOUNT_PHOTONS[kind]
    per_64 = 1e6 if kind == "farfield" else 1e7
    return per_64 * (detector / 64) ** 2


def ladder_name(kind: str, detector: int, n_frames: int, regime: str = "bright") -> str:
    return f"{kind}-{detector}-{n_frames}" + ("-lowcount" if regime == "lowcount" else "")


def ladder_spec(kind: str, detector: int, n_frames: int, regime: str = "bright", **changes: object) -> DatasetSpec:
    return DatasetSpec(**{"kind": kind, "n_frames": n_frames, "frame_shape": (detector, detector),
                          "photons": ladder_photons(kind, detector, regime), **changes})


def lowcount_detectors(kind: str) -> tuple[int, ...]:
    minimum = LOWCOUNT_MIN_FARFIELD_DETECTOR if kind == "farfield" else 0
    return tuple(d for d in DETECTOR_LADDER if d >= minimum)


def _build() -> dict[str, tuple[DatasetSpec, str]]:
    entries: dict[str, tuple[DatasetSpec, str]] = {
        "farfield-64-256": (ladder_spec("farfield", 64, 256),
                            "small far-field test set (engine correctness bars)"),
        "nearfield-64-64": (ladder_spec("nearfield", 64, 64),
                            "small near-field test set, 1e7 photons/frame"),
        "farfield-128-1024-lowcount": (ladder_spec("farfield", 128, 1024, "lowcount"),
                                       "low-count far-field test set: 1e6 photons/frame, most pixels zero"),
        "farfield-128-1024-sparse": (ladder_spec("farfield", 128, 1024, "lowcount", photons=5e4, pupil_radius=0.08),
                                     "sparse far-field set: 5e4 photons/frame on a small pupil, over 90% of "
                                     "pixels zero"),
        "nearfield-64-64-lowcount": (ladder_spec("nearfield", 64, 64, "lowcount"),
                                     "low-count near-field test set: 1e5 photons/frame"),
        "farfield-64-256-2modes": (ladder_spec("farfield", 64, 256, probe_modes=2),
                                   "two probe modes (partial coherence)"),
        "farfield-64-256-masked": (ladder_spec("farfield", 64, 256, beamstop_radius=3.0,
                                               dead_pixel_fraction=0.02),
                                   "beam stop and 2% dead pixels"),
        "seed-2552x768": (DatasetSpec(kind="farfield", n_frames=2552, frame_shape=(768, 768),
                                      photons=ladder_photons("farfield", 768)),
                          "the seed workload: one tomography projection, 2552 x 768² (12 GB as complex64)"),
    }
    for kind in ("farfield", "nearfield"):
        for regime in REGIMES:
            detectors = DETECTOR_LADDER if regime == "bright" else lowcount_detectors(kind)
            for detector in detectors:
                for n_frames in FRAME_LADDER:
                    entries.setdefault(ladder_name(kind, detector, n_frames, regime),
                                       (ladder_spec(kind, detector, n_frames, regime), f"{regime} ladder"))
    return entries


_CATALOGUE = _build()


def names() -> list[str]:
    return list(_CATALOGUE)


def get_spec(name: str) -> DatasetSpec:
    """The spec of a catalogue name; a ValueError lists near names when it is unknown."""
    try:
        return _CATALOGUE[name][0]
    except KeyError:
        close = [n for n in _CATALOGUE if n.split("-")[:2] == name.split("-")[:2]][:8]
        hint = f"; similar names: {close}" if close else "; see `ptybench datasets list`"
        raise InputError(f"dataset: unknown name {name!r}{hint}") from None


def describe(name: str) -> str:
    return _CATALOGUE[name][1]


def ladder(kind: str = "farfield", detector: int | None = None, n_frames: int | None = None,
           regime: str = "bright") -> list[tuple[str, DatasetSpec]]:
    """A size ladder in one flux regime: fix the detector to climb N, or fix N to climb the detector."""
    if (detector is None) == (n_frames is None):
        raise InputError("ladder: give exactly one of detector= (climb N) or n_frames= (climb the detector)")
    if regime not in REGIMES:
        raise InputError(f"regime: expected one of {list(REGIMES)}, got {regime!r}")
    if detector is not None:
        points = [(detector, n) for n in FRAME_LADDER]
    else:
        detectors = DETECTOR_LADDER if regime == "bright" else lowcount_detectors(kind)
        points = [(d, n_frames) for d in detectors]
    names_ = [ladder_name(kind, d, n, regime) for d, n in points]
    return [(name, get_spec(name)) for name in names_]
