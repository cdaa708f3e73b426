"""``ptybench engines``: the engines and every key their ``parameters`` mapping accepts."""

from __future__ import annotations

import argparse

from ptybench.engines import describe_options
from ptybench.engines.errors import InputError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "engines", help="the registered engines (built in: DM, RAAR, ePIE, rPIE, ML) and their parameters",
        description="List the keys of the `parameters` mapping of ptychography(...): run-wide keys, then each "
                    "engine's keys with defaults. `engine` may also be a list of stages, e.g. "
                    '[{"engine": "DM", "iterations": 50}, {"engine": "ML", "iterations": 50}].')
    parser.add_argument("engine", nargs="?", help="only this engine's keys")
    parser.add_argument("--dataset", metavar="NAME",
                        help="also show the constants derived from this dataset (catalogue name or CXI file): "
                             "photons per unit, the Poisson noise floor and the power bound 'auto' resolves to")
    parser.set_defaults(func=list_engines)


def list_engines(args: argparse.Namespace) -> int:
    table = describe_options()
    if args.engine is not None and args.engine not in table:
        raise InputError(f"engine: expected one of {[k for k in table if k != 'run']}, got {args.engine!r}")
    groups = ["run", args.engine] if args.engine else list(table)
    for group in groups:
        print("run-wide keys" if group == "run" else f"{group} keys")
        for name, default, doc in table[group]:
            print(f"  {name:<20} {default!r:<12} {doc}")
        print()
    if args.dataset:
        show_derived_constants(args.dataset, [g for g in groups if g != "run"])
    return 0


def show_derived_constants(dataset: str, engines: list[str]) -> None:
    """What 'auto' means on these data: the photon scale and each engine's resolved power bound."""
    from ptybench.datasets import load
    from ptybench.engines import Reconstruction, parse_parameters

    data = load(dataset)
    arrays = {"diffraction_data": data.frames(), "initial_object": data.initial_object(),
              "initial_probe": data.initial_probe(), "scan_positions": data.positions, "mask": data.mask}
    problem = Reconstruction(**arrays, parameters={"iterations": 0, **data.engine_parameters()}).problem
    print(f"constants derived from {dataset}")
    print(f"  photons per unit     {problem.photon_scale.describe()}")
    print(f"  Poisson noise floor  {problem.noise_floor:.4g} photons per pixel (mean of E[(√λ−√k)²] at the counts)")
    for name in engines:
        options = parse_parameters({"engine": name}).stages[0].options
        resolve = getattr(options, "resolved_pbound", None)
        if resolve is not None:
            bound = resolve(problem.noise_floor)
            print(f"  {name:<5} pbound {options.pbound!r} -> {'exact projection' if bound is None else f'{bound:.4g}'}")
