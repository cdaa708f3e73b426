"""The one record type: what a measurement stored, built in one place for successes and failures alike.

Every record has every field (None where it does not apply), so a serial run, a 1-rank MPI run and a
failure read the same way in tables, plots and the regression gate. Schema 2 added ``calibration``
and the per-rank fields; schema 3 the procurement fields (``repeat``, ``tier``, ``validation``, ``fom``,
``load``, ``noisy``: ptybench.fom, ptybench.machine_load). Readers accept older lines.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ptybench.engines.errors import InputError

SCHEMA_VERSION = 3
STATUSES = ("ok", "oom", "diverged", "timeout", "error")


@dataclass
class Record:
    # --- what was measured (the key fields: ptybench.results.KEY_FIELDS) ---------------------------
    dataset: str
    engine: str
    backend: str
    device: str | None
    ranks: int
    threads: int | None
    frames_per_block: int | None
    iterations: int
    warmup: int
    parameters: dict[str, Any]
    dataset_changes: dict[str, Any]
    repeat: int = 0
    launcher: str | None = None
    #: Run on an emulated host of this much memory (a memory cgroup, ptybench.emulated_host), else None.
    host_memory_bytes: int | None = None
    # --- how it went ----------------------------------------------------------------------------------
    status: str = "ok"
    message: str = ""
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    wall_seconds: float | None = None
    machine: dict[str, Any] | None = None
    target_error: float | None = None
    dataset_info: dict[str, Any] | None = None
    backend_info: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None
    # --- time (the slowest rank's iterations under MPI) -------------------------------------------------
    iterations_done: int | None = None
    seconds_per_iteration: float | None = None
    seconds_min: float | None = None
    seconds_q25: float | None = None
    seconds_q75: float | None = None
    seconds_max: float | None = None
    iteration_seconds: list[float] | None = None
    stages: dict[str, float] | None = None
    fft_floor_seconds: float | None = None
    fft_floor_ratio: float | None = None
    # --- quality -----------------------------------------------------------------------------------------
    object_error: float | None = None
    r_factor: float | None = None
    err_fmag: float | None = None
    iterations_to_target: int | None = None
    seconds_to_target: float | None = None
    #: err_fmag target (1 + noise_margin) × Poisson noise floor, and the time to reach it: quality without truth.
    noise_target: float | None = None
    iterations_to_noise: int | None = None
    seconds_to_noise: float | None = None
    #: Per iteration, of the returned object and probe (None where not evaluated: evaluate_every).
    r_factor_history: list[float | None] | None = None
    err_fmag_history: list[float | None] | None = None
    # --- memory --------------------------------------------------------------------------------------------
    memory: dict[str, Any] | None = None
    frames_per_block_used: int | None = None
    streaming: bool | None = None
    residency: str | None = None
    placement_reason: str | None = None
    #: Residency "disk": scratch-file bytes read and written per timed iteration, the seconds the engine waited for
    #: reads and spent writing, and (with the disk's bandwidth, ptybench/disk_bandwidth.py) how much of the
    #: reads' disk time it did not wait for (record_assembly.disk_summary). None when nothing went to disk.
    disk: dict[str, Any] | None = None
    oom_size: dict[str, Any] | None = None
    # --- ranks (one entry for a serial run) -----------------------------------------------------------------
    compute_seconds: float | None = None
    communication_seconds: float | None = None
    load_imbalance: float | None = None
    bytes_reduced_per_iteration: float | None = None
    allreduce_calls_per_iteration: float | None = None
    launch: dict[str, Any] | None = None
    per_rank: list[dict[str, Any]] | None = None
    #: "strong" or "weak" for a point measured by ``ptybench scale`` (None otherwise).
    scaling_mode: str | None = None
    # --- procurement: run rules, validation, figures of merit, machine load (ptybench.fom) -------------------
    tier: str | None = None
    tier_reasons: list[str] | None = None
    validation: dict[str, Any] | None = None
    fom: dict[str, Any] | None = None
    load: dict[str, Any] | None = None
    noisy: list[str] | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise InputError(f"record status: expected one of {list(STATUSES)}, got {self.status!r}")

    @classmethod
    def of(cls, measurement: Any, **fields: Any) -> Record:
        """A record of ``measurement`` (its identity fields) with the given results."""
        return cls(**{**measurement.identity(), **fields})

    @classmethod
    def failure(cls, measurement: Any, status: str, message: str, wall_seconds: float) -> Record:
        """A measurement that produced no result of its own (timeout, crash, bad configuration)."""
        from ptybench.machine import describe_machine

        record = cls.of(measurement, status=status, message=message, wall_seconds=wall_seconds,
                        machine=describe_machine(), target_error=measurement.target_error)
        record.judge(measurement)
        return record

    def judge(self, measurement: Any) -> None:
        """Run-rule tier, validation against the measurement's threshold, and the FOMs if it passed."""
        from ptybench.fom import figures_of_merit, run_rules_tier, validation

        self.tier, self.tier_reasons = run_rules_tier(self.engine, self.backend, self.parameters, self.machine)
        self.validation = validation(self.object_error, measurement.validation_threshold, self.status)
        self.fom = figures_of_merit(dataclasses.asdict(self))

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        """A stored record as a Record, so readers use typed fields instead of ``dict.get`` chains. Fields an older
        schema lacked are None (identity fields their neutral value); storage-only fields (schema, key) and fields a
        newer ptybench added are dropped. ``results.require_record`` has checked the identity fields."""
        known = {name: value for name, value in data.items() if name in _FIELD_NAMES}
        for name, neutral in _IDENTITY_NEUTRAL.items():
            known.setdefault(name, neutral() if callable(neutral) else neutral)
        return cls(**known)


def as_record(record: Record | Mapping[str, Any]) -> Record:
    """``record`` as a Record (readers accept records straight from a results file or from a measurement)."""
    return record if isinstance(record, Record) else Record.from_dict(record)


RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(Record))
_FIELD_NAMES = frozenset(RECORD_FIELDS)
#: Identity fields without a default, as an old or hand-written record may lack them.
_IDENTITY_NEUTRAL: dict[str, Any] = {"device": None, "ranks": 1, "threads": None, "frames_per_block": None,
                                     "iterations": 0, "warmup": 0, "parameters": dict, "dataset_changes": dict}
