"""``ptybench resolution DATASET``: resolution without ground truth, from two half-scan reconstructions."""

from __future__ import annotations

import argparse
import json

from ptybench.commands.argtypes import positive_int
from ptybench.engines.errors import InputError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "resolution", help="resolution without ground truth: FRC of two half-scan reconstructions",
        description="Reconstruct the even and the odd frames of a scan apart and compare the two objects ring by "
                    "ring in Fourier space (FRC) on the region both illuminate; the resolution is where the FRC "
                    "last meets the 1/2-bit threshold (ptybench/resolution.py). Each half has half the dose: the "
                    "usual, conservative reading.")
    parser.add_argument("dataset", help="a catalogue name or a .cxi file (FILE.cxi?propagation=... where the file "
                                        "does not state its geometry; see `ptybench datasets info`)")
    parser.add_argument("--engine", default="ML", help="a registered engine (default: ML)")
    parser.add_argument("--iterations", type=positive_int, default=50, help="iterations per half (default: 50)")
    parser.add_argument("--parameters", default=None, type=json.loads,
                        help='extra engine parameters as JSON, e.g. \'{"position_refinement_start": 10}\'')
    parser.add_argument("--plot", metavar="FILE.png", help="draw the FRC and the threshold there")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ptybench.datasets import load
    from ptybench.datasets.measured import ENTRIES
    from ptybench.resolution import half_scan_resolution

    if args.parameters is not None and not isinstance(args.parameters, dict):
        raise InputError(f"--parameters: expected a JSON object, got {args.parameters!r}")
    with load(args.dataset) as data:
        arrays, pixel_m = data.arrays(), data.object_pixel_m
        parameters = {**data.engine_parameters(), "engine": args.engine, "iterations": args.iterations,
                      **(args.parameters or {})}
    if arrays["scan_positions"].shape[0] < 4:
        raise InputError(f"dataset: expected at least 4 frames to split into two halves, got "
                         f"{arrays['scan_positions'].shape[0]}")
    result = half_scan_resolution(arrays, parameters)
    if result.resolution_pixels == float("inf"):
        print(f"{args.dataset} {args.engine}, {args.iterations} iterations per half: the two half-scan "
              f"reconstructions agree at no spatial frequency (FRC below the 1/2-bit threshold everywhere): "
              f"nothing is resolved; more iterations, or another engine")
    elif result.resolution_pixels is None:
        print(f"{args.dataset} {args.engine}, {args.iterations} iterations per half: the FRC stays above the "
              f"1/2-bit threshold up to Nyquist (2 pixels, {2 * pixel_m * 1e9:.4g} nm): resolution 2 pixels or finer")
    else:
        print(f"{args.dataset} {args.engine}, {args.iterations} iterations per half: resolution "
              f"{result.resolution_pixels:.3g} pixels ({result.resolution_pixels * pixel_m * 1e9:.4g} nm; 1/2-bit "
              f"FRC of two half-scan reconstructions)")
    if args.plot:
        from matplotlib.figure import Figure

        figure = Figure(figsize=(6, 4), layout="constrained")
        axes = figure.add_subplot()
        axes.plot(result.frequency, result.frc, label="FRC")
        axes.plot(result.frequency, result.threshold, "--", label="1/2-bit threshold")
        axes.set(xlabel="spatial frequency (cycles per object pixel)", ylabel="FRC", ylim=(-0.2, 1.05),
                 title=f"{args.dataset}: {args.engine}, two half scans")
        axes.legend()
        if args.dataset in ENTRIES:  # measured data: their licence asks for the attribution wherever they show
            entry = ENTRIES[args.dataset]
            figure.supxlabel(f"Data: {entry.attribution}; {entry.licence}", fontsize=5)
        figure.savefig(args.plot, dpi=110)
        print(f"plot: {args.plot}")
    return 0
