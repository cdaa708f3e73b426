"""``ptybench table``, ``ptybench plot`` and ``ptybench report``: results as a table, figures or an HTML report."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from ptybench.commands.argtypes import add_target_options

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
    report = subparsers.add_parser(
        "report", help="one self-contained HTML report of results files and procure bundles",
        description="Write one HTML file (figures embedded; opens from disk with no network): machines side by side "
                    "with their FOMs relative to --reference, validation PASS/FAIL, time and memory against N and "
                    "detector size (model marks, out-of-memory points), backends side by side, scaling curves when "
                    "multi-rank records are present, the forecast and live verdict for --target, and every noisy or "
                    "failed run with its message. Bundles are checked against their manifest's sha256 first.")
    report.add_argument("results", nargs="+", help="results files (JSON lines) or procure bundle folders")
    report.add_argument("--out", default="reports/report.html", help="HTML file (default: %(default)s)")
    report.add_argument("--reference", default=None, help="machine label the ratios are against (default: the first)")
    add_target_options(report)
    report.set_defaults(func=write_html_report)


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




def write_html_report(args: argparse.Namespace) -> int:
    from ptybench.forecast import forecast, parse_rates
    from ptybench.html_report import write_report
    from ptybench.procure import read_results_and_bundles, target_geometry

    rates = parse_rates(args.rates)
    records, manifests = read_results_and_bundles(args.results)
    rows = forecast(records, target_geometry(args.target), args.projections, rates, target_name=args.target)
    path = write_report(args.out, records, rows, args.reference, manifests)
    print(f"report: {path} ({len(records)} records; open it in a browser, it needs no network)")
    return 0
