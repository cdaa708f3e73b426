"""``ptybench run``: one measurement in a fresh process, appended to a results file and printed."""

from __future__ import annotations

import argparse
import json

from ptybench import results
from ptybench.commands.argtypes import count_list, positive_int
from ptybench.engines.backends import parse_target
from ptybench.engines.errors import InputError
from ptybench.measurement import (
    DEFAULT_NOISE_MARGIN,
    DEFAULT_TARGET_ERROR,
    Measurement,
    require_dataset,
    require_emulated_host,
    require_memory_limit,
)
from ptybench.memory_model import parse_bytes
from ptybench.runner import run_isolated


def add_measurement_options(parser: argparse.ArgumentParser, grid: bool = False) -> None:
    """Options shared by `run` and `sweep`. ``grid`` (sweep): --threads is a comma-separated list, and the
    scalar options default to None, so a flag left out does not override the sweep's config file."""

    def default(value: object) -> object:
        return None if grid else value

    parser.add_argument("--iterations", type=positive_int, default=default(10),
                        help="timed iterations (default: 10)")
    parser.add_argument("--warmup", type=int, default=default(2), help="untimed iterations first (default: 2)")
    if grid:
        parser.add_argument("--threads", type=count_list(1), default=None,
                            help="comma-separated CPU thread counts, e.g. 1,2: the table then shows each point's "
                                 "speedup over one thread (default: all cores)")
    else:
        parser.add_argument("--threads", type=positive_int, default=None,
                            help="CPU threads, set before any library loads (default: all cores)")
    parser.add_argument("--timeout", type=float, default=default(600.0), dest="timeout_s",
                        help="seconds before a measurement is killed and recorded as 'timeout' (default: 600)")
    parser.add_argument("--target-error", type=float, default=default(DEFAULT_TARGET_ERROR),
                        help=f"object error for time-to-quality, synthetic data (default: {DEFAULT_TARGET_ERROR})")
    parser.add_argument("--noise-margin", type=float, default=default(DEFAULT_NOISE_MARGIN),
                        help="time to quality on any data, real scans too: until err_fmag of the returned model is "
                             f"within (1 + MARGIN) x the data's Poisson noise floor (default: {DEFAULT_NOISE_MARGIN})")
    parser.add_argument("--memory-limit", default=None,
                        help="cap on the run's own memory, e.g. 2GB; exceeding it is recorded as 'oom'")
    parser.add_argument("--host-memory", default=None,
                        help="run on an emulated host of this much memory, e.g. 2GB: a memory cgroup that counts "
                             "the page cache too, so data larger than it are read from disk as on that host "
                             "(needs root on cgroup v1 or a delegated cgroup v2 subtree)")
    parser.add_argument("--parameters", default=None, type=json.loads,
                        help='extra engine parameters as JSON, e.g. \'{"pbound": null}\'')


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help="measure one engine on one dataset and backend (a fresh process), append the record",
        description="Measure one configuration in a fresh subprocess: warm-up, then timed iterations with device "
                    "sync; median and spread, per-stage times, peak host/device memory and the memory model's "
                    "prediction, FFT floor, object error and R-factor, time to --target-error. --dataset takes a "
                    "catalogue name or a CXI file (your own data: no ground truth, so R-factor and err_fmag "
                    "only). The record is appended to --out (JSON lines) and printed as a table.")
    parser.add_argument("--dataset", required=True, help="catalogue name (ptybench datasets list) or a .cxi file")
    parser.add_argument("--engine", required=True, help="a registered engine (`ptybench engines` lists them)")
    parser.add_argument("--backend", default="numpy", help="numpy, torch, torch:cuda[:k], cupy[:k] (default: numpy)")
    parser.add_argument("--frames-per-block", type=int, default=None, help="frames per block (default: engine's)")
    add_measurement_options(parser)
    parser.add_argument("--out", default="reports/runs/results.jsonl", help="results file (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the whole record as JSON")
    parser.set_defaults(func=run_one)


def run_one(args: argparse.Namespace) -> int:
    from ptybench.report import format_table

    backend, device = parse_target(args.backend)
    require_dataset(args.dataset)
    _require_valid_parameters(args.engine, args.parameters)
    results.require_writable(args.out)
    results.require_free_space(args.out)
    measurement = Measurement(dataset=args.dataset, engine=args.engine, backend=backend, device=device,
                              iterations=args.iterations, warmup=args.warmup, threads=args.threads,
                              frames_per_block=args.frames_per_block, parameters=args.parameters or {},
                              target_error=args.target_error, noise_margin=args.noise_margin,
                              timeout_s=args.timeout_s,
                              memory_limit_bytes=parse_bytes(args.memory_limit) if args.memory_limit else None,
                              host_memory_bytes=parse_bytes(args.host_memory) if args.host_memory else None)
    require_memory_limit(measurement)
    require_emulated_host(measurement)
    from tqdm import tqdm

    # A bar on a terminal (iteration, s/iteration so far, ETA); nothing in a pipe or a log.
    with tqdm(total=measurement.warmup + measurement.iterations, unit="it", disable=None, leave=False,
              desc=f"{measurement.engine} {args.dataset}") as bar:
        record = results.append(args.out, run_isolated(measurement, progress=lambda done, _: bar.update(done - bar.n)))
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        import pandas as pd
        print(format_table(pd.json_normalize([record], max_level=1)))
        print(f"\nrecord appended to {args.out}")
    return 0 if record["status"] == "ok" else 1


def _require_valid_parameters(engine: str, parameters: object) -> None:
    """A bad engine name, key or value is the user's mistake: one line and exit 2 before any process starts,
    not an error record among the measurements."""
    from ptybench.engines.options import ParameterError, parse_parameters

    if parameters is not None and not isinstance(parameters, dict):
        raise InputError(f"--parameters: expected a JSON object, got {parameters!r}")
    try:
        parse_parameters({**(parameters or {}), "engine": engine})
    except ParameterError as error:
        raise InputError(f"--engine/--parameters: {error}") from None
