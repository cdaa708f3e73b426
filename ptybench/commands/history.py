"""``ptybench history RESULTS``: dated series per benchmark, change points, and the measurement log."""

from __future__ import annotations

import argparse

from ptybench.commands.argtypes import positive_float


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "history", help="a results history as dated series per benchmark; --changes finds where each changed",
        description="Read results files (a nightly series: each run appended to one file, or one file per night) "
                    "and show every benchmark's runs in date order with commit, machine, s/iter and error. "
                    "--changes detects change points in each series (ruptures' PELT on log s/iter, penalty "
                    "4·σ²·log n with σ the series' own noise) and prints each change with the medians before and "
                    "after; the exit status is 1 when a change made a benchmark slower by more than --min-effect. "
                    "--markdown FILE writes the dated measurement log instead.")
    parser.add_argument("results", nargs="+", help="results files (JSON lines)")
    parser.add_argument("--changes", action="store_true", help="detect change points in every series")
    parser.add_argument("--min-effect", type=positive_float, default=0.05,
                        help="a change slower than this fraction fails (default: %(default)s)")
    parser.add_argument("--penalty", type=positive_float, default=1.0,
                        help="scale of the change-point penalty: larger finds fewer changes (default: %(default)s)")
    parser.add_argument("--markdown", default=None, metavar="FILE", help="write the dated log as Markdown to FILE")
    parser.set_defaults(func=run_history)


def run_history(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ptybench.history import change_points, markdown_log, series
    from ptybench.results import read_records, replace_atomically
    from ptybench.text_table import text_table

    histories = series(read_records(args.results))
    try:
        changes = [change for name, entries in histories.items()
                   for change in change_points(name, entries, args.penalty)] if args.changes or args.markdown else []
    except ImportError:
        from ptybench.engines.errors import InputError

        raise InputError("history --changes needs ruptures (pip install 'ptybench[bench]')") from None
    if args.markdown:
        path = replace_atomically(Path(args.markdown), markdown_log(histories, changes, args.results))
        print(f"measurement log: {path} ({sum(map(len, histories.values()))} runs, {len(histories)} benchmarks)")
        return 0
    if not args.changes:
        rows = [[name, entry.created[:16].replace("T", " "), entry.commit, entry.machine,
                 f"{entry.seconds_per_iteration:.4g}" if entry.seconds_per_iteration else "",
                 f"{entry.error:.4f}" if entry.error is not None else "", entry.status]
                for name, entries in histories.items() for entry in entries]
        print(text_table(["benchmark", "date", "commit", "machine", "s/iter", "error", "status"], rows, right=(4, 5)))
        return 0
    if not changes:
        print(f"no change points in {len(histories)} series")
        return 0
    print(text_table(["benchmark", "from", "commit", "before s/iter", "after s/iter", "ratio", "verdict"],
                     [[c.benchmark, c.created[:16].replace("T", " "), c.commit or "?", f"{c.before:.4g}",
                       f"{c.after:.4g}", f"{c.ratio:.3f}",
                       "slower" if c.ratio > 1 + args.min_effect else "faster" if c.ratio < 1 / (1 + args.min_effect)
                       else "small"] for c in changes], right=(3, 4, 5)))
    return 1 if any(c.ratio > 1 + args.min_effect for c in changes) else 0
