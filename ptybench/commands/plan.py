"""``ptybench plan``: will it fit? Predicted memory per engine and backend, the block size and ranks needed."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ptybench import disk_bandwidth
from ptybench.commands.argtypes import comma_list, positive_int
from ptybench.disk_bandwidth import DiskBandwidth
from ptybench.engines.backends import backend_descriptor, parse_target
from ptybench.engines.registry import engine_names, engine_spec
from ptybench.engines.scratch import scratch_directory
from ptybench.memory_model import (
    Geometry,
    largest_block_that_fits,
    parse_bytes,
    predict_memory,
    ranks_needed,
)
from ptybench.text_table import text_table


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plan", help="predict memory per engine/backend: residency, block size, devices needed (--json for tools)",
        description="Answer before anyone runs it: for each engine and backend on --device-memory, what the "
                    "engines will choose (per-frame data resident or streamed from pinned host memory, and the "
                    "compute block B), the predicted device and pinned-host memory, the largest block that fits "
                    "when streaming, the devices needed to keep everything resident, and on a host what a run "
                    "larger than memory reads and writes on disk per iteration and the least time that takes. "
                    "The model is "
                    "docs/algorithms.md's memory terms with block temporaries fitted to measurements; its "
                    "accuracy is stated in docs/design.md (\"Memory model\").")
    parser.add_argument("--dataset", required=True, help="catalogue name (e.g. seed-2552x768) or a .cxi file")
    parser.add_argument("--device-memory", required=True, help="memory of one device (or host), e.g. 80GB, 24GiB")
    parser.add_argument("--ranks", type=positive_int, default=1, help="ranks sharing the frames (default: %(default)s)")
    parser.add_argument("--engines", type=comma_list, default=None,
                        help="comma-separated (default: every registered engine)")
    parser.add_argument("--backends", type=comma_list, default=["cupy", "torch:cuda", "numpy"],
                        help="comma-separated: numpy, torch (CPU), torch:cuda, cupy (default: cupy,torch:cuda,numpy)")
    parser.add_argument("--scratch-directory", default=None,
                        help="where residency 'disk' would put its scratch files, whose disk's bandwidth (measured "
                             "once, ~3 s, and kept) prices the I/O (default: $PTYBENCH_SCRATCH, else the system's "
                             "temporary directory)")
    parser.add_argument("--measure-disk", action="store_true",
                        help="measure the scratch disk's bandwidth again (a busy disk gave a low number) and keep it")
    parser.add_argument("--json", action="store_true", help="one JSON object per row (for tools and reports)")
    parser.set_defaults(func=plan)


def _gb(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e9:.2f}"


def plan_rows(dataset: Any, engines: list[str], backends: list[str], capacity: int, ranks: int,
              disk: DiskBandwidth | None = None) -> list[dict]:
    """One row per engine × backend: what the engines choose on ``capacity`` bytes, and what it costs; with the
    scratch disk's bandwidth, the least time per iteration its reads and writes take (residency "disk")."""
    geometry = Geometry.of(dataset)
    rows = []
    for engine in engines:
        for backend_text in backends:
            backend, device = parse_target(backend_text)
            chosen = predict_memory(geometry, engine, backend, None, ranks, device, available_bytes=capacity)
            resident = predict_memory(geometry, engine, backend, None, ranks, device, residency="resident",
                                      available_bytes=capacity)
            streamed = predict_memory(geometry, engine, backend, None, ranks, device, residency="streamed",
                                      available_bytes=capacity)
            io_seconds = None
            if disk is not None and (chosen.disk_read_bytes or chosen.disk_write_bytes):
                io_seconds = (chosen.disk_read_bytes / disk.read_bytes_per_second
                              + chosen.disk_write_bytes / disk.write_bytes_per_second)
            rows.append({
                "engine": engine, "backend": backend_text, "residency": chosen.residency,
                "disk_read_bytes_per_iteration": chosen.disk_read_bytes,
                "disk_write_bytes_per_iteration": chosen.disk_write_bytes, "disk_seconds_per_iteration": io_seconds,
                "frames_per_block": chosen.frames_per_block, "device_bytes": chosen.total_bytes,
                "pinned_host_bytes": chosen.host_bytes, "fits": chosen.total_bytes <= capacity,
                "resident_bytes": resident.total_bytes, "streamed_bytes": streamed.total_bytes,
                "largest_streamed_block": largest_block_that_fits(geometry, engine, backend, capacity, ranks, device),
                "devices_needed": ranks_needed(geometry, engine, backend, capacity, device=device),
            })
    return rows


def plan(args: argparse.Namespace) -> int:
    from ptybench.datasets import load

    capacity = parse_bytes(args.device_memory)
    data = load(args.dataset)
    geometry = Geometry.of(data)
    engines = engine_names() if args.engines is None else args.engines
    disk = None
    host_backends = [text for text in args.backends if not backend_descriptor(parse_target(text)[0]).is_device_memory(
        parse_target(text)[1])]
    if host_backends and any(predict_memory(geometry, engine, backend, None, args.ranks, device,
                                            available_bytes=capacity).residency == "disk"
                             for engine in engines for backend, device in map(parse_target, host_backends)):
        directory = scratch_directory(args.scratch_directory)
        disk = disk_bandwidth.remeasure(directory) if args.measure_disk else disk_bandwidth.cached(directory)
    rows = plan_rows(geometry, engines, args.backends, capacity, args.ranks, disk)
    if args.json:
        for row in rows:
            print(json.dumps({"dataset": args.dataset, "memory_bytes": capacity, "ranks": args.ranks, **row}))
        return 0
    print(f"dataset {args.dataset}: N = {geometry.n_frames} frames of {geometry.frame_shape[0]}×"
          f"{geometry.frame_shape[1]}, object {geometry.object_shape[0]}×{geometry.object_shape[1]}, modes "
          f"{geometry.probe_modes}×{geometry.object_modes}; memory {capacity / 1e9:.1f} GB per device, "
          f"{args.ranks} rank(s)\n")
    print(text_table(
        ["engine", "backend", "residency", "block", "device GB", "pinned GB", "fits", "resident GB", "max streamed B",
         "devices", "disk GB/it", "disk s/it"],
        [[row["engine"], row["backend"], row["residency"], row["frames_per_block"], _gb(row["device_bytes"]),
          _gb(row["pinned_host_bytes"] or None), "yes" if row["fits"] else "no", _gb(row["resident_bytes"]),
          row["largest_streamed_block"] or "none", row["devices_needed"] or "none",
          _gb((row["disk_read_bytes_per_iteration"] + row["disk_write_bytes_per_iteration"]) or None),
          "-" if row["disk_seconds_per_iteration"] is None else f"≥ {row['disk_seconds_per_iteration']:.1f}"]
         for row in rows],
        right=range(3, 12)))
    object_bytes = 8 * geometry.object_modes * geometry.object_shape[0] * geometry.object_shape[1]
    copies = {engine: 1 + engine_spec(engine).memory.object_buffers for engine in engines}
    too_big = [engine for engine, count in copies.items() if count * object_bytes > capacity]
    print(f"\nobject: {geometry.object_shape[0]}×{geometry.object_shape[1]} complex64 × {geometry.object_modes} "
          f"mode(s) = {object_bytes / 1e9:.2f} GB per copy; every rank holds the whole object and its update "
          f"buffers (" + ", ".join(f"{e} {c:g}×" for e, c in copies.items()) + ")"
          + (f"; more than the device for {', '.join(too_big)}: no number of ranks helps, the object must be "
             "tiled (docs/design.md, \"Objects larger than a device\")" if too_big else ""))
    print("\nresidency and block: what the engines choose on this memory (frames_per_block='auto'); device GB: "
          "their predicted footprint; resident GB: with every per-frame array on the device; max streamed B: the "
          "largest block that fits when streaming; devices: the fewest with everything resident (exact; none: the "
          "object alone does not fit); disk: on a host, per-frame arrays that do not fit go to scratch files "
          "(exit waves first, then the intensities), and disk GB/it and s/it are the least an iteration reads "
          "and writes there and the time that takes at the disk's bandwidth (a run takes at least the larger "
          "of that and its compute). Predictions, not measurements (GB = 10⁹ bytes).")
    if disk is not None:
        print(disk.describe())
    return 0
