"""Run PtyLab 0.3.7's ePIE on a ptybench export; runs under PtyLab's own venv, not ptybench's.

    python run_ptylab.py INPUTS.npz SETTINGS.json OUTPUT.npz

INPUTS is written by ``ptybench.peers.compare.export_inputs`` (its docstring lists the keys); SETTINGS
holds ``engine`` ("ePIE"), ``iterations``, ``seed``, ``alpha`` and ``beta`` (PtyLab's betaObject and
betaProbe: the same max-normalised steps as ptybench's α and β). OUTPUT gets ``object`` on the export's
object grid, ``probe`` and ``seconds`` (wall time of each iteration).

Only numpy and PtyLab are imported (PtyLab computes with NumPy; torch, installed beside it, is not
used), those inside ``run``. The layout functions are plain numpy so ptybench's tests check them.

Conventions mapped (ptybench -> PtyLab, CPM mode, Fraunhofer propagator):
- PtyLab's ``fft2c`` is unitary and centred (fftshift ∘ fft2 ∘ ifftshift, norm "ortho"), the same
  intensities as ptybench's D: the centred frames and the probe go in unchanged (fftshiftSwitch off).
- Geometry: PtyLab's pixel dxp = λ·zo/(Nd·dxd) is ptybench's object pixel for the same λ, z, detector.
- Positions: PtyLab's top-left corner is round(encoder/dxo) + No//2 − Np//2, encoder (row, col) in
  metres; the encoder is made from ptybench's corners so that formula gives them back exactly.
- PtyLab's object is square (No × No, No even): ptybench's (A, B) object sits in its top-left corner
  (the rest 1, never illuminated) and is cropped back out of the result.
- Frames must be square (PtyLab's Nd × Nd). PtyLab's standard intensity projection has no detector mask:
  with masked pixels the run goes on and the output says ``mask_ignored``.
- Per-iteration time: PtyLab's ePIE yields after every frame; an iteration is timed from the previous
  iteration's last frame to its own last frame, and the last iteration's error metrics and
  constraints (done after its last frame) are added to it, so every iteration carries that work once.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import numpy as np

try:
    from .peer_script import main_for, package_version
except ImportError:  # run by path in the peer's venv, where ptybench is not installed
    from peer_script import main_for, package_version


# --- layout (plain numpy: tested in ptybench's venv) ------------------------------------------------
def object_side(object_shape: tuple[int, int]) -> int:
    """PtyLab's No: the smallest even side that holds ptybench's object."""
    side = max(object_shape)
    return side + side % 2


def ptylab_inputs(inputs: Any) -> dict[str, Any]:
    """The export in PtyLab's layout: ptychogram, encoder (m), square object, geometry."""
    intensities = np.asarray(inputs["intensities"], dtype=np.float32)
    _, height, width = intensities.shape
    if height != width:
        raise ValueError(f"PtyLab needs square frames, got {height}x{width}")
    wavelength, distance = float(inputs["wavelength_m"]), float(inputs["distance_m"])
    detector_pixel = float(inputs["detector_pixel_m"])
    pixel = wavelength * distance / (width * detector_pixel)  # PtyLab's dxp (= dxo)
    corners = np.asarray(inputs["positions_px"], dtype=np.float64)
    initial_object = np.asarray(inputs["initial_object"], dtype=np.complex64)
    side = object_side(initial_object.shape)
    square = np.ones((side, side), dtype=np.complex64)
    square[:initial_object.shape[0], :initial_object.shape[1]] = initial_object
    return {
        "ptychogram": intensities, "wavelength": wavelength, "zo": distance, "dxd": detector_pixel,
        "encoder": (corners - (side // 2 - width // 2)) * pixel, "dxo": pixel, "No": side,
        "object": square, "probe": np.asarray(inputs["initial_probe"], dtype=np.complex64),
        "object_shape": initial_object.shape, "mask_ignored": not bool(np.all(inputs["mask"])),
    }


def ptylab_corners(encoder: np.ndarray, pixel: float, side: int, probe_side: int) -> np.ndarray:
    """PtyLab's own formula (Reconstruction.calculate_pixel_positions) for the top-left corners."""
    return (np.round(encoder / pixel) + side // 2 - probe_side // 2).astype(int)


def from_ptylab(obj: np.ndarray, object_shape: tuple[int, int]) -> np.ndarray:
    """PtyLab's (nlambda, nosm, 1, nslice, No, No) object cropped back to ptybench's (A, B) grid."""
    obj = np.asarray(obj).reshape(-1, *np.shape(obj)[-2:])[0]
    return obj[:object_shape[0], :object_shape[1]].astype(np.complex64)


# --- running PtyLab ---------------------------------------------------------------------------------
def run(inputs: Any, settings: dict[str, Any]) -> dict[str, np.ndarray]:
    """Set up ExperimentalData, Reconstruction, Params and ePIE by hand (no HDF5 file), then iterate."""
    if settings.get("engine", "ePIE") != "ePIE":
        raise ValueError(f"engine: expected 'ePIE', got {settings['engine']!r}")
    os.environ.setdefault("OMP_NUM_THREADS", str(settings.get("threads", 2)))
    from PtyLab import Engines, ExperimentalData, Params, Reconstruction
    from PtyLab.Monitor.Monitor import DummyMonitor

    layout = ptylab_inputs(inputs)
    # PtyLab shuffles the frame order with numpy's global stream: only seeding it makes runs repeat.
    np.random.seed(int(settings.get("seed", 0)))  # noqa: NPY002
    data = ExperimentalData(operationMode="CPM")
    for key in ("ptychogram", "wavelength", "encoder", "dxd", "zo"):
        setattr(data, key, layout[key])
    data.entrancePupilDiameter = data.spectralDensity = data.theta = data.emptyBeam = None
    data._setData()

    params = Params()
    params.gpuSwitch = False
    params.propagatorType = "Fraunhofer"
    params.fftshiftSwitch = False
    params.positionOrder = "random"
    params.probePowerCorrectionSwitch = False
    params.positionCorrectionSwitch = False
    params.orthogonalizationSwitch = False

    reconstruction = Reconstruction(data, params)
    reconstruction.No = layout["No"]
    reconstruction.positions0 = reconstruction.positions.copy()
    reconstruction.initializeObjectProbe()
    reconstruction.object = layout["object"].reshape(reconstruction.object.shape).copy()
    reconstruction.probe = layout["probe"].reshape(reconstruction.probe.shape).copy()
    if not np.array_equal(reconstruction.positions, np.asarray(inputs["positions_px"]).astype(int)):
        raise RuntimeError("PtyLab's positions differ from the exported corners")

    engine = Engines.ePIE(reconstruction, data, params, DummyMonitor())
    engine.numIterations = int(settings["iterations"])
    engine.betaObject = float(settings.get("alpha", 1.0))
    engine.betaProbe = float(settings.get("beta", 1.0))
    last_frame = data.numFrames - 1
    seconds = []
    mark = time.perf_counter()
    for _, frame in engine.reconstruct_stepwise():
        if frame == last_frame:
            now = time.perf_counter()
            seconds.append(now - mark)
            mark = now
    seconds[-1] += time.perf_counter() - mark  # the last iteration's error metrics and constraints
    return {"object": from_ptylab(reconstruction.object, layout["object_shape"]),
            "probe": np.asarray(reconstruction.probe).reshape(-1, *reconstruction.probe.shape[-2:])[0],
            "seconds": np.array(seconds), "mask_ignored": np.array(layout["mask_ignored"]),
            "version": np.array(package_version("ptylab"))}


def main(argv: list[str]) -> int:
    return main_for(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
