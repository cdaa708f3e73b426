"""``ptybench compare BASE HEAD``: the regression gate, for results files or two git revisions (through asv)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from ptybench.asv_gate import GATE_THREADS, compare_revisions
from ptybench.commands.argtypes import byte_size, positive_float, positive_int
from ptybench.engines.errors import InputError
from ptybench.gate import DEFAULT_ERROR_TOLERANCE, DEFAULT_MEMORY_FACTOR, DEFAULT_MEMORY_FLOOR
from ptybench.timing_stats import DEFAULT_ALPHA, DEFAULT_MIN_EFFECT

EXIT_REGRESSED = 1


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare", help="regression gate: BASE against HEAD (results files or git revisions), per benchmark",
        description="Compare BASE with HEAD per benchmark and say, for each: faster, slower, same or uncertain "
                    "(time: ratio of medians HEAD/BASE with its 99 % bootstrap interval; slower/faster needs both "
                    "the Mann–Whitney U test at p < --alpha and a change beyond --min-effect; with k timings each "
                    "is judged at --alpha/k and a 1 - 0.01/k interval, Bonferroni), memory growth "
                    "(median measured footprint up by more than --memory-factor and --memory-floor), accuracy loss "
                    "(median object error, else R-factor, up by more than --error-tolerance) and failures. BASE "
                    "and HEAD are results files written by ptybench (every record's per-iteration seconds are "
                    "one process's samples: `ptybench sweep ... --repeats 5`), or two git revisions, which asv "
                    "builds and runs in interleaved rounds of fresh processes with recorded samples, and a second "
                    "look at a benchmark still uncertain. Exit status 1 when anything is slower, bigger, less "
                    "accurate or failing; 0 otherwise.")
    parser.add_argument("base", help="BASE: a results file (JSON lines) or a git revision")
    parser.add_argument("head", help="HEAD: a results file or a git revision")
    parser.add_argument("--min-effect", type=positive_float, default=DEFAULT_MIN_EFFECT,
                        help="smallest time change that counts, as a fraction (default: %(default)s)")
    parser.add_argument("--alpha", type=positive_float, default=DEFAULT_ALPHA,
                        help="significance level of the Mann–Whitney U test (default: %(default)s, asv's)")
    parser.add_argument("--memory-floor", type=byte_size, default=DEFAULT_MEMORY_FLOOR,
                        help="memory growth smaller than this is not growth, whatever its ratio (default: 8MiB)")
    parser.add_argument("--memory-factor", type=positive_float, default=DEFAULT_MEMORY_FACTOR,
                        help="memory growth that fails the gate (default: %(default)s)")
    parser.add_argument("--error-tolerance", type=positive_float, default=DEFAULT_ERROR_TOLERANCE,
                        help="relative rise of the error that fails the gate (default: %(default)s)")
    parser.add_argument("--bench", default="Quick",
                        help="git revisions only: asv benchmark selection (default: %(default)s)")
    parser.add_argument("--rounds", type=positive_int, default=4,
                        help="git revisions only: rounds of each timing benchmark, one fresh process each, "
                             "interleaved between the commits (default: %(default)s)")
    parser.add_argument("--threads", type=positive_int, default=GATE_THREADS,
                        help="git revisions only: threads of every benchmark (default: %(default)s; on a 2-core box "
                             "two threads made most processes' timings unusable)")
    parser.add_argument("--second-look", action=argparse.BooleanOptionalAction, default=True,
                        help="git revisions only: when a benchmark's time is uncertain after the rounds, run more "
                             "rounds of that benchmark (--second-look-rounds) and judge all of them (default: on)")
    parser.add_argument("--second-look-rounds", type=positive_int, default=None,
                        help="git revisions only: rounds of the second look (default: twice --rounds). On the "
                             "2-core box 4 + 8 caught every 10 %% and 25 %% slowdown in 20 comparisons of each with "
                             "no false alarm, 4 + 4 19 of 20 each (docs/guide.md, 'The regression gate')")
    parser.add_argument("--json", action="store_true", help="one JSON object per benchmark instead of the table")
    parser.set_defaults(func=run_compare)


def _is_results_file(text: str) -> bool:
    return Path(text).is_file()


def run_compare(args: argparse.Namespace) -> int:
    from ptybench import gate
    from ptybench.results import read_records

    files = [_is_results_file(args.base), _is_results_file(args.head)]
    if any(files) and not all(files):
        raise InputError(f"compare: BASE and HEAD must both be results files or both git revisions, got "
                         f"{args.base!r} and {args.head!r}")
    judge = {"min_effect": args.min_effect, "alpha": args.alpha, "memory_factor": args.memory_factor,
             "error_tolerance": args.error_tolerance, "memory_floor": args.memory_floor}
    if all(files):
        rows = gate.compare(gate.samples_from_records(read_records(args.base)),
                            gate.samples_from_records(read_records(args.head)), **judge)
    else:
        rows = compare_revisions(args.base, args.head, args.bench, args.rounds, args.second_look, args.threads,
                                 args.second_look_rounds, **judge)
    if not rows:
        raise InputError(f"compare: no benchmarks in {args.base!r} or {args.head!r}")
    if args.json:
        for row in rows:
            print(json.dumps({**asdict(row), "fails": row.fails}))
    else:
        print(gate.format_rows(rows))
        print("\n" + gate.summary(rows))
    return EXIT_REGRESSED if any(row.fails for row in rows) else 0
