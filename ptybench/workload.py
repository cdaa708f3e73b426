"""The procurement workload: a fixed, versioned list of measurements with their validation thresholds.

The shipped file is ``ptybench/workloads/procure.toml``; ``--workload FILE`` runs another one (a site's
own sizes), which must have the same keys. Everything is checked when the file is read, before any
measurement runs.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptybench.engines.backends import backend_descriptor, parse_target
from ptybench.engines.errors import InputError
from ptybench.engines.registry import engine_names
from ptybench.measurement import Measurement

DEFAULT_WORKLOAD = Path(__file__).parent / "workloads" / "procure.toml"
REQUIRED_KEYS = ("version", "epsilon", "repeats", "profiles", "iterations", "thresholds")


@dataclass(frozen=True)
class Workload:
    path: Path
    table: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path | None = None) -> Workload:
        path = Path(path) if path is not None else DEFAULT_WORKLOAD
        if not path.exists():
            raise FileNotFoundError(f"--workload: {path} does not exist")
        with open(path, "rb") as stream:
            try:
                table = tomllib.load(stream)
            except tomllib.TOMLDecodeError as error:
                raise InputError(f"--workload {path}: not valid TOML ({error})") from None
        workload = cls(path, table)
        workload._check()
        return workload

    @property
    def version(self) -> str:
        return str(self.table["version"])

    @property
    def epsilon(self) -> float:
        return float(self.table["epsilon"])

    @property
    def repeats(self) -> int:
        return int(self.table["repeats"])

    @property
    def profiles(self) -> dict[str, Any]:
        return self.table["profiles"]

    def profile(self, name: str) -> dict[str, Any]:
        if name not in self.profiles:
            raise InputError(f"--profile: expected one of {sorted(self.profiles)}, got {name!r}")
        return self.profiles[name]

    def threshold(self, engine: str, detector_size: int) -> float | None:
        """The validation threshold for ``engine`` at this detector size (the next smaller size listed)."""
        sizes = {int(size): float(value) for size, value in self.table["thresholds"].get(engine, {}).items()}
        below = [size for size in sizes if size <= detector_size]
        return sizes[max(below)] if below else None

    @property
    def target(self) -> str:
        return str(self.table.get("target", "seed-2552x768"))

    def measurements(self, profile: str, backends: list[str] | None = None, threads: int | None = None,
                     repeats: int | None = None, timeout_s: float = 1800.0) -> list[Measurement]:
        """Every run of the profile: repeats outermost, so a machine's drift spreads over every point; the
        target-size runs (``target_frames``) come with the ladder in every repeat."""
        from ptybench.datasets import get_spec

        chosen = self.profile(profile)
        backends = backends or list(chosen.get("backends", ["numpy"]))
        repeats = self.repeats if repeats is None else repeats
        if repeats < 1:
            raise InputError(f"--repeats: expected a positive integer, got {repeats}")
        points = []
        for repeat in range(repeats):
            for dataset in chosen["datasets"]:
                size = get_spec(dataset).frame_shape[0]
                for engine in chosen["engines"]:
                    counts = self.table["iterations"][engine]
                    for backend_text in backends:
                        backend, device = parse_target(backend_text)
                        points.append(Measurement(
                            dataset=dataset, engine=engine, backend=backend, device=device,
                            iterations=int(counts["iterations"]), warmup=int(counts["warmup"]), threads=threads,
                            target_error=self.epsilon, timeout_s=timeout_s, repeat=repeat,
                            validation_threshold=self.threshold(engine, size)))
            points += self._target_runs(chosen, backends, threads, repeat, timeout_s)
        return points

    def _target_runs(self, chosen: dict[str, Any], backends: list[str], threads: int | None, repeat: int,
                     timeout_s: float) -> list[Measurement]:
        """Timing runs at the target's frame size on subsets of its frames (no validation: the ladder validates)."""
        counts = self.table.get("target_runs", {"warmup": 1, "iterations": 4})
        points = []
        frames_list = chosen.get("target_frames", [])
        residencies = {(engine, backend_text): self.target_residencies(engine, *parse_target(backend_text))
                       for engine in chosen["engines"] for backend_text in backends} if frames_list else {}
        for frames in frames_list:
            for engine in chosen["engines"]:
                for backend_text in backends:
                    backend, device = parse_target(backend_text)
                    for residency in residencies[engine, backend_text]:
                        points.append(Measurement(
                            dataset=self.target, dataset_changes={"n_frames": int(frames)}, engine=engine,
                            backend=backend, device=device, iterations=int(counts["iterations"]),
                            warmup=int(counts["warmup"]), threads=threads, target_error=None, noise_margin=None,
                            fft_floor=False, timeout_s=timeout_s, repeat=repeat,
                            parameters={"evaluate_every": 0, **({"residency": "disk"} if residency == "disk" else {})}))
        return points

    def target_residencies(self, engine: str, backend: str, device: str | None) -> tuple[str, ...]:
        """Where the engine would keep its per-frame arrays at the target's full N on this machine: ("resident",),
        ("disk",), or both at the edge of memory. The target-size runs are measured so, and the forecast takes the
        runs of the residency it predicts (``forecast.by_residency``): on disk the reads, writes and the reader
        thread's share of the cores are in the cost per frame; in memory they are not. The edge is a need within
        10 % of the usable memory (engines/placement.py's safety factor of the free or of the total memory): DM on
        the seed needs 18.8 GB of the 24 GB box, and ran in memory or on disk depending on what else was held."""
        from ptybench.engines.host_memory import host_available_bytes, host_total_bytes
        from ptybench.engines.placement import SAFETY
        from ptybench.memory_model import predict_memory
        from ptybench.procure import target_geometry

        if backend_descriptor(backend).is_device_memory(device):
            return ("device",)
        need = predict_memory(target_geometry(self.target), engine, backend, device=device,
                              residency="resident").total_bytes
        usable = [SAFETY * host_available_bytes(), SAFETY * host_total_bytes()]
        if all(need <= 0.9 * limit for limit in usable):
            return ("resident",)
        if all(need > 1.1 * limit for limit in usable):
            return ("disk",)
        return ("resident", "disk")

    def _check(self) -> None:
        missing = [key for key in REQUIRED_KEYS if key not in self.table]
        if missing:
            raise InputError(f"workload {self.path}: missing key(s) {missing}")
        from ptybench.datasets import get_spec

        known = set(engine_names())
        for name, profile in self.profiles.items():
            for key in ("engines", "datasets"):
                if not profile.get(key):
                    raise InputError(f"workload {self.path}: profiles.{name}.{key}: expected a non-empty list")
            for engine in profile["engines"]:
                if engine not in known:
                    raise InputError(f"workload {self.path}: profiles.{name}: unknown engine {engine!r}; "
                                     f"expected some of {sorted(known)}")
                if engine not in self.table["iterations"]:
                    raise InputError(f"workload {self.path}: iterations.{engine} missing")
                if not self.table["thresholds"].get(engine):
                    raise InputError(f"workload {self.path}: thresholds.{engine} missing")
            for dataset in profile["datasets"]:
                try:
                    get_spec(dataset)
                except (KeyError, ValueError) as error:
                    raise InputError(f"workload {self.path}: profiles.{name}: {error}") from None
            for backend in profile.get("backends", []):
                parse_target(backend)
            frames = profile.get("target_frames", [])
            if not isinstance(frames, list) or any(isinstance(n, bool) or not isinstance(n, int) or n < 1
                                                   for n in frames):
                raise InputError(f"workload {self.path}: profiles.{name}.target_frames: expected a list of whole "
                                 f"numbers >= 1, got {frames!r}")
