"""Run under a Python that has ptychodus (not ptybench): read a file ptybench wrote with ptychodus's
CXI readers, check what they load against the expected arrays, and write the same data back with
ptychodus's CXI writers (a diffraction file and a product file, the way ptychodus splits them).

    python ptychodus_side.py PTYBENCH.cxi EXPECTED.npz OUT_DIR

Prints one JSON line: what loaded and how closely it matched. Exit status 1 on a mismatch.
"""

import dataclasses
import json
import sys
from pathlib import Path

import numpy
from ptychodus.api.object import Object, ObjectCenter
from ptychodus.plugins.cxi_file import CXIDiffractionFileReader, CXIDiffractionFileWriter, CXIProductFileIO


def main(source: str, expected_path: str, out: str) -> int:
    expected = numpy.load(expected_path)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)

    dataset = CXIDiffractionFileReader().read(Path(source))
    metadata = dataset.get_metadata()
    frames = numpy.concatenate([array.get_patterns() for array in dataset])
    product = CXIProductFileIO().read(Path(source))
    positions = product.probe_positions
    translation = numpy.stack([positions.get_coordinates_x_m(), positions.get_coordinates_y_m()], axis=1)
    probe = numpy.asarray(product.probes.get_array())
    report = {
        "frames_equal": bool(numpy.array_equal(frames, expected["frames"])),
        "n_positions": len(positions),
        "positions_max_error_m": float(numpy.abs(translation - expected["translation"][:, :2]).max()),
        "probe_equal": bool(numpy.array_equal(probe.reshape(expected["probe"].shape), expected["probe"])),
        "energy_eV": float(metadata.photon_energy_eV),
        "distance_m": float(metadata.detector_distance_m),
        "pixel_m": float(metadata.detector_pixel_geometry.width_m),
        "bad_pixels": int(dataset.get_bad_pixels().sum()) if dataset.get_bad_pixels() is not None else None,
    }
    CXIDiffractionFileWriter().write(out_dir / "diffraction.cxi", dataset)
    # CXI has no object centre; ptychodus's writer needs one: the middle of the scan, as its GUI sets it.
    obj = product.object_
    centred = Object(array=obj.get_array(), pixel_geometry=obj.get_pixel_geometry(),
                     center=ObjectCenter(x_m=float(translation[:, 0].mean()), y_m=float(translation[:, 1].mean())),
                     layer_spacing_m=list(obj.layer_spacing_m))
    CXIProductFileIO().write(out_dir / "product.cxi", dataclasses.replace(product, object_=centred))
    print(json.dumps(report))
    ok = report["frames_equal"] and report["probe_equal"] and report["positions_max_error_m"] < 1e-12
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
