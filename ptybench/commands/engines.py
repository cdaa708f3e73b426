"""``ptybench engines``: the engines and every key their ``parameters`` mapping accepts."""

from __future__ import annotations

import argparse

from ptybench.engines import describe_options


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "engines", help="the engines (DM, RAAR, ePIE, rPIE, ML) and their parameters",
        description="List the keys of the `parameters` mapping of ptychography(...): run-wide keys, then each "
                    "engine's keys with defaults. `engine` may also be a list of stages, e.g. "
                    '[{"engine": "DM", "iterations": 50}, {"engine": "ML", "iterations": 50}].')
    parser.add_argument("engine", nargs="?", help="only this engine's keys")
    parser.set_defaults(func=list_engines)


def list_engines(args: argparse.Namespace) -> int:
    table = describe_options()
    if args.engine is not None and args.engine not in table:
        raise ValueError(f"engine: expected one of {[k for k in table if k != 'run']}, got {args.engine!r}")
    groups = ["run", args.engine] if args.engine else list(table)
    for group in groups:
        print("run-wide keys" if group == "run" else f"{group} keys")
        for name, default, doc in table[group]:
            print(f"  {name:<20} {default!r:<12} {doc}")
        print()
    return 0
