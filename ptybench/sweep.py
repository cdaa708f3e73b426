"""Sweeps: datasets × engines × backends × frames_per_block × threads, each point in its own process.

Resumable: a point whose key is already in the results file is skipped (``retry_failed`` re-runs
points stored as error or timeout). Concurrent sweeps on one results file claim each point first
(``claim``), so none is measured twice. Every record is appended atomically as soon as it exists, so
a killed sweep loses at most the measurement in flight.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import os
import socket
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptybench import results
from ptybench.engines import ParameterError, parse_parameters
from ptybench.engines.backends import parse_target
from ptybench.engines.errors import InputError
from ptybench.engines.options import option_names
from ptybench.engines.registry import engine_names
from ptybench.measurement import DEFAULT_NOISE_MARGIN, DEFAULT_TARGET_ERROR, Measurement, require_dataset
from ptybench.memory_model import parse_bytes
from ptybench.runner import run_isolated

#: Keys a sweep TOML file may hold (see `ptybench sweep --help`).
CONFIG_KEYS = ("datasets", "engines", "backends", "frames_per_block", "iterations", "warmup", "threads",
               "timeout_s", "target_error", "noise_margin", "memory_limit", "host_memory", "parameters", "out",
               "repeats")


@dataclass
class SweepConfig:
    datasets: list[str]
    engines: list[str]
    backends: list[str] = field(default_factory=lambda: ["numpy"])
    frames_per_block: list[int | None] = field(default_factory=lambda: [None])
    iterations: int = 10
    warmup: int = 2
    threads: list[int | None] = field(default_factory=lambda: [None])
    timeout_s: float = 600.0
    target_error: float | None = DEFAULT_TARGET_ERROR
    noise_margin: float | None = DEFAULT_NOISE_MARGIN
    memory_limit: str | int | None = None
    #: An emulated host of this much memory for every point (ptybench.emulated_host).
    host_memory: str | int | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    out: str = "reports/sweep/results.jsonl"
    #: Runs of every point, each a fresh process; repeats are outermost, so the points interleave (a slow spell of
    #: the machine spreads over all of them instead of hitting one) and the regression gate gets several processes.
    repeats: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.repeats, bool) or not isinstance(self.repeats, int) or self.repeats < 1:
            raise InputError(f"repeats: expected a whole number >= 1, got {self.repeats!r}")
        for name in ("datasets", "engines", "backends", "frames_per_block", "threads"):
            value = getattr(self, name)
            if isinstance(value, str | int) or value is None:
                value = [value]
            if not value:
                raise InputError(f"{name}: expected at least one entry, got an empty list")
            setattr(self, name, list(value))
        self.frames_per_block = [None if value in (None, 0, "default") else int(value)
                                 for value in self.frames_per_block]
        for name in ("datasets", "engines", "backends"):
            wrong = [value for value in getattr(self, name) if not isinstance(value, str)]
            if wrong:
                raise InputError(f"{name}: expected names (strings), got {wrong[0]!r}")
        for dataset in self.datasets:
            require_dataset(dataset)
        bad = [value for value in self.threads if value is not None and (isinstance(value, bool)
                                                                          or not isinstance(value, int) or value < 1)]
        if bad:
            raise InputError(f"threads: expected whole numbers >= 1, got {bad[0]!r}")
        for backend in self.backends:
            parse_target(backend)
        for engine in self.engines:
            self.engine_parameters(engine)  # every value checked before anything runs
        self._check_every_key_is_used()

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> SweepConfig:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"sweep config: {path} does not exist")
        with open(path, "rb") as stream:
            try:
                table = tomllib.load(stream)
            except tomllib.TOMLDecodeError as error:
                raise InputError(f"sweep config {path}: not valid TOML ({error})") from None
        unknown = sorted(set(table) - set(CONFIG_KEYS))
        if unknown:
            raise InputError(f"sweep config {path}: unknown key(s) {unknown}; expected some of {list(CONFIG_KEYS)}")
        table.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**table)

    def engine_parameters(self, engine: str) -> dict[str, Any]:
        """``parameters`` for one engine: run-wide keys, the shared keys this engine knows, then its own
        table (``[parameters.DM]``), which wins. Raises ValueError naming a bad key or value."""
        names = set(engine_names())
        shared = {key: value for key, value in self.parameters.items() if key not in names}
        own = self.parameters.get(engine, {})
        if not isinstance(own, Mapping):
            raise InputError(f"parameters.{engine}: expected a table of {engine}'s keys, got {own!r}")
        known = option_names(engine)
        chosen = {**{key: value for key, value in shared.items() if key in known}, **own}
        try:
            parse_parameters({"engine": engine, **chosen})
        except ParameterError as error:
            raise InputError(f"sweep parameters for {engine}: {error}") from None
        return chosen

    def _check_every_key_is_used(self) -> None:
        names = set(engine_names())
        for key, value in self.parameters.items():
            if key in names or isinstance(value, Mapping):
                if key not in names:
                    raise InputError(f"parameters.{key}: not an engine; expected one of {sorted(names)}")
                self.engine_parameters(key)  # a table for an engine not selected now is still checked
                continue
            if not any(key in option_names(engine) for engine in self.engines):
                raise InputError(f"parameters: no selected engine ({', '.join(self.engines)}) takes {key!r}; "
                                 f"put engine keys in that engine's table, e.g. [parameters.DM]")

    def measurements(self) -> list[Measurement]:
        limit = parse_bytes(self.memory_limit) if self.memory_limit is not None else None
        host = parse_bytes(self.host_memory) if self.host_memory is not None else None
        points = []
        for repeat, dataset, engine, backend, block, threads in itertools.product(
                range(self.repeats), self.datasets, self.engines, self.backends, self.frames_per_block, self.threads):
            name, device = parse_target(backend)
            points.append(Measurement(dataset=dataset, engine=engine, backend=name, device=device, repeat=repeat,
                                      iterations=self.iterations, warmup=self.warmup, threads=threads,
                                      frames_per_block=block, parameters=self.engine_parameters(engine),
                                      target_error=self.target_error, noise_margin=self.noise_margin,
                                      memory_limit_bytes=limit, host_memory_bytes=host,
                                      timeout_s=self.timeout_s))
        return points


def sweep_results(config: SweepConfig) -> Any:
    """The stored records of this sweep's points (the latest per point) as a DataFrame."""
    keys = {results.measurement_key(m.identity()) for m in config.measurements()}
    frame = results.load(config.out)
    return frame[frame["key"].isin(keys)].drop_duplicates("key", keep="last")


def latest_records(measurements: Iterable[Measurement], out: str | Path) -> list[dict[str, Any]]:
    """The stored record of each measurement (the latest where a point was retried), in the measurements' order;
    points not stored are left out."""
    keys = [results.measurement_key(m.identity()) for m in measurements]
    latest = {record["key"]: record for record in results.read_records(out)} if Path(out).exists() else {}
    return [latest[key] for key in keys if key in latest]


def pending(measurements: Iterable[Measurement], out: str | Path, retry_failed: bool = False,
            stored: results.StoredKeys | None = None) -> list[Measurement]:
    """The measurements whose key is not stored yet (or stored as a failure, with ``retry_failed``); ``stored``
    is a running index of the results file (read from where it last stopped), else the file is read whole."""
    keep = ("ok", "oom", "diverged") if retry_failed else results.STATUSES
    done = (stored or results.StoredKeys(out)).refresh().keys(keep)
    return [m for m in measurements if results.measurement_key(m.identity()) not in done]


def run_sweep(config: SweepConfig, retry_failed: bool = False, progress: bool = True,
              run: Callable[[Measurement], Mapping[str, Any]] = run_isolated) -> list[dict[str, Any]]:
    """Measure every pending point, appending each record as it comes; returns the new records."""
    return run_points(config.measurements(), config.out, retry_failed, progress, run)


def run_points(measurements: list[Measurement], out: str | Path, retry_failed: bool = False, progress: bool = True,
               run: Callable[[Measurement], Mapping[str, Any]] = run_isolated) -> list[dict[str, Any]]:
    """The sweep loop for any list of points (a sweep's grid, a procurement workload): resumable, claimed."""
    from tqdm import tqdm

    stored = results.StoredKeys(out)
    todo = pending(measurements, out, retry_failed, stored)
    records = []
    with tqdm(total=len(todo), disable=not progress, unit="run", dynamic_ncols=True) as bar:
        for measurement in todo:
            bar.set_description(f"{measurement.dataset} {measurement.engine} {measurement.backend}")
            with claim(out, measurement) as mine:
                if mine and pending([measurement], out, retry_failed, stored):  # not stored by another sweep since
                    results.require_free_space(out)
                    record = results.append(out, run(measurement))
                    records.append(record)
                    bar.set_postfix_str(record["status"])
                else:
                    bar.set_postfix_str("measured by another sweep")
            bar.update()
    return records


@contextlib.contextmanager
def claim(out: str | Path, measurement: Measurement) -> Iterator[bool]:
    """Claim a point for this process, so two sweeps writing one results file never measure it twice.

    The claim is an exclusive ``flock`` on a file named by the point's key beside the results file. The
    kernel drops the lock when its holder dies, so a killed sweep's point is free again at once, and
    there is no window in which a half-written claim looks abandoned (the race an exclusive-create
    claim file had). The lock is only kept if the file still is the one at the path: a holder that
    finished may have removed it in between. Yields False when another live sweep holds it.
    """
    folder = Path(f"{out}.claims")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / results.measurement_key(measurement.identity())
    for _ in range(100):
        try:  # never through a symlink someone planted under the claim's name
            descriptor = os.open(path, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW, 0o644)
        except OSError as error:
            if error.errno != errno.ELOOP:
                raise
            raise InputError(f"claim: {path} is a symbolic link; refused (claims are plain files ptybench "
                             f"creates; remove it)") from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            yield False
            return
        if not _is_current(descriptor, path):
            os.close(descriptor)  # removed by a finishing holder after we opened it: try again
            continue
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()} {socket.gethostname()}\n".encode())  # who, for a human
        try:
            yield True
        finally:
            # a folder turned read-only must not hide the error that matters (the record's) behind this one;
            # the lock goes with the descriptor anyway
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
            os.close(descriptor)
        return
    yield False


def _is_current(descriptor: int, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(descriptor).st_ino
    except FileNotFoundError:
        return False
    return True
