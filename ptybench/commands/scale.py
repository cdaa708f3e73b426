"""``ptybench scale``: strong or weak scaling over MPI ranks, with fits, plots and predictions."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "scale", help="strong/weak MPI scaling curves with Amdahl, Gustafson and Karp–Flatt fits",
        description="For each rank count K, launch `mpiexec -n K python -m mpi4py -m ptybench.mpi_run` under "
                    "--timeout and append one record (with per-rank compute and communication times) to --out. "
                    "Strong: the dataset is fixed. Weak: frames per rank are fixed (--frames-per-rank, default "
                    "N / min(ranks)), so N and the scanned area grow with K. Prints speedup, efficiency and the "
                    "Karp–Flatt serial fraction per point, the Amdahl (strong) or Gustafson (weak) fit, and "
                    "draws speedup/efficiency and compute-vs-communication bars into reports/. --predict "
                    "extrapolates with the fit plus an all-reduce model measured on this machine (a "
                    "prediction, labelled as such). Resumable: points already in --out are reused.")
    parser.add_argument("--mode", choices=("strong", "weak"), default="strong")
    parser.add_argument("--ranks", default="1,2", help="comma-separated rank counts (default: %(default)s)")
    parser.add_argument("--dataset", required=True, help="catalogue name or .cxi file (strong only)")
    parser.add_argument("--engine", default="DM", help="(default: %(default)s)")
    parser.add_argument("--backend", default="numpy", help="numpy, torch, torch:cuda, cupy (one GPU per rank)")
    parser.add_argument("--threads-per-rank", type=int, default=1, help="CPU threads per rank (default: %(default)s)")
    parser.add_argument("--frames-per-rank", type=int, default=None, help="weak scaling: frames on each rank")
    parser.add_argument("--iterations", type=int, default=10, help="timed iterations (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=900.0, dest="timeout_s", help="seconds per point")
    parser.add_argument("--predict", default=None, help="comma-separated rank counts to extrapolate to (strong)")
    parser.add_argument("--out", default="reports/scaling/results.jsonl", help="results file (default: %(default)s)")
    parser.add_argument("--plot", default=None, help="figure path (default: beside --out)")
    parser.set_defaults(func=run_scale)


def _ints(text: str, name: str) -> list[int]:
    try:
        values = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise ValueError(f"{name}: expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise ValueError(f"{name}: expected positive integers, got {text!r}")
    return values


def run_scale(args: argparse.Namespace) -> int:
    from ptybench import results
    from ptybench.engines.backends import parse_target
    from ptybench.measurement import Measurement
    from ptybench.report import plot_scaling_curves
    from ptybench.scaling import (
        fit_amdahl,
        fit_gustafson,
        mpiexec_path,
        predict_strong,
        run_allreduce_benchmark,
        run_mpi,
        scaling_points,
        scaling_table,
    )

    results.require_writable(args.out)

    mpiexec_path()  # a clear message now rather than a failed record per point
    ranks = _ints(args.ranks, "--ranks")
    backend, device = parse_target(args.backend)
    base = Measurement(dataset=args.dataset, engine=args.engine, backend=backend, device=device,
                       iterations=args.iterations, warmup=args.warmup, threads=args.threads_per_rank,
                       timeout_s=args.timeout_s, fft_floor=False)
    points = scaling_points(base, args.mode, ranks, args.frames_per_rank)
    stored = {r["key"]: r for r in results.read_records(args.out)} if Path(args.out).exists() else {}
    records = []
    for point in points:
        key = results.measurement_key(point.identity())
        if key in stored and stored[key]["status"] == "ok":
            print(f"K = {point.ranks}: already in {args.out}")
            records.append(stored[key])
            continue
        print(f"K = {point.ranks}: measuring ...", flush=True)
        record = results.append(args.out, {**run_mpi(point), "scaling_mode": args.mode})
        if record["status"] != "ok":
            print(f"  {record['status']}: {record.get('message', '').strip()}")
        records.append(record)
    rows = scaling_table(records, args.mode)
    print(f"\n{args.mode} scaling, {args.engine} on {args.backend}, {args.threads_per_rank} thread(s) per rank"
          f"{' (more ranks than cores: oversubscribed)' if max(ranks) * args.threads_per_rank > _cores() else ''}")
    print(f"{'ranks':>5} {'N':>7} {'s/iter':>9} {'compute':>9} {'comm':>9} {'speedup':>8} {'effic.':>7} "
          f"{'Karp-Flatt':>10} {'obj err':>8}")
    for row in rows:
        print(f"{row['ranks']:>5} {row['n_frames']:>7} {row['seconds']:>9.4f} {row['compute_s'] or 0:>9.4f} "
              f"{row['communication_s'] or 0:>9.4f} {row['speedup']:>8.3f} {row['efficiency']:>7.3f} "
              f"{row['karp_flatt']:>10.4f} {_maybe(row['object_error']):>8}")
    amdahl, prediction = None, None
    if len(rows) >= 2 and args.mode == "strong":
        amdahl = fit_amdahl([r["ranks"] for r in rows], [r["seconds"] for r in rows])
        print(f"\nAmdahl fit: serial fraction s = {amdahl.serial_fraction:.4f}, T1 = {amdahl.t1:.4f} s "
              f"(max speedup 1/s = {1 / max(amdahl.serial_fraction, 1e-9):.1f})")
    if len(rows) >= 2 and args.mode == "weak":
        serial = fit_gustafson([r["ranks"] for r in rows], [r["speedup"] for r in rows])
        print(f"\nGustafson fit: serial fraction s = {serial:.4f} (scaled speedup K − s·(K − 1))")
    if args.predict and rows and args.mode == "strong":
        compute = fit_amdahl([r["ranks"] for r in rows], [r["compute_s"] for r in rows]) if len(rows) >= 2 else None
        benchmark = run_allreduce_benchmark(2)
        from ptybench.scaling import AllreduceModel
        model = AllreduceModel(benchmark["latency_s"], benchmark["bandwidth_bytes_per_s"])
        bytes_per_iteration = next(r for r in records if r["status"] == "ok")["bytes_reduced_per_iteration"]
        if compute is not None:
            prediction = predict_strong(compute, model, bytes_per_iteration, _ints(args.predict, "--predict"))
            print(f"\nPREDICTION (not measured): compute from the Amdahl fit of compute times, all-reduce of "
                  f"{bytes_per_iteration / 1e6:.2f} MB/iteration with latency {model.latency_s * 1e6:.1f} µs and "
                  f"bandwidth {model.bandwidth_bytes_per_s / 1e9:.2f} GB/s (ring model, measured here on 2 ranks)")
            for row in prediction:
                print(f"  K = {row['ranks']:>5}: {row['seconds']:.4f} s/iter (compute {row['compute_s']:.4f}, "
                      f"communication {row['communication_s']:.4f}), speedup {row['speedup']:.2f}, "
                      f"efficiency {row['efficiency']:.3f}")
    if rows:
        figure = Path(args.plot) if args.plot else Path(args.out).with_name(f"{args.mode}-{args.engine}.png")
        plot_scaling_curves(rows, args.mode, figure, amdahl, prediction,
                            title=f"{args.mode} scaling: {args.engine}, {args.dataset}, {args.backend}")
        print(f"\nplot: {figure}")
    return 0 if all(r["status"] == "ok" for r in records) else 1


def _maybe(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _cores() -> int:
    import os
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
