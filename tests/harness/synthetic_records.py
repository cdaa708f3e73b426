"""Synthetic procurement records with a known cost law, shared by the procurement and browser tests."""

from __future__ import annotations

from ptybench.fom import figures_of_merit, validation
from ptybench.memory_model import Geometry

MACHINE = {"label": "box-a", "hostname": "a", "cpu": "test CPU", "cores_available": 2, "memory_bytes": 24e9,
           "git_commit": "abc", "versions": {"python": "3.11", "numpy": "2"}}
TARGET = Geometry(n_frames=2552, frame_shape=(768, 768), object_shape=(3000, 3000), probe_modes=1,
                  object_modes=1)


def power_law_seconds(detector: int, frames: int) -> float:
    """A known cost law: 2e-9 s · pixels^1.1 · N^-0.05 per frame·iteration."""
    return 2e-9 * (detector * detector) ** 1.1 * frames ** -0.05


def synthetic_record(detector: int, frames: int, engine: str = "DM", machine: dict | None = None,
                     repeat: int = 0, object_error: float = 0.05, threshold: float = 0.15,
                     iterations_to_target: int | None = 8, scale: float = 1.0) -> dict:
    seconds = power_law_seconds(detector, frames) * frames * scale
    record = {
        "dataset": f"farfield-{detector}-{frames}", "engine": engine, "backend": "numpy", "device": None,
        "ranks": 1, "threads": None, "frames_per_block": None, "iterations": 18, "warmup": 2,
        "parameters": {}, "dataset_changes": {}, "repeat": repeat, "status": "ok", "message": "",
        "machine": machine or MACHINE, "target_error": 0.1, "seconds_per_iteration": seconds,
        "seconds_q25": seconds, "seconds_q75": seconds, "iterations_to_target": iterations_to_target,
        "seconds_to_target": seconds * (iterations_to_target or 0),
        "dataset_info": {"n_frames": frames, "height": detector, "width": detector},
        "backend_info": {"threads": 2}, "object_error": object_error, "tier": "baseline",
        "memory": {"host_algorithm_bytes": 1e6 * frames, "predicted_bytes": 1.1e6 * frames},
    }
    record["validation"] = validation(object_error, threshold)
    record["fom"] = figures_of_merit(record)
    return record


LADDER = [(64, 256), (128, 256), (128, 1024), (256, 256)]


def ladder(**changes) -> list[dict]:
    return [synthetic_record(d, n, repeat=r, **changes) for d, n in LADDER for r in range(3)]
