"""``ptybench datasets list|info|make``: the synthetic dataset catalogue."""

from __future__ import annotations

import argparse
import time

from ptybench import datasets
from ptybench.datasets.spec import human_bytes
from ptybench.text_table import text_table


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "datasets", help="list, describe and write the synthetic datasets",
        description="Synthetic far- and near-field datasets with known ground truth. Frames are made on "
                    "demand from (seed, frame index), so nothing is downloaded and any block can be made alone.")
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="the named datasets (add --ladders for the size ladders)")
    listing.add_argument("--ladders", action="store_true",
                         help="also list the ladders {kind}-{detector}-{frames}[-lowcount]")
    listing.set_defaults(func=list_datasets)

    info = actions.add_parser("info", help="geometry, photons and memory of one dataset")
    info.add_argument("name", help="a catalogue name (see `ptybench datasets list`) or a .cxi file; a file's geometry "
                                   "where it does not state it: FILE.cxi?propagation=farfield, "
                                   "?propagation=nearfield&beam=parallel or "
                                   "?propagation=nearfield&focus_to_sample_m=METRES (cone beam); HDF5 links to "
                                   "other files are refused unless &external=same-folder (then followed only "
                                   "inside the file's folder)")
    info.set_defaults(func=dataset_info)

    make = actions.add_parser("make", help="write a dataset to a CXI (HDF5) file other codes can read")
    make.add_argument("name", help="a catalogue name")
    make.add_argument("--out", metavar="FILE.cxi",
                      help="output path (default: the ptybench cache directory, $PTYBENCH_CACHE)")
    make.set_defaults(func=make_dataset)


def list_datasets(args: argparse.Namespace) -> int:
    rows = [(name, datasets.get_spec(name), datasets.describe(name)) for name in datasets.names()]
    if not args.ladders:
        rows = [row for row in rows if not row[2].endswith("ladder")]
    table = [[name, spec.kind, spec.n_frames, "x".join(str(s) for s in spec.frame_shape), human_bytes(spec.data_bytes),
              "" if note == "bright ladder" else note] for name, spec, note in rows]
    for name in datasets.measured.NAMES:
        with datasets.load(name) as data:
            table.append([name, data.scan_geometry.propagation, data.n_frames, "x".join(map(str, data.frame_shape)),
                          human_bytes(datasets.measured.path_of(name).stat().st_size),
                          datasets.measured.ENTRIES[name].note])
    print(text_table(["name", "kind", "frames", "detector", "data", "notes"], table, right=(2, 3, 4)))
    if not args.ladders:
        print(f"\n+ ladders {{farfield,nearfield}}-{{detector}}-{{frames}}: detector in "
              f"{list(datasets.DETECTOR_LADDER)}, frames in {list(datasets.FRAME_LADDER)} (--ladders); "
              f"each with a -lowcount twin (1e6 photons/frame far field from 128², 1e5 near field)")
    return 0


def dataset_info(args: argparse.Namespace) -> int:
    data = datasets.load(args.name)
    y, x = data.frame_shape
    n = data.n_frames
    print(f"{args.name}: {data.spec.describe() if data.spec else 'CXI file'}")
    geometry = getattr(data, "scan_geometry", None)
    if geometry is not None:
        beam = f", {geometry.beam} beam" if geometry.beam else ""
        cone = (f", magnification {geometry.magnification:.4g} (focus to sample {geometry.focus_to_sample_m:.4g} m), "
                f"effective distance {geometry.effective_distance_m:.4g} m") if geometry.beam == "cone" else ""
        fresnel = f", Fresnel number {geometry.fresnel_number:.4g} per pixel" if geometry.fresnel_number else ""
        print(f"  geometry             {geometry.propagation}{beam}{cone}{fresnel} (from: {geometry.source})")
        extent = data.positions.max(axis=0) - data.positions.min(axis=0)
        print(f"  scan extent          {extent[0]:.1f} x {extent[1]:.1f} object pixels")
    print(f"  object (A, B)        {data.object_shape[0]} x {data.object_shape[1]} pixels, "
          f"{data.object_pixel_m * 1e9:.3g} nm/pixel")
    print(f"  detector distance    {data.distance_m:.4g} m, pixel {data.detector_pixel_m * 1e6:.3g} um, "
          f"{data.energy_kev:.3g} keV")
    print(f"  intensities          {human_bytes(4 * n * y * x)} (uint32 or float32)")
    print(f"  exit waves           {human_bytes(8 * n * y * x)} per probe x object mode pair (DM/RAAR keep them all)")
    print(f"  valid pixels         {int(data.mask.sum())} of {y * x}"
          + (f" (mask: {data.mask_source})" if hasattr(data, "mask_source") else ""))
    if data.spec is not None:
        print(f"  photons              {data.spec.photons:.3g} per frame (incident)")
    print(f"  engine parameters    {data.engine_parameters()}")
    name = getattr(data, "catalogue_name", None)
    if name in datasets.measured.ENTRIES:
        entry = datasets.measured.ENTRIES[name]
        print(f"  measured data        {entry.attribution}\n  licence              {entry.licence}")
    return 0


def make_dataset(args: argparse.Namespace) -> int:
    data = datasets.load(args.name)
    out = args.out or datasets.default_cxi_path(args.name)
    start = time.perf_counter()
    path = datasets.write_cxi(out, data)
    seconds = time.perf_counter() - start
    print(f"wrote {path} ({data.n_frames} frames, {human_bytes(path.stat().st_size)}) "
          f"in {seconds:.1f} s, {data.n_frames / seconds:.0f} frames/s")
    return 0
