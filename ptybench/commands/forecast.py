"""``ptybench forecast``: the target workload's time, memory, devices and live verdict from a measured ladder."""

from __future__ import annotations

import argparse

from ptybench.commands.argtypes import add_target_options


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "forecast", help="forecast a target workload (time per projection, tomogram, devices, live verdict)",
        description="Fit time per frame·iteration against detector size and N on the validated records "
                    "(median over repeats) of each machine × backend × engine, and forecast the target: time per "
                    "projection and for the tomogram, memory and devices needed (memory model), FOM-S and, per "
                    "detector rate, whether one device keeps up or how many would. Every figure is an ESTIMATE: "
                    "its ± is the hold-out error (refit without the largest measured size, predict it).")
    parser.add_argument("results", nargs="+", help="results files (JSON lines) or procure bundle folders")
    add_target_options(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object per row instead of the table")
    parser.set_defaults(func=run_forecast)


def run_forecast(args: argparse.Namespace) -> int:
    import json

    from ptybench.forecast import forecast, format_forecast, parse_rates
    from ptybench.procure import read_results_and_bundles, target_geometry

    rates = parse_rates(args.rates)
    records, _ = read_results_and_bundles(args.results)
    rows = forecast(records, target_geometry(args.target), args.projections, rates, target_name=args.target)
    if args.json:
        for row in rows:
            print(json.dumps(row, default=str))
    else:
        print(f"ESTIMATE for {args.target}, {args.projections} projections\n")
        print(format_forecast(rows))
    return 0 if rows else 1
