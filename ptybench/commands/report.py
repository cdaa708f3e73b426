"""``ptybench table`` and ``ptybench plot``: a results file as a summary table or as figures."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    table = subparsers.add_parser(
        "table", help="print the summary table of results files",
        description="Print one row per record of the JSON-lines results files (as `ptybench sweep` does at the "
                    "end): time per iteration with spread, throughput, FFT-floor ratio, memory measured vs "
                    "model, object error, R-factor, time to target; failures with their message.")
    table.add_argument("files", nargs="+", help="results files (JSON lines)")
    table.add_argument("--csv", default=None, help="also write the flattened records as CSV here")
    table.set_defaults(func=print_table)
    plot = subparsers.add_parser(
        "plot", help="draw time and memory vs N and detector size into reports/",
        description="Draw time per iteration and algorithm memory (measured, with the memory model) against "
                    "the number of frames N and the detector size, one line per engine and backend; "
                    "out-of-memory points are crosses.")
    plot.add_argument("files", nargs="+", help="results files (JSON lines)")
    plot.add_argument("--out", default="reports/scaling.png", help="figure path (default: %(default)s)")
    plot.set_defaults(func=draw_plot)


def print_table(args: argparse.Namespace) -> int:
    from ptybench.report import format_table
    from ptybench.results import load

    frame = load(args.files)
    print(format_table(frame))
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(args.csv, index=False)
        print(f"\nCSV: {args.csv}")
    return 0


def draw_plot(args: argparse.Namespace) -> int:
    from ptybench.report import plot_scaling
    from ptybench.results import load

    path = plot_scaling(load(args.files), args.out)
    print(f"plot: {path}")
    return 0
