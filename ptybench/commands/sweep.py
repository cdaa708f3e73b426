"""``ptybench sweep``: many measurements from a TOML file or flags, resumable, with a summary table."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ptybench.commands.argtypes import comma_list, count_list, dataset_list
from ptybench.commands.run import add_measurement_options
from ptybench.engines.errors import InputError

if TYPE_CHECKING:
    from ptybench.sweep import SweepConfig


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep", help="measure datasets × engines × backends × frames_per_block × threads; resumable",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Measure every combination, each in a fresh subprocess under --timeout, appending one record "
                    "per point to --out as soon as it exists. Run it again to resume: points already in --out "
                    "are skipped (--retry-failed re-runs those recorded as error or timeout). Failures are data: "
                    "out-of-memory, divergence and timeouts are recorded and the sweep goes on.",
        epilog="A CONFIG.toml holds the same settings; flags given on the command line override it:\n\n"
               '  datasets = ["farfield-64-256", "farfield-128-1024"]\n'
               '  engines = ["DM", "ePIE", "ML"]\n'
               '  backends = ["numpy", "torch"]          # torch:cuda, cupy:0 on a GPU\n'
               "  frames_per_block = [0]                 # 0 = the engine's default\n"
               "  iterations = 10\n  warmup = 2\n  threads = [1, 2]                      # one or several\n"
               "  timeout_s = 600\n"
               '  memory_limit = "8GB"                   # optional\n'
               '  host_memory = "2GB"                    # optional: an emulated host (memory cgroup)\n'
               '  out = "reports/sweep/results.jsonl"\n'
               "  repeats = 3                            # fresh processes per point, interleaved\n"
               "  [parameters]                           # optional; keys go to the engines that take them\n"
               '  photons_per_unit = 1.0                 # run-wide: every engine\n'
               "  [parameters.DM]                        # one engine's own keys\n"
               "  pbound = 0.1\n"
               "  [parameters.ML]\n"
               '  noise = "poisson"\n\n'
               "A key no selected engine takes, or a bad value, is an error before anything runs (exit 2).")
    parser.add_argument("config", nargs="?", help="sweep TOML file (optional when the lists are given as flags)")
    parser.add_argument("--datasets", type=dataset_list, help="comma-separated catalogue names or .cxi files")
    parser.add_argument("--engines", type=comma_list, help="comma-separated engines")
    parser.add_argument("--backends", type=comma_list,
                        help="comma-separated backends (numpy, torch, torch:cuda, cupy:0)")
    parser.add_argument("--frames-per-block", type=count_list(0),
                        help="comma-separated frames per block (0 = default)")
    add_measurement_options(parser, grid=True)
    parser.add_argument("--out", default=None, help="results file (default: reports/sweep/results.jsonl)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="runs of every point, each a fresh process, repeats outermost so points interleave "
                             "(default: 1; `ptybench compare` pools them)")
    parser.add_argument("--retry-failed", action="store_true", help="re-run points recorded as error or timeout")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_sweep_command)


def config_from_args(args: argparse.Namespace) -> SweepConfig:
    from ptybench.sweep import SweepConfig

    overrides = {"datasets": args.datasets, "engines": args.engines, "backends": args.backends,
                 "frames_per_block": args.frames_per_block, "iterations": args.iterations, "warmup": args.warmup,
                 "threads": args.threads,
                 "timeout_s": args.timeout_s, "target_error": args.target_error,
                 "noise_margin": args.noise_margin, "memory_limit": args.memory_limit,
                 "host_memory": args.host_memory,
                 "parameters": args.parameters, "out": args.out, "repeats": args.repeats}
    if args.config:
        return SweepConfig.from_toml(args.config, **overrides)
    missing = [name for name in ("datasets", "engines") if overrides[name] is None]
    if missing:
        raise InputError(f"sweep: give a CONFIG.toml or --{' and --'.join(missing)}")
    return SweepConfig(**{key: value for key, value in overrides.items() if value is not None})


def run_sweep_command(args: argparse.Namespace) -> int:
    from ptybench.measurement import require_emulated_host, require_memory_limit
    from ptybench.report import format_table
    from ptybench.results import require_writable
    from ptybench.sweep import pending, run_sweep, sweep_results

    config = config_from_args(args)
    require_writable(config.out)
    for measurement in config.measurements():
        require_memory_limit(measurement)
        require_emulated_host(measurement)
    total = len(config.measurements())
    todo = len(pending(config.measurements(), config.out, args.retry_failed))
    print(f"sweep: {total} points, {total - todo} already in {config.out}, {todo} to measure")
    new = run_sweep(config, retry_failed=args.retry_failed, progress=not args.no_progress)
    frame = sweep_results(config)
    print(format_table(frame))
    print(f"\n{len(new)} new records in {config.out}; `ptybench table {config.out}` prints this again, "
          f"`ptybench plot {config.out}` draws it")
    failed = [record for record in new if record["status"] in ("error", "timeout")]
    if new and len(failed) == len(new):
        messages = {record["message"].splitlines()[0] if record["message"] else "" for record in failed}
        print(f"ptybench: error: every point failed ({'; '.join(sorted(messages))[:300]})", file=sys.stderr)
        return 1
    return 0
