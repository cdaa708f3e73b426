"""How often does `ptybench compare` cry wolf, and how often does it catch a real slowdown, on this machine?

    python -m ptybench.studies.gate_calibration --comparisons 20 --processes 10 --first-look 5 --out reports/gate

Each comparison is what a CI job does: FIRST_LOOK fresh processes of BASE and of HEAD, interleaved, then
``ptybench.gate``'s verdict; where that is "uncertain", a second look at PROCESSES a side (the first ones and as
many again, measured after them), as ``ptybench compare`` takes on two git revisions. BASE is a built-in
engine; HEAD is the same engine again (identical code: any "slower" or "faster" is a false alarm) or a
plug-in that does 5, 10 or 25 % more work per iteration (``ptybench.studies.slower_engines``: detection). The
variants of one comparison run round-robin, so a slow spell of the machine falls on all of them. Records go to
one results file per variant in OUT (resumable: run again to continue), the table to OUT/calibration.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from ptybench import gate
from ptybench.measurement import Measurement
from ptybench.results import read_records
from ptybench.studies.slower_engines import SLOWDOWNS, slower_name
from ptybench.sweep import run_points
from ptybench.text_table import text_table
from ptybench.timing_stats import VERDICTS

PLUGIN = "ptybench.studies.slower_engines"


def variants(engine: str, slowdowns: tuple[int, ...] = SLOWDOWNS) -> dict[str, str]:
    """Variant label -> engine name; "base" and "identical" are the same engine."""
    return {"base": engine, "identical": engine,
            **{f"slower {percent} %": slower_name(engine, percent) for percent in slowdowns}}


def _file(out: Path, label: str) -> Path:
    return out / f"{label.replace(' %', '').replace(' ', '-')}.jsonl"


def measure(out: Path, engine: str, dataset: str, comparisons: int, processes: int, iterations: int,
            slowdowns: tuple[int, ...] = SLOWDOWNS) -> float:
    """Run every process of every comparison (round-robin over the variants); returns the wall seconds."""
    os.environ["PTYBENCH_ENGINE_MODULES"] = ",".join(
        filter(None, [os.environ.get("PTYBENCH_ENGINE_MODULES"), PLUGIN]))
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for comparison in range(comparisons):
        for process in range(processes):
            for label, name in variants(engine, slowdowns).items():
                point = Measurement(dataset=dataset, engine=name, iterations=iterations, warmup=2, threads=1,
                                    repeat=comparison * processes + process, fft_floor=False, timeout_s=300)
                run_points([point], _file(out, label), progress=False)
        print(f"comparison {comparison + 1}/{comparisons} measured", flush=True)
    return time.perf_counter() - start


def _verdict(base: list[dict], head: list[dict], family: int = 1) -> tuple[str, float, gate.GateRow]:
    (row,) = gate.compare(gate.samples_from_records(base), gate.samples_from_records(head), family=family)
    return next(v for v in row.verdicts if v in VERDICTS), row.time.ratio, row  # the time verdict, as CI sees it


def analyse(out: Path, engine: str, comparisons: int, processes: int, first_look: int | None = None,
            slowdowns: tuple[int, ...] = SLOWDOWNS, family: int = 1,
            measured_processes: int | None = None) -> tuple[str, list[dict]]:
    """The gate's verdicts per variant under two rules: ``first_look`` processes a side, and the same with a
    second look at all ``processes`` when the first is uncertain (as ``ptybench.asv_gate`` takes one; the extra
    processes ran after the first ones, as a CI job's second look does). ``family``: judge the one benchmark at
    the levels a gate over that many benchmarks uses for each (``timing_stats.family_levels``).
    ``measured_processes``: how many a side the study measured per comparison, when the analysis uses only the
    first ``processes`` of them (what a gate with fewer rounds would have seen)."""
    first_look = first_look or processes
    measured_processes = measured_processes or processes
    labels = variants(engine, slowdowns)
    by_label = {label: {r["repeat"]: r for r in read_records(_file(out, label))} for label in labels}
    rows, details = [], []
    for label in list(labels)[1:]:
        outcomes = {"fixed": [], "second look": []}
        ratios, looked_again = [], 0
        for comparison in range(comparisons):
            repeats = range(comparison * measured_processes, comparison * measured_processes + processes)
            base = [by_label["base"][r] for r in repeats if r in by_label["base"]]
            head = [dict(by_label[label][r], engine=engine) for r in repeats if r in by_label[label]]
            if len(base) < processes or len(head) < processes:
                continue
            verdict, ratio, row = _verdict(base[:first_look], head[:first_look], family)
            outcomes["fixed"].append(verdict)
            final = verdict
            if verdict == "uncertain" and processes > first_look:
                final, ratio, row = _verdict(base, head, family)
                looked_again += 1
            outcomes["second look"].append(final)
            ratios.append(ratio)
            details.append({"variant": label, "comparison": comparison, "verdict": verdict, "final": final,
                            "ratio": ratio, "low": row.time.low, "high": row.time.high, "p": row.time.p_value})
        if not ratios:
            continue
        for rule, verdicts in outcomes.items():
            if rule == "second look" and processes == first_look:
                continue
            counts = {verdict: verdicts.count(verdict) for verdict in ("slower", "faster", "same", "uncertain")}
            flagged = counts["slower"] + counts["faster"] if label == "identical" else counts["slower"]
            sides = (f"{first_look}" if rule == "fixed" else
                     f"{first_look} (+{processes - first_look} in {looked_again})")
            rows.append([label, rule, sides, len(verdicts), f"{flagged}/{len(verdicts)}", counts["slower"],
                         counts["faster"], counts["same"], counts["uncertain"], f"{statistics.median(ratios):.3f}",
                         f"{min(ratios):.3f}–{max(ratios):.3f}"])
    table = text_table(["HEAD", "rule", "processes a side", "comparisons", "false alarms / detected", "slower",
                        "faster", "same", "uncertain", "median ratio", "ratio range"], rows, right=range(3, 11))
    return table, details


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ptybench.studies.gate_calibration",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", default="DM")
    parser.add_argument("--dataset", default="farfield-64-256")
    parser.add_argument("--comparisons", type=int, default=20)
    parser.add_argument("--processes", type=int, default=10,
                        help="fresh processes per side of one comparison, both looks (default: %(default)s)")
    parser.add_argument("--first-look", type=int, default=5,
                        help="processes a side of the first look (default: %(default)s)")
    parser.add_argument("--slowdowns", type=lambda text: tuple(int(v) for v in text.split(",")),
                        default=SLOWDOWNS, help="injected slowdowns in percent, of 5,10,25 (default: all)")
    parser.add_argument("--iterations", type=int, default=20, help="timed iterations per process")
    parser.add_argument("--out", type=Path, default=Path("reports/gate"))
    parser.add_argument("--analyse-only", action="store_true")
    parser.add_argument("--measured-processes", type=int, default=None,
                        help="with --analyse-only: processes a side the study measured per comparison, when "
                             "--processes uses only the first of them (default: --processes)")
    parser.add_argument("--judged-together", type=int, default=1,
                        help="judge at the levels of a gate over this many benchmarks (default: %(default)s; the "
                             "Quick set has 14 timings)")
    args = parser.parse_args(argv)
    if args.measured_processes is not None and not (args.analyse_only and args.measured_processes >= args.processes):
        parser.error(f"--measured-processes: expected, with --analyse-only, a count >= --processes "
                     f"({args.processes}), got {args.measured_processes}")
    if not 1 <= args.first_look <= args.processes:
        parser.error(f"--first-look: expected 1..--processes ({args.processes}), got {args.first_look}")
    unknown = set(args.slowdowns) - set(SLOWDOWNS)
    if unknown:
        parser.error(f"--slowdowns: expected some of {list(SLOWDOWNS)}, got {sorted(unknown)}")
    if args.analyse_only:
        missing = [str(_file(args.out, label)) for label in variants(args.engine, args.slowdowns)
                   if not _file(args.out, label).is_file()]
        if missing:
            parser.error(f"--analyse-only: expected the study's results in {args.out}, missing {', '.join(missing)}")
    wall = None
    if not args.analyse_only:
        wall = measure(args.out, args.engine, args.dataset, args.comparisons, args.processes, args.iterations,
                       args.slowdowns)
    table, details = analyse(args.out, args.engine, args.comparisons, args.processes, args.first_look,
                             args.slowdowns, args.judged_together, args.measured_processes)
    base = read_records(_file(args.out, "base"))
    process_wall = statistics.median(r["wall_seconds"] for r in base if r.get("wall_seconds"))
    header = (f"# Gate calibration: {args.engine} on {args.dataset}, {args.first_look} fresh processes a side "
              f"(a second look: {args.processes}), {args.iterations} iterations each, 1 thread; judged at the "
              f"levels of a gate over {args.judged_together} benchmark(s)\n\n"
              f"One look costs 2 × {args.first_look} processes of {process_wall:.1f} s (median wall each): "
              f"{2 * args.first_look * process_wall:.0f} s."
              + (f" This study measured {len(variants(args.engine, args.slowdowns))} variants round-robin in "
                 f"{wall / 60:.1f} min." if wall else "") + "\n")
    text = header + "\n```\n" + table + "\n```\n"
    (args.out / "calibration.md").write_text(text)
    import json

    (args.out / "comparisons.json").write_text(json.dumps(details, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
