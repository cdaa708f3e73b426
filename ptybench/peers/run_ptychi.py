"""Run pty-chi 2.2.0 (DM or LSQML) on a ptybench export; runs under pty-chi's own venv, not ptybench's.

    python run_ptychi.py INPUTS.npz SETTINGS.json OUTPUT.npz

INPUTS is written by ``ptybench.peers.compare.export_inputs`` (its docstring lists the keys); SETTINGS
holds ``engine`` ("DM" or "LSQML"), ``iterations``, ``threads``, ``seed``, ``probe_update_start`` and
optionally ``batch_size`` (LSQML) and ``chunk_length`` (DM). OUTPUT gets ``object`` on the export's
object grid, ``probe`` in the export's units and ``seconds`` (wall time of each iteration).

Only numpy, torch and ptychi are imported, and those two only inside ``run``: the layout functions
below are plain numpy, so ptybench's tests check them without pty-chi installed.

Conventions mapped (ptybench -> pty-chi):
- Far field: pty-chi propagates with an unnormalised ``fft2`` and no shift, so the intensities go in
  FFT order (``ifftshift`` of ptybench's centred frames, exact for odd sizes too, with
  ``fft_shift=False``) and the probe is divided by sqrt(Y·X) (ptybench's propagator is unitary).
- Positions: pty-chi takes patch centres; centre = position + origin and the patch's first pixel is
  centre − (Y−1)/2. ptybench's top-left corner c becomes the integer position c + Y//2 with the origin
  (Y−1)/2 − Y//2 (−0.5 for even frames): integer positions are never rounded or sub-pixel shifted.
- The object is the export's own grid (1, A, B), so the result needs no crop.

torchvision: pty-chi imports ``torchvision.transforms.GaussianBlur`` in ``ptychi.utils`` and uses it only
to draw a random initial object, which is never asked for here; the PyPI torchvision does not load
beside torch 2.13.0. ``stub_torchvision`` puts a stand-in module in ``sys.modules`` before ptychi is
imported, whose GaussianBlur raises if anything ever calls it.
"""

from __future__ import annotations

import os
import sys
import time
import types
from typing import Any

import numpy as np

try:
    from .peer_script import main_for, package_version
except ImportError:  # run by path in the peer's venv, where ptybench is not installed
    from peer_script import main_for, package_version


# --- layout (plain numpy: tested in ptybench's venv) ------------------------------------------------
def position_origin(frame_shape: tuple[int, int]) -> tuple[float, float]:
    """pty-chi's origin for integer positions c + Y//2: (Y−1)/2 − Y//2 per axis."""
    return tuple(float((size - 1) / 2 - size // 2) for size in frame_shape)


def ptychi_inputs(inputs: Any) -> dict[str, np.ndarray]:
    """The export in pty-chi's layout: FFT-order data and mask, centre positions, unnormalised-FFT probe."""
    intensities = np.asarray(inputs["intensities"], dtype=np.float32)
    frame_shape = intensities.shape[-2:]
    corners = np.asarray(inputs["positions_px"], dtype=np.float64)
    probe = np.asarray(inputs["initial_probe"], dtype=np.complex64)
    return {
        "diffraction_data": np.fft.ifftshift(intensities, axes=(-2, -1)),
        "valid_pixel_mask": np.fft.ifftshift(np.asarray(inputs["mask"], dtype=bool), axes=(-2, -1)),
        "probe_position_y_px": corners[:, 0] + frame_shape[0] // 2,
        "probe_position_x_px": corners[:, 1] + frame_shape[1] // 2,
        "object_data": np.asarray(inputs["initial_object"], dtype=np.complex64)[None],
        "probe_data": (probe / np.float32(np.sqrt(frame_shape[0] * frame_shape[1])))[None, None],
        "position_origin": np.array(position_origin(frame_shape)),
    }


def from_ptychi(obj: np.ndarray, probe: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pty-chi's (1, A, B) object and (1, M, Y, X) probe back to the export's grid and units."""
    probe = np.asarray(probe)[0, 0]
    return np.asarray(obj)[0].astype(np.complex64), (probe * np.sqrt(probe.size)).astype(np.complex64)


# --- running pty-chi --------------------------------------------------------------------------------
def stub_torchvision() -> None:
    """Stand in for torchvision (see the module docstring): only ``transforms.GaussianBlur`` is imported."""
    class GaussianBlur:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise NotImplementedError("torchvision is stubbed out by ptybench's run_ptychi.py")

    package = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    transforms.GaussianBlur = GaussianBlur
    package.transforms = transforms
    package.__path__ = []
    sys.modules["torchvision"] = package
    sys.modules["torchvision.transforms"] = transforms


def build_options(api: Any, engine: str, settings: dict[str, Any], arrays: dict[str, np.ndarray],
                  n_frames: int) -> Any:
    """DM or LSQML options: CPU, float32, one probe mode, no position correction, the probe updated from
    ``probe_update_start`` on; everything else pty-chi's defaults."""
    if engine == "DM":
        options = api.DMOptions()
        options.reconstructor_options.chunk_length = int(settings.get("chunk_length", n_frames))
    elif engine == "LSQML":
        options = api.LSQMLOptions()
        options.reconstructor_options.batch_size = int(settings.get("batch_size", 100))
        options.reconstructor_options.noise_model = api.NoiseModels.GAUSSIAN
        # The probe comes in on the data's scale already; pty-chi's first-epoch rescale would change it.
        options.reconstructor_options.rescale_probe_intensity_in_first_epoch = False
    else:
        raise ValueError(f"engine: expected 'DM' or 'LSQML', got {engine!r}")
    reconstructor = options.reconstructor_options
    reconstructor.num_epochs = int(settings["iterations"])
    reconstructor.default_device = api.Devices.CPU
    reconstructor.default_dtype = api.Dtypes.FLOAT32
    reconstructor.random_seed = int(settings.get("seed", 0))
    data = options.data_options
    data.free_space_propagation_distance_m = float("inf")
    data.wavelength_m = float(settings["wavelength_m"])
    data.fft_shift = False  # the data are in FFT order already (ptychi_inputs)
    obj = options.object_options
    obj.pixel_size_m = float(settings["object_pixel_m"])
    obj.determine_position_origin_coords_by = api.ObjectPosOriginCoordsMethods.SPECIFIED
    obj.position_origin_coords = arrays["position_origin"]
    obj.optimizable = True
    probe = options.probe_options
    probe.optimizable = True
    probe.optimization_plan.start = int(settings.get("probe_update_start", 0))
    options.probe_position_options.optimizable = False
    return options


def run(inputs: Any, settings: dict[str, Any]) -> dict[str, np.ndarray]:
    """Build the task, run the iterations one at a time and time each one."""
    threads = int(settings.get("threads", 2))
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    stub_torchvision()
    import torch

    torch.set_num_threads(threads)
    from ptychi import api
    from ptychi.api.task import PtychographyTask

    arrays = ptychi_inputs(inputs)
    settings = {**settings, "wavelength_m": float(inputs["wavelength_m"]),
                "object_pixel_m": float(inputs["object_pixel_m"])}
    n_frames = arrays["diffraction_data"].shape[0]
    options = build_options(api, settings["engine"], settings, arrays, n_frames)
    task = PtychographyTask(
        options, diffraction_data=arrays["diffraction_data"], object_data=arrays["object_data"],
        probe_data=arrays["probe_data"], probe_position_x_px=arrays["probe_position_x_px"],
        probe_position_y_px=arrays["probe_position_y_px"], valid_pixel_mask=arrays["valid_pixel_mask"])
    seconds = []
    for _ in range(int(settings["iterations"])):
        start = time.perf_counter()
        task.run(n_epochs=1)
        seconds.append(time.perf_counter() - start)
    obj, probe = from_ptychi(task.get_data_to_cpu("object", as_numpy=True),
                             task.get_data_to_cpu("probe", as_numpy=True))
    return {"object": obj, "probe": probe, "seconds": np.array(seconds),
            "version": np.array(package_version("ptychi"))}


def main(argv: list[str]) -> int:
    return main_for(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
