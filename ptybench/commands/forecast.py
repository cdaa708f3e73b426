"""``ptybench forecast``: the target workload's time, memory, devices and live verdict from a measured ladder."""

from __future__ import annotations

import argparse

from ptybench.commands.argtypes import add_target_options


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "forecast", help="forecast a target workload (time per projection, tomogram, devices, live verdict)",
        description="Forecast the target workload from the validated records of each machine × backend × engine: "
                    "time per projection and for the tomogram, memory and devices needed (memory model), FOM-S and, "
                    "per detector rate, whether one device keeps up or how many would. Where runs at the target's "
                    "own frame size exist (the quick profile makes them), time per iteration there is fitted as a "
                    "cost per frame plus a cost per object pixel, so only N is extrapolated, and the interval is a "
                    "95 % bootstrap over the repeats; otherwise a power law in (detector², N) over the ladder is "
                    "used and its ± is the hold-out error (refit without the largest measured size, predict it). "
                    "Where both exist the ladder's figure is printed beside the other as a cross-check. Every row "
                    "says what was measured and what extrapolated; every figure is an ESTIMATE.")
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
