"""``ptybench demo``: the embedded default — a small sweep (two sizes each way, three engines, NumPy and
torch on the CPU), its results table and its time/memory plot."""

from __future__ import annotations

import argparse
from pathlib import Path

from ptybench.commands.argtypes import comma_list, dataset_list

DEFAULT_DATASETS = ("farfield-64-256", "farfield-64-1024", "farfield-128-256")
DEFAULT_ENGINES = ("DM", "ePIE", "ML")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="a small default sweep: results table + time/memory plot in reports/demo",
        description="Measure DM, ePIE and ML on three small far-field datasets (N = 256 and 1024 frames of 64², "
                    "and 256 frames of 128²) on NumPy and, where installed, torch on the CPU: each point in a "
                    "fresh process, warm-up excluded. Prints the results table and writes the records "
                    "(JSON lines) and a plot of time and memory vs N and detector size. Re-running resumes: "
                    "recorded points are skipped (remove the results file to start again).")
    parser.add_argument("--datasets", type=dataset_list, default=list(DEFAULT_DATASETS),
                        help=f"comma-separated (default: {','.join(DEFAULT_DATASETS)})")
    parser.add_argument("--engines", type=comma_list, default=list(DEFAULT_ENGINES),
                        help=f"comma-separated (default: {','.join(DEFAULT_ENGINES)})")
    parser.add_argument("--backends", type=comma_list, default=None,
                        help="(default: numpy, and torch where it is installed)")
    parser.add_argument("--iterations", type=int, default=8, help="timed iterations (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    parser.add_argument("--out", default="reports/demo", help="output directory (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_demo)


def default_backends() -> list[str]:
    from ptybench.engines.backends import backend_status

    available = {status.name for status in backend_status((("torch", "cpu"),)) if status.available}
    return ["numpy", *(["torch"] if "torch" in available else [])]


def run_demo(args: argparse.Namespace) -> int:
    from ptybench.report import format_table, plot_scaling
    from ptybench.results import require_writable
    from ptybench.sweep import SweepConfig, run_sweep, sweep_results

    out = Path(args.out)
    require_writable(out / "results.jsonl")
    config = SweepConfig(datasets=args.datasets, engines=args.engines, backends=args.backends or default_backends(),
                         iterations=args.iterations, warmup=2, threads=args.threads, timeout_s=300,
                         out=str(out / "results.jsonl"))
    print(f"demo sweep: {len(config.measurements())} measurements ({', '.join(config.datasets)} × "
          f"{', '.join(config.engines)} × {', '.join(config.backends)}), each in a fresh process")
    run_sweep(config, progress=not args.no_progress)
    frame = sweep_results(config)
    print(format_table(frame))
    figure = plot_scaling(frame, out / "scaling.png")
    print(f"\nresults: {config.out}\nplot:    {figure}")
    return 0
