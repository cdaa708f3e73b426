"""``ptybench procure``: the versioned procurement workload under the run rules, as a bundle."""

from __future__ import annotations

import argparse

from ptybench.commands.argtypes import comma_list, positive_int


def _profiles() -> str:
    """The shipped workload's own profile descriptions: one place for what each profile runs and costs."""
    import textwrap
    import tomllib

    from ptybench.workload import DEFAULT_WORKLOAD

    profiles = tomllib.loads(DEFAULT_WORKLOAD.read_text())["profiles"]
    return "\n".join(textwrap.fill(profile["description"], 100, initial_indent=f"  {name:<10}",
                                    subsequent_indent=" " * 12) for name, profile in profiles.items())


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "procure", help="run the procurement workload: results, forecast, HTML report and manifest in one folder",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run a fixed, versioned workload (engines × ladder sizes, ptybench/workloads/procure.toml) "
                    "under the run rules: every configuration --repeats times, each in a fresh process, repeats "
                    "interleaved; every run validated against its engine's object-error threshold; the machine's "
                    "load recorded around each run and noisy runs flagged. Writes OUT/results.jsonl, "
                    "OUT/forecast.json (the seed workload: see `ptybench forecast --help`), OUT/report.html and "
                    "OUT/manifest.json (workload version, machine, versions, commit, tier, sha256 of every file). "
                    "Run it again to resume.",
        epilog="profiles (ptybench/workloads/procure.toml):\n" + _profiles() + "\n\n"
               "run rules (the tier in every record): baseline = built-in engines and backends, tuned only "
               "through\nframes_per_block, residency, threads and ranks; optimized = anything else (changed engine "
               "parameters,\nPTYBENCH_KERNELS/PTYBENCH_FFT, modified source), marked with the reasons.\n\n"
               "examples:\n"
               "  ptybench procure --profile quick --out reports/procure/this-machine\n"
               "  ptybench procure --profile quick --threads 1 --label '1 thread' --out reports/procure/one-thread\n"
               "  ptybench report reports/procure/* --out reports/procure/compare.html")
    parser.add_argument("--profile", default="quick", help="quick, standard or full (default: %(default)s)")
    parser.add_argument("--backends", type=comma_list, default=None,
                        help="comma-separated backends (default: the profile's, numpy); e.g. numpy,torch")
    parser.add_argument("--out", required=True, help="bundle folder (created; resumed when it exists)")
    parser.add_argument("--threads", type=positive_int, default=None, help="CPU threads per run (default: all cores)")
    parser.add_argument("--repeats", type=int, default=None, help="runs per configuration (default: the workload's, 3)")
    parser.add_argument("--label", default=None,
                        help="this machine's name in comparisons (default: the host name)")
    parser.add_argument("--workload", default=None, help="another workload TOML with the same keys")
    parser.add_argument("--retry-failed", action="store_true", help="re-run points recorded as error or timeout")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=procure)


def procure(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ptybench.forecast import format_forecast
    from ptybench.procure import run_procurement

    manifest = run_procurement(args.out, args.profile, args.backends, args.workload, args.threads, args.repeats,
                               args.label, args.retry_failed, progress=not args.no_progress)
    out = Path(args.out)
    rows = json.loads((out / "forecast.json").read_text())
    print(format_forecast(rows))
    wall = manifest["wall_seconds_this_run"]
    print(f"\nbundle {out}: {manifest['records']} records ({manifest['validated']} validated, {manifest['noisy']} "
          f"noisy), tier {manifest['run_rules_tier']}, workload {manifest['workload_version']}, "
          f"{wall / 60:.1f} min this run\n  report: {out / 'report.html'}\n  manifest: {out / 'manifest.json'}")
    return 0
