"""``ptybench backends``: which backends and devices run on this machine, and why not where they do not."""

from __future__ import annotations

import argparse

from ptybench.engines.backends import backend_status
from ptybench.text_table import text_table


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "backends", help="list the backends (numpy, torch, cupy) and devices available here",
        description="Probe each backend and device (numpy on the CPU, torch on the CPU and CUDA, cupy on CUDA) "
                    "and say whether it runs here; where it does not, say why (not installed, CPU-only build, "
                    "no GPU). Exit status 0 whatever is missing: the NumPy backend always runs.")
    parser.set_defaults(func=list_backends)


def list_backends(args: argparse.Namespace) -> int:
    print(text_table(["backend", "device", "available", "details"],
                     [[s.name, s.device or "-", "yes" if s.available else "no", s.reason] for s in backend_status()]))
    return 0
