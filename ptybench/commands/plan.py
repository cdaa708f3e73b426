"""``ptybench plan``: will it fit? Predicted memory per engine and backend, the block size and ranks needed."""

from __future__ import annotations

import argparse

from ptybench.engines.registry import engine_names
from ptybench.memory_model import (
    Geometry,
    largest_block_that_fits,
    parse_bytes,
    predict_memory,
    ranks_needed,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plan", help="predict memory per engine/backend, the largest frames_per_block that fits, the ranks needed",
        description="Answer before anyone runs it: for each engine and backend, the memory model's prediction "
                    "with everything resident, the largest frames_per_block that fits in --device-memory (the "
                    "per-frame data then stream from pinned host memory), and the number of ranks (one device "
                    "each) at which everything is resident. The model is docs/algorithms.md's memory terms with "
                    "block temporaries fitted to measurements; its accuracy is stated in docs/design.md "
                    "(\"Memory model\").")
    parser.add_argument("--dataset", required=True, help="catalogue name (e.g. seed-2552x768) or a .cxi file")
    parser.add_argument("--device-memory", required=True, help="memory of one device (or host), e.g. 80GB, 24GiB")
    parser.add_argument("--ranks", type=int, default=1, help="ranks sharing the frames (default: %(default)s)")
    parser.add_argument("--engines", default=None, help="comma-separated (default: every registered engine)")
    parser.add_argument("--backends", default="cupy,torch:cuda,numpy",
                        help="comma-separated: numpy, torch (CPU), torch:cuda, cupy (default: %(default)s)")
    parser.set_defaults(func=plan)


def _gb(value: int | None) -> str:
    return "-" if value is None else f"{value / 1e9:.2f}"


def plan(args: argparse.Namespace) -> int:
    from ptybench.datasets import load
    from ptybench.engines.backends import parse_target

    capacity = parse_bytes(args.device_memory)
    if args.ranks < 1:
        raise ValueError(f"--ranks: expected a positive integer, got {args.ranks}")
    data = load(args.dataset)
    geometry = Geometry.of(data)
    print(f"dataset {args.dataset}: N = {geometry.n_frames} frames of {geometry.frame_shape[0]}×"
          f"{geometry.frame_shape[1]}, object {geometry.object_shape[0]}×{geometry.object_shape[1]}, modes "
          f"{geometry.probe_modes}×{geometry.object_modes}; memory {capacity / 1e9:.1f} GB per device, "
          f"{args.ranks} rank(s)\n")
    header = (f"{'engine':<6} {'backend':<11} {'resident GB':>11} {'fits':>5} {'largest fpb':>11} "
              f"{'streamed GB':>11} {'pinned host GB':>14} {'ranks needed':>12}")
    print(header)
    print("-" * len(header))
    engines = engine_names() if args.engines is None else [e.strip() for e in args.engines.split(",") if e.strip()]
    for engine in engines:
        for backend_text in [b.strip() for b in args.backends.split(",") if b.strip()]:
            backend, device = parse_target(backend_text)
            resident = predict_memory(geometry, engine, backend, None, args.ranks, device)
            block = largest_block_that_fits(geometry, engine, backend, capacity, args.ranks, device)
            streamed = predict_memory(geometry, engine, backend, block, args.ranks, device) if block else None
            ranks = ranks_needed(geometry, engine, backend, capacity, device=device)
            fits = resident.total_bytes <= capacity
            print(f"{engine:<6} {backend_text:<11} {_gb(resident.total_bytes):>11} {'yes' if fits else 'no':>5} "
                  f"{block if block else 'none':>11} {_gb(streamed.total_bytes if streamed else None):>11} "
                  f"{_gb(streamed.host_bytes if streamed else None):>14} {ranks if ranks else '>4096':>12}")
    print("\nresident: every per-frame array on the device; largest fpb: frames_per_block that fits with "
          "streaming (on the NumPy backend, fpb sets the size of the temporaries only); ranks needed: "
          "devices for everything resident. Predictions, not measurements.")
    return 0
