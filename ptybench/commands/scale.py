"""``ptybench scale``: strong or weak scaling over MPI ranks, with fits, plots and predictions."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from ptybench.engines.errors import InputError
from ptybench.measurement import require_dataset
from ptybench.text_table import text_table


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
                    "prediction, labelled as such). Resumable and claimed like `sweep`: points already in --out are "
                    "reused, and two runs on one --out never measure a point twice; a point under another "
                    "launcher (an emulated network, srun) is another point.")
    parser.add_argument("--mode", choices=("strong", "weak"), default="strong")
    parser.add_argument("--ranks", default=None,
                        help="comma-separated rank counts (default: 1,2; with --emit-job 1,2,4,… up to nodes × "
                             "ranks per node)")
    parser.add_argument("--dataset", required=True, help="catalogue name or .cxi file (strong only)")
    parser.add_argument("--engine", default="DM", help="(default: %(default)s)")
    parser.add_argument("--backend", default="numpy", help="numpy, torch, torch:cuda, cupy (one GPU per rank)")
    parser.add_argument("--threads-per-rank", type=int, default=1, help="CPU threads per rank (default: %(default)s)")
    parser.add_argument("--frames-per-rank", type=int, default=None, help="weak scaling: frames on each rank")
    parser.add_argument("--iterations", type=int, default=10, help="timed iterations (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=900.0, dest="timeout_s", help="seconds per point")
    parser.add_argument("--predict", default=None,
                        help="comma-separated rank counts to predict (strong), e.g. 8,64,512: compute, communication "
                             "and total per K from the per-stage model, for --dataset and for --target")
    parser.add_argument("--target", default="seed-2552x768",
                        help="also predict this catalogue workload (default: %(default)s)")
    parser.add_argument("--holdout", action="store_true",
                        help="fit the per-stage model on all but the largest rank count and compare its prediction "
                             "for the largest with the measurement (compute and communication separately)")
    parser.add_argument("--out", default="reports/scaling/results.jsonl",
                        help="results file (default: %(default)s); with --emit-job, the job script to write")
    parser.add_argument("--plot", default=None, help="figure path (default: beside --out)")
    parser.add_argument("--retry-failed", action="store_true",
                        help="measure again the points stored as error, timeout or oom (default: reuse every "
                             "stored point, as `sweep` does)")
    launch = parser.add_argument_group("launching ranks (where users run)")
    launch.add_argument("--launcher", default="mpiexec",
                        help="mpiexec (MPICH or Open MPI), srun (inside a Slurm allocation) or a template with "
                             "{ranks}, e.g. 'mpirun -np {ranks} --hostfile hosts' (default: %(default)s)")
    launch.add_argument("--hostfile", default=None, help="hosts file for mpiexec (PBS: $PBS_NODEFILE)")
    launch.add_argument("--ranks-per-node", type=int, default=None, help="ranks on each node")
    launch.add_argument("--gpus-per-node", type=int, default=None, help="GPUs on each node (one per rank)")
    launch.add_argument("--emulate-network", default=None, metavar="RATE[,DELAY]",
                        help="run the ranks as two hosts on one machine: separate network namespaces joined by a "
                             "veth pair shaped to RATE (e.g. 1gbit) and DELAY (e.g. 200us, where the kernel has "
                             "netem), MPICH on its TCP path; needs root and iproute2")
    job = parser.add_argument_group("batch job (--emit-job writes a script instead of running)")
    job.add_argument("--emit-job", choices=("slurm", "pbs"), default=None,
                     help="write a batch script that runs this scale study to --out")
    job.add_argument("--nodes", type=int, default=1, help="nodes to request (default: %(default)s)")
    job.add_argument("--time", default="01:00:00", help="wall time HH:MM:SS (default: %(default)s)")
    job.add_argument("--module", action="append", default=[], help="a line such as 'module load cray-mpich' (repeat)")
    job.add_argument("--env", action="append", default=[], help="NAME=VALUE exported in the job (repeat)")
    job.add_argument("--account", default=None, help="account / project to charge")
    job.add_argument("--partition", default=None, help="partition (Slurm) or queue (PBS)")
    job.add_argument("--force", action="store_true", help="replace an existing job script at --out")
    job.add_argument("--results", default="scale-results.jsonl",
                     help="the job's results file (default: %(default)s, relative to the submit directory)")
    parser.set_defaults(func=run_scale)


def _ints(text: str, name: str) -> list[int]:
    try:
        values = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise InputError(f"{name}: expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise InputError(f"{name}: expected positive integers, got {text!r}")
    return values


def run_scale(args: argparse.Namespace) -> int:
    from ptybench import results
    from ptybench.launchers import Launcher

    require_dataset(args.dataset)
    if args.emit_job:
        return emit_job(args)
    launcher = Launcher.parse(args.launcher, args.hostfile, args.ranks_per_node, args.gpus_per_node)
    if args.emulate_network:
        from ptybench.emulated_network import Shaping, emulated_network

        shaping = Shaping.parse(args.emulate_network)
        results.require_writable(args.out)
        with emulated_network(shaping, max(_ints(args.ranks or "1,2", "--ranks"))) as network:
            print(f"emulated network: ranks in namespaces {[n for n, _ in network.namespaces]}, veth shaped to "
                  f"{shaping.rate_bits_per_s / 1e9:g} Gbit/s"
                  + (f", {shaping.delay_s * 1e6:g} µs" if shaping.delay_s else " (no delay shaped)"))
            return _study(args, network)
    return _study(args, launcher)


def _study(args: argparse.Namespace, launcher: Any) -> int:
    from ptybench import results
    from ptybench.engines.backends import parse_target
    from ptybench.measurement import Measurement
    from ptybench.report import plot_scaling_curves
    from ptybench.scaling import fit_amdahl, fit_gustafson, mpiexec_path, run_mpi, scaling_points, scaling_table
    from ptybench.sweep import latest_records, run_points

    predict = _ints(args.predict, "--predict") if args.predict else None
    results.require_writable(args.out)
    if launcher.kind in ("mpiexec", "emulated-network"):
        mpiexec_path()  # a clear message now rather than a failed record per point
    launcher.command(1, [])
    ranks = _ints(args.ranks or "1,2", "--ranks")
    backend, device = parse_target(args.backend)
    base = Measurement(dataset=args.dataset, engine=args.engine, backend=backend, device=device,
                       iterations=args.iterations, warmup=args.warmup, threads=args.threads_per_rank,
                       timeout_s=args.timeout_s, fft_floor=False)
    points = scaling_points(base, args.mode, ranks, args.frames_per_rank)
    kind = None if launcher.kind == "mpiexec" else launcher.kind
    points = [dataclasses.replace(point, launcher=kind) for point in points]

    def measure(point: Measurement) -> dict[str, Any]:
        return {**run_mpi(point, launcher=launcher), "scaling_mode": args.mode}

    # The sweep's loop: resumable (a stored point is reused; --retry-failed measures failures again) and claimed,
    # so two `scale` runs on one results file never measure a point twice.
    run_points(points, args.out, retry_failed=args.retry_failed, run=measure)
    records = latest_records(points, args.out)
    for record in records:
        if record["status"] != "ok":
            print(f"K = {record['ranks']}: {record['status']}: {(record.get('message') or '').strip()}")
    rows = scaling_table(records, args.mode)
    print(f"\n{args.mode} scaling, {args.engine} on {args.backend}, {args.threads_per_rank} thread(s) per rank"
          f"{' (more ranks than cores: oversubscribed)' if max(ranks) * args.threads_per_rank > _cores() else ''}")
    print(text_table(
        ["ranks", "N", "s/iter", "compute", "comm", "speedup", "effic.", "Karp-Flatt", "obj err"],
        [[row["ranks"], row["n_frames"], f"{row['seconds']:.4f}", f"{row['compute_s'] or 0:.4f}",
          f"{row['communication_s'] or 0:.4f}", f"{row['speedup']:.3f}", f"{row['efficiency']:.3f}",
          f"{row['karp_flatt']:.4f}", _maybe(row["object_error"])] for row in rows], right=range(9)))
    amdahl, prediction = None, None
    if len(rows) >= 2 and args.mode == "strong":
        amdahl = fit_amdahl([r["ranks"] for r in rows], [r["seconds"] for r in rows])
        print(f"\nAmdahl fit (a description of the measured points, not the prediction): serial fraction "
              f"s = {amdahl.serial_fraction:.4f}, T1 = {amdahl.t1:.4f} s")
    if len(rows) >= 2 and args.mode == "weak":
        serial = fit_gustafson([r["ranks"] for r in rows], [r["speedup"] for r in rows])
        print(f"\nGustafson fit: serial fraction s = {serial:.4f} (scaled speedup K − s·(K − 1))")
    ok = [r for r in records if r["status"] == "ok"]
    if (args.holdout or predict) and ok and args.mode == "strong":
        prediction = _model_report(args, ok, launcher, predict)
    if rows:
        figure = Path(args.plot) if args.plot else Path(args.out).with_name(f"{args.mode}-{args.engine}.png")
        plot_scaling_curves(rows, args.mode, figure, amdahl, prediction,
                            title=f"{args.mode} scaling: {args.engine}, {args.dataset}, {args.backend}")
        print(f"\nplot: {figure}")
    return 0 if all(r["status"] == "ok" for r in records) else 1


def _model_report(args: argparse.Namespace, ok: list[dict], launcher, predict: list[int] | None) -> list[dict] | None:
    """Hold-out check and predictions of the per-stage model (ptybench.scaling_model)."""
    from ptybench.procure import target_geometry
    from ptybench.scaling import AllreduceModel, run_allreduce_benchmark
    from ptybench.scaling_model import fit_stage_model, hold_out, seed_scales

    benchmark = run_allreduce_benchmark(max(2, min(max(r["ranks"] for r in ok), _cores())), launcher=launcher)
    allreduce = AllreduceModel(benchmark["latency_s"], benchmark["bandwidth_bytes_per_s"])
    print(f"\nall-reduce on this launcher: latency α = {allreduce.latency_s * 1e6:.1f} µs, bandwidth "
          f"β = {allreduce.bandwidth_bytes_per_s / 1e9:.3f} GB/s ({benchmark['ranks']} ranks, 4 KB–64 MB)")
    uncertainty = None
    check = hold_out(ok, allreduce)
    if args.holdout:
        if check is None:
            print("hold-out: needs two or more rank counts measured")
        else:
            print(f"hold-out: model fitted on K = {','.join(map(str, check['fitted_on']))}, predicting K = "
                  f"{check['ranks']}")
            for part, label in (("compute_s", "compute"), ("communication_s", "communication"), ("seconds", "total")):
                error = check["relative_error"][part]
                print(f"  {label:>13}: predicted {check['predicted'][part]:.4f} s, measured "
                      f"{check['measured'][part]:.4f} s, error {'n/a' if error is None else f'{error:+.1%}'}")
    if check is not None and check["relative_error"]["seconds"] is not None:
        uncertainty = abs(check["relative_error"]["seconds"])
    if not predict:
        return None
    model = fit_stage_model(ok, allreduce)
    band = "unknown (measure two rank counts for a hold-out)" if uncertainty is None else f"±{uncertainty:.0%}"
    print(f"\nPREDICTION (not measured), per-stage model fitted on K = {max(r['ranks'] for r in ok)}; "
          f"uncertainty {band} (hold-out)")
    print(f"  per frame {model.seconds_per_frame * 1e3:.3f} ms, per object {model.object_seconds * 1e3:.2f} ms, "
          f"imbalance {model.imbalance:.3f}, {model.bytes_per_iteration / 1e6:.2f} MB in "
          f"{model.calls_per_iteration:.0f} all-reduce calls per iteration")
    rows = []
    t1 = model.predict(1)["seconds"]
    geometry = target_geometry(args.target)
    scales = seed_scales(model, geometry)
    for title, chosen, reference in ((args.dataset, {}, t1),
                                     (f"{args.target} (per frame scaled as D² log D², object by area)", scales,
                                      model.predict(1, **scales)["seconds"])):
        print(f"  {title}:")
        for k in predict:
            row = model.predict(k, **chosen)
            print(f"    K = {k:>5}: compute {row['compute_s']:.4g} s + communication {row['communication_s']:.4g} s "
                  f"= {row['seconds']:.4g} s/iter {band if uncertainty is not None else ''}  "
                  f"(speedup {reference / row['seconds']:.1f})")
            if not chosen:
                rows.append({**row, "speedup": t1 / row["seconds"], "efficiency": t1 / row["seconds"] / k,
                             "uncertainty": uncertainty})
    return rows


def emit_job(args: argparse.Namespace) -> int:
    from ptybench.job_scripts import JobRequest, job_script, rank_ladder

    request = JobRequest(args.emit_job, args.nodes, args.ranks_per_node or 1, args.threads_per_rank,
                         args.gpus_per_node, args.time, account=args.account, partition=args.partition,
                         modules=list(args.module), environment=list(args.env))
    ranks = args.ranks or ",".join(map(str, rank_ladder(request.max_ranks)))
    if max(_ints(ranks, "--ranks")) > request.max_ranks:
        raise InputError(f"--ranks: {ranks} asks for more than the job's {request.max_ranks} ranks "
                         f"(--nodes × --ranks-per-node)")
    arguments = ["--mode", args.mode, "--ranks", ranks, "--dataset", args.dataset, "--engine", args.engine,
                 "--backend", args.backend, "--threads-per-rank", str(args.threads_per_rank),
                 "--iterations", str(args.iterations), "--warmup", str(args.warmup), "--timeout", f"{args.timeout_s:g}",
                 "--out", args.results]
    if args.frames_per_rank:
        arguments += ["--frames-per-rank", str(args.frames_per_rank)]
    if args.predict:
        arguments += ["--predict", args.predict, "--target", args.target]
    if args.holdout:
        arguments.append("--holdout")
    text = job_script(request, arguments)
    out = Path(args.out)
    if out.suffix == ".jsonl":
        raise InputError(f"--out: with --emit-job, --out is the job script to write (e.g. job.sh), got {out}")
    if out.exists() and not args.force:
        raise InputError(f"--out: {out} exists; pass --force to replace it with the job script")
    out.parent.mkdir(parents=True, exist_ok=True)
    from ptybench.results import replace_atomically

    replace_atomically(out, text)
    out.chmod(0o755)
    print(text)
    print(f"job script: {out} (submit with {'sbatch' if args.emit_job == 'slurm' else 'qsub'} {out})")
    return 0


def _maybe(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _cores() -> int:
    import os
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
