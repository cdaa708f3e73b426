"""``ptybench backends``: which backends and devices run on this machine, and why not where they do not."""

from __future__ import annotations

import argparse

from ptybench.engines.backends import backend_status


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "backends", help="list the backends (numpy, torch, cupy) and devices available here",
        description="Probe each backend and device (numpy on the CPU, torch on the CPU and CUDA, cupy on CUDA) "
                    "and say whether it runs here; where it does not, say why (not installed, CPU-only build, "
                    "no GPU). Exit status 0 whatever is missing: the NumPy backend always runs.")
    parser.set_defaults(func=list_backends)


def list_backends(args: argparse.Namespace) -> int:
    print(f"{'backend':<8} {'device':<8} {'available':<10} details")
    for status in backend_status():
        print(f"{status.name:<8} {status.device or '-':<8} {'yes' if status.available else 'no':<10} {status.reason}")
    return 0
