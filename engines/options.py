"""Engine options: one frozen dataclass per engine, built from a plain ``parameters`` mapping.

``parameters`` can come from JSON or TOML. Top-level keys that apply to the whole run (backend,
device, propagation, ...) are in RunOptions; ``engine`` is a name or a list of stages, each stage a
name or a mapping with ``engine``, ``iterations`` and that engine's options. Unknown keys and bad
values raise a ValueError that names the key.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from .backends import BACKEND_NAMES
from .errors import InputError, InputTypeError
from .propagation import PROPAGATIONS
from .registry import engine_names, engine_spec


class ParameterError(InputError):
    """A bad key or value in ``parameters``; the message names the key."""


class ParameterTypeError(ParameterError, InputTypeError):
    """A parameter of the wrong type (an array where a number belongs)."""


def option(default: Any, doc: str, check: Callable[[Any], bool] | None = None, expected: str = "") -> Any:
    return field(default=default, metadata={"doc": doc, "check": check, "expected": expected})


def _is_bool(v: Any) -> bool:
    return isinstance(v, (bool, np.bool_))


def _integer(minimum: int) -> Callable[[Any], bool]:
    """Python or NumPy integers (``np.int64(20)`` is as valid as ``20``)."""
    return lambda v: isinstance(v, numbers.Integral) and not _is_bool(v) and v >= minimum


def _number(minimum: float = -math.inf, maximum: float = math.inf, open_min: bool = False) -> Callable[[Any], bool]:
    def check(v: Any) -> bool:
        if _is_bool(v) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            return False
        return (v > minimum if open_min else v >= minimum) and v <= maximum
    return check


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _one_of(*choices: Any) -> Callable[[Any], bool]:
    return lambda v: v in choices


@dataclass(frozen=True)
class RunOptions:
    """Keys for the whole reconstruction (every stage)."""

    backend: str = option("numpy", "array backend", _one_of(*BACKEND_NAMES), f"one of {list(BACKEND_NAMES)}")
    device: Any = option(None, "device: 'cpu', 'cuda', 'cuda:k' (torch) or k (cupy); None = default")
    propagation: str = option("farfield", "propagator", _one_of(*PROPAGATIONS), f"one of {list(PROPAGATIONS)}")
    fresnel_number: float | None = option(None, "Fresnel number of one pixel (near field)",
                                          _optional(_number(0, open_min=True)), "a positive number")
    frames_per_block: int | str | None = option(
        "auto", "frames computed at once (temporaries grow with it); 'auto' (or None): from the engines' memory "
        "terms and the free memory", lambda v: v in ("auto", None) or _integer(1)(v), "'auto' or an integer >= 1")
    residency: str = option("auto", "per-frame data on the device ('resident') or streamed from pinned host "
                            "memory ('streamed'); on the host, 'disk' keeps DM/RAAR's exit waves in a scratch "
                            "file read and written block by block; 'auto': resident when they fit, else streamed "
                            "(device) or disk (host)",
                            _one_of("auto", "resident", "streamed", "disk"),
                            "'auto', 'resident', 'streamed' or 'disk'")
    scratch_directory: str | None = option(
        None, "where residency 'disk' puts its scratch file (unlinked at once, so nothing is left behind); None: "
        "$PTYBENCH_SCRATCH, else the system's temporary directory", _optional(lambda v: isinstance(v, str)),
        "a directory path or None")
    threads: int | None = option(None, "CPU threads (FFT workers, BLAS, numba); None = all available",
                                 _optional(_integer(1)), "an integer >= 1 or None")
    photons_per_unit: float | None = option(
        None, "photons per data unit; None: integer data are counts, float data are scaled by their detected "
        "count quantum (or taken as counts when there is none)", _optional(_number(0, open_min=True)),
        "a positive number or None")
    seed: int = option(0, "seed of every random choice (ePIE frame order)", _integer(0), "an integer >= 0")
    probe_power: str = option(
        "data", "'data': scale the initial probe so the initial model's counts match the data's (on up to 64 "
        "frames); 'given': keep its scale. A probe from another measurement or code has an arbitrary scale, and "
        "ML's gradient steps take many iterations to find one", _one_of("data", "given"), "'data' or 'given'")
    orthogonal_modes: bool = option(
        True, "make the probe modes orthogonal and sort them by power after every iteration (mixed states are "
        "defined only up to a unitary mixing; engines/modes.py)", _one_of(True, False), "true or false")
    evaluate_every: int = option(
        1, "evaluate the returned object and probe (err_fmag, R-factor) every this many iterations and always "
        "after the last; 0 = after the last only. The evaluation is one forward propagation of every frame "
        "(and, when the frames are streamed to a device, one more pass of them over the link), timed apart "
        "from the iteration", _integer(0), "an integer >= 0")
    positions: str = option(
        "nearest", "where frames sit: 'nearest' puts each at the nearest whole pixel of its position (the fused "
        "kernels' path); 'subpixel' also shifts each frame's probe by the remaining fraction of a pixel (a Fourier "
        "shift: two more FFTs per frame and probe mode each way; engines/subpixel.py)",
        _one_of("nearest", "subpixel"), "'nearest' or 'subpixel'")
    position_refinement_start: int | None = option(
        None, "refine every frame's position from this (global) iteration on, after each iteration's update "
        "(engines/positions.py); None: the positions as given. Measured scans' positions are often off by a "
        "pixel or more", _optional(_integer(0)), "an integer >= 0 or None")
    position_refinement_every: int = option(
        1, "refine positions every this many iterations (each refinement costs about one evaluation: a forward "
        "and a backward propagation of every frame)", _integer(1), "an integer >= 1")
    background_start: int | None = option(
        None, "fit an incoherent detector background (one value per pixel, shared by every frame) from this "
        "(global) iteration on, after each iteration's update: the model becomes Σ|ψ|² + b (engines/background.py; "
        "each fit costs one forward propagation of every frame); None: no background. Measured scans often carry "
        "counts no exit wave explains", _optional(_integer(0)), "an integer >= 0 or None")
    background_penalty: float = option(
        0.5, "the background fit's penalty λ on b² (a prior that the background is small): b = mean residual / "
        "(1 + λ). With λ = 0 the fit is exact but drifts where the exit waves systematically fall short of the "
        "data (a bright focus): each fit adds the shortfall and the coherent model, fitted to what is left, "
        "falls short again (docs/algorithms.md, \"Background\")", _number(0), "a number >= 0")
    stage_timings: bool | str = option(
        "auto", "time stages (a device sync per stage on GPUs); 'auto': on, except on a GPU for the engines "
        "that work one frame or one small batch at a time (ePIE, rPIE and their batched forms), where five "
        "syncs per frame or batch would cost more than they measure",
        _one_of(True, False, "auto"), "true, false or 'auto'")


@dataclass(frozen=True)
class StageOptions:
    """Keys every engine stage takes."""

    iterations: int = option(100, "iterations of this stage", _integer(0), "an integer >= 0")
    probe_update_start: int = option(2, "the probe is held fixed until this (global) iteration",
                                     _integer(0), "an integer >= 0")


#: Data are sparse when at least this share of the valid pixels counted nothing.
SPARSE_ZERO_FRACTION = 0.8


@dataclass(frozen=True)
class BoundedOptions(StageOptions):
    """Engines whose Fourier projection takes a power bound (docs/algorithms.md, "Power bound")."""

    pbound: float | str | None = option(
        "auto", "Fourier power bound, mean squared amplitude error per pixel in photons; 'auto': the data's "
        "Poisson noise floor, mean of E[(√λ−√k)²] at the measured counts; None: exact projection",
        lambda v: v == "auto" or _optional(_number(0, open_min=True))(v), "'auto', a positive number or None")

    def resolved_pbound(self, noise_floor: float, zero_fraction: float = 0.0) -> float | None:
        """The bound in photons: the data's noise floor for 'auto' (None when the data are empty), and for
        'sparse' when at least SPARSE_ZERO_FRACTION of the valid pixels counted nothing."""
        if self.pbound == "auto" or (self.pbound == "sparse" and zero_fraction >= SPARSE_ZERO_FRACTION):
            return noise_floor if noise_floor > 0 else None
        return None if self.pbound == "sparse" else self.pbound


@dataclass(frozen=True)
class ProjectionOptions(BoundedOptions):
    """Shared by DM and RAAR (docs/algorithms.md, "The two projections")."""

    object_inertia: float = option(1e-4, "c_O relative to the largest illumination", _number(0, open_min=True),
                                   "a positive number")
    probe_inertia: float = option(1e-3, "c_P relative to the largest object power", _number(0, open_min=True),
                                  "a positive number")
    overlap_updates: int = option(1, "alternating object/probe updates per iteration", _integer(1),
                                  "an integer >= 1")


@dataclass(frozen=True)
class DMOptions(ProjectionOptions):
    alpha: float = option(1.0, "difference-map α", _number(0, 2), "a number in [0, 2]")

    def update_coefficients(self) -> tuple[float, float, float]:
        """(a, b, c) of ψ ← ψ + bΠ_M(cΠ_Oψ + (1−c)ψ) + aΠ_Oψ − (a+b)ψ (docs/algorithms.md)."""
        return -self.alpha, 1.0, 1.0 + self.alpha


@dataclass(frozen=True)
class RAAROptions(ProjectionOptions):
    beta: float = option(0.9, "RAAR β", _number(0, 1, open_min=True), "a number in (0, 1]")

    def update_coefficients(self) -> tuple[float, float, float]:
        return 1.0 - 2.0 * self.beta, self.beta, 2.0


@dataclass(frozen=True)
class EPIEOptions(BoundedOptions):
    # The bound only on sparse data: on bright and low-count sets the max-normalised step already damps the
    # noise and a bound only slowed ePIE; where most pixels count nothing, each frame's exact projection
    # writes its Poisson noise into the object and ePIE stalls above the other engines (docs/algorithms.md).
    pbound: float | str | None = option(
        "sparse", "Fourier power bound in photons per pixel; 'auto': the data's noise floor; 'sparse': that bound "
        f"when at least {SPARSE_ZERO_FRACTION:.0%} of the valid pixels counted nothing, else none; None: exact "
        "projection", lambda v: v in ("auto", "sparse") or _optional(_number(0, open_min=True))(v),
        "'auto', 'sparse', a positive number or None")
    alpha: float = option(1.0, "object step size α", _number(0, 2, open_min=True), "a number in (0, 2]")
    beta: float = option(1.0, "probe step size β", _number(0, 2, open_min=True), "a number in (0, 2]")


@dataclass(frozen=True)
class RPIEOptions(EPIEOptions):
    # rPIE's per-pixel step fits the noise late in a run (its error rises again); the bound stops that.
    pbound: float | str | None = option(
        "auto", "Fourier power bound in photons per pixel; 'auto': the data's noise floor; None: exact projection",
        lambda v: v == "auto" or _optional(_number(0, open_min=True))(v), "'auto', a positive number or None")
    rpie_alpha: float = option(0.25, "rPIE weight a in (1−a)|P|² + a·max|P|²", _number(0, 1),
                               "a number in [0, 1]")


def _batch_frames_option() -> Any:
    return option(64, "frames updated together from the same object and probe (1: the sequential engine's "
                  "updates, in its frame order)", _integer(1), "an integer >= 1")


@dataclass(frozen=True)
class BatchedEPIEOptions(EPIEOptions):
    batch_frames: int = _batch_frames_option()


@dataclass(frozen=True)
class BatchedRPIEOptions(RPIEOptions):
    batch_frames: int = _batch_frames_option()


@dataclass(frozen=True)
class MLOptions(StageOptions):
    probe_update_start: int = option(0, "the probe is held fixed until this (global) iteration",
                                     _integer(0), "an integer >= 0")
    noise: str = option("gaussian", "noise model of the likelihood", _one_of("gaussian", "poisson"),
                        "'gaussian' or 'poisson'")
    regularizer: float = option(0.0, "object smoothness regulariser amplitude (0 = off)", _number(0),
                                "a number >= 0")
    scale_precond: bool = option(True, "rescale the probe gradient to the object's (PtyPy's scale_precond)",
                                 _one_of(True, False), "true or false")
    batch_frames: int | None = option(
        None, "frames per mini-batch: None = full-gradient conjugate gradients over all frames; a number = about "
        "N/batch_frames preconditioned steepest-descent updates per pass, each on pieces spread over the scan "
        "(an automatic compute block is no larger than a batch; on a real scan with refined positions and a fitted "
        "background 5 beat full gradients, 0.0585 against 0.0619)",
        _optional(_integer(1)), "an integer >= 1 or None")
    preconditioner: float | None = option(
        None, "diagonal preconditioner: gradients divided by the illumination Σ|P|² (object) and Σ|O|² (probe) "
        "plus this fraction of their maximum; None: unpreconditioned (PtyPy's ML)",
        _optional(_number(0, open_min=True)), "a positive number or None")




@dataclass(frozen=True)
class Stage:
    engine: str
    options: StageOptions


@dataclass(frozen=True)
class Plan:
    """A parsed ``parameters`` mapping: run-wide options and the engine stages in order."""

    run: RunOptions
    stages: tuple[Stage, ...]



def _build(cls: type, values: Mapping[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ParameterError(f"parameters{where}: unknown key(s) {unknown}; expected some of {sorted(known)}")
    for key, value in values.items():
        check = known[key].metadata.get("check")
        if isinstance(value, np.ndarray) and value.ndim > 0:  # an array where one value belongs
            raise ParameterTypeError(f"parameters{where}[{key!r}]: expected {known[key].metadata['expected']}, "
                                     f"got an array of shape {value.shape}")
        if check is not None and not check(value):
            raise ParameterError(f"parameters{where}[{key!r}]: expected {known[key].metadata['expected']}, "
                                 f"got {value!r}")
    return cls(**{key: _plain(value) for key, value in values.items()})


def _plain(value: Any) -> Any:
    """NumPy scalars become Python numbers, so options compare, print and serialise as usual."""
    return value.item() if isinstance(value, np.generic) else value


def _stage(entry: Any, defaults: Mapping[str, Any], where: str) -> Stage:
    values = dict(defaults)
    if isinstance(entry, str):
        name = entry
    elif isinstance(entry, Mapping):
        values.update(entry)
        name = values.pop("engine", None)
    else:
        raise ParameterError(f"parameters{where}: expected an engine name or a mapping, got {entry!r}")
    if name not in engine_names():
        raise ParameterError(f"parameters{where}['engine']: expected one of {list(engine_names())}, got {name!r}")
    return Stage(name, _build(engine_spec(name).options_class, values, where))


def parse_parameters(parameters: Mapping[str, Any] | None) -> Plan:
    """``parameters`` -> Plan; raises ParameterError naming the bad key."""
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, Mapping):
        raise InputTypeError(f"parameters: expected a mapping, got {type(parameters).__name__}")
    run_keys = {f.name for f in fields(RunOptions)}
    run = _build(RunOptions, {k: v for k, v in parameters.items() if k in run_keys}, "")
    if run.propagation == "nearfield" and run.fresnel_number is None:
        raise ParameterError("parameters['fresnel_number']: expected a positive number for near field, got None")
    if run.propagation == "farfield" and run.fresnel_number is not None:
        raise ParameterError(f"parameters['fresnel_number']: expected None for far-field propagation, got "
                             f"{run.fresnel_number!r} (set propagation='nearfield' to use it)")
    rest = {k: v for k, v in parameters.items() if k not in run_keys}
    engine = rest.pop("engine", "DM")
    if isinstance(engine, (list, tuple)):
        if not engine:
            raise ParameterError("parameters['engine']: expected at least one stage, got an empty list")
        iterations = {"iterations": rest.pop("iterations")} if "iterations" in rest else {}
        if rest:
            raise ParameterError(f"parameters: unknown key(s) {sorted(rest)}; with a list of stages, engine "
                                 f"options go inside each stage")
        stages = tuple(_stage(entry, iterations, f"['engine'][{i}]") for i, entry in enumerate(engine))
    else:
        stages = (_stage(engine, rest, ""),)
    return Plan(run, stages)


def option_names(engine: str) -> set[str]:
    """Every key ``parameters`` accepts for this engine: run-wide keys and the engine's own."""
    return {f.name for f in fields(RunOptions)} | {f.name for f in fields(engine_spec(engine).options_class)}


def describe_options() -> dict[str, list[tuple[str, Any, str]]]:
    """Every engine's keys with default and meaning, for --help and the README."""
    table = {"run": [(f.name, f.default, f.metadata["doc"]) for f in fields(RunOptions)]}
    for name in engine_names():
        table[name] = [(f.name, f.default, f.metadata["doc"]) for f in fields(engine_spec(name).options_class)]
    return table
