"""``ptybench demo``: the embedded default run — a small dataset, a few engines, a table and a plot."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ptybench import datasets
from ptybench.engines import Reconstruction

DEFAULT_DATASET = "farfield-64-256"
DEFAULT_ENGINES = ("DM", "ePIE", "ML")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="reconstruct a small synthetic dataset with a few engines: table + plot",
        description="Reconstruct a small synthetic far-field dataset (256 frames of 64x64) with a few engines "
                    "on NumPy, print time per iteration and reconstruction quality, and draw the convergence "
                    "curves and the reconstructed phases.")
    parser.add_argument("--dataset", default=DEFAULT_DATASET, help="catalogue name (default: %(default)s)")
    parser.add_argument("--engines", default=",".join(DEFAULT_ENGINES),
                        help="comma-separated engines (default: %(default)s)")
    parser.add_argument("--iterations", type=int, default=50, help="iterations per engine (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    parser.add_argument("--out", default="reports/demo", help="output directory (default: %(default)s)")
    parser.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from ptybench.plots import plot_demo

    data = datasets.load(args.dataset)
    arrays = data.arrays()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"dataset {args.dataset}: {data.spec.describe()}")
    rows, results = [], {}
    for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
        parameters = {"engine": engine, "iterations": args.iterations, "threads": args.threads,
                      **data.engine_parameters()}
        start = time.perf_counter()
        result = Reconstruction(**arrays, parameters=parameters, true_object=data.ground_truth_object(),
                                true_probe=data.ground_truth_probe()).run()
        wall = time.perf_counter() - start
        seconds = result.column("seconds")[1:]  # the first iteration is warm-up
        final = result.final
        rows.append({"engine": engine, "iterations": args.iterations, "s_per_iter": float(np.median(seconds)),
                     "wall_s": wall, "object_error": final.object_error, "r_factor": final.r_factor,
                     "err_fmag": final.err_fmag})
        results[engine] = result
    print(f"\n{'engine':<6} {'s/iter':>8} {'total s':>8} {'object error':>13} {'R-factor':>9}")
    for row in rows:
        print(f"{row['engine']:<6} {row['s_per_iter']:>8.4f} {row['wall_s']:>8.2f} "
              f"{row['object_error']:>13.4f} {row['r_factor']:>9.4f}")
    table = out / "results.json"
    table.write_text(json.dumps({"dataset": args.dataset, "rows": rows}, indent=2))
    figure = plot_demo(results, data, out / "demo.png")
    print(f"\nresults: {table}\nplot:    {figure}")
    return 0
