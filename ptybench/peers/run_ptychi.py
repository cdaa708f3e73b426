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
- Near field (the export's ``fresnel_number`` is finite): pty-chi propagates with its angular-spectrum
  transfer function over the distance z = Δ²/(λF) with pixel Δ (for a cone beam these are the effective
  distance z₂/M and pixel Δ/M of the Fresnel scaling, which is what F was derived from). Its
  ``ifft2(H·fft2(ψ))`` is unitary like ptybench's Fresnel propagator and differs from it by the constant
  phase exp(ikz) and terms of order (λ/Δ)⁴: data, mask and probe go in as they are (``fft_shift=False``).
- ``keep_models`` in SETTINGS: OUTPUT also gets every epoch's object and probe (``objects``, ``probes``), so
  ptybench can score each one with its own forward model.

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


def is_nearfield(inputs: Any) -> bool:
    return "fresnel_number" in inputs and bool(np.isfinite(float(inputs["fresnel_number"])))


def propagation_distance_m(inputs: Any) -> float:
    """pty-chi's free-space distance: infinite for far field, Δ²/(λF) for near field."""
    if not is_nearfield(inputs):
        return float("inf")
    pixel = float(inputs["object_pixel_m"])
    return pixel**2 / (float(inputs["wavelength_m"]) * float(inputs["fresnel_number"]))


def _fft_order(array: np.ndarray, nearfield: bool) -> np.ndarray:
    return array if nearfield else np.fft.ifftshift(array, axes=(-2, -1))


def ptychi_inputs(inputs: Any) -> dict[str, np.ndarray]:
    """The export in pty-chi's layout: far field FFT-order data and mask and an unnormalised-FFT probe, near
    field as they are; centre positions."""
    nearfield = is_nearfield(inputs)
    intensities = np.asarray(inputs["intensities"], dtype=np.float32)
    frame_shape = intensities.shape[-2:]
    corners = np.asarray(inputs["positions_px"], dtype=np.float64)
    probe = np.asarray(inputs["initial_probe"], dtype=np.complex64)
    probe_norm = np.float32(1.0 if nearfield else np.sqrt(frame_shape[0] * frame_shape[1]))
    return {
        "diffraction_data": _fft_order(intensities, nearfield),
        "valid_pixel_mask": _fft_order(np.asarray(inputs["mask"], dtype=bool), nearfield),
        "probe_position_y_px": corners[:, 0] + frame_shape[0] // 2,
        "probe_position_x_px": corners[:, 1] + frame_shape[1] // 2,
        "object_data": np.asarray(inputs["initial_object"], dtype=np.complex64)[None],
        "probe_data": (probe / probe_norm)[None, None],
        "position_origin": np.array(position_origin(frame_shape)),
    }


def from_ptychi(obj: np.ndarray, probe: np.ndarray, nearfield: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """pty-chi's (1, A, B) object and (1, M, Y, X) probe back to the export's grid and units."""
    probe = np.asarray(probe)[0, 0]
    norm = 1.0 if nearfield else np.sqrt(probe.size)
    return np.asarray(obj)[0].astype(np.complex64), (probe * norm).astype(np.complex64)


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
    data.free_space_propagation_distance_m = float(settings["distance_m"])
    data.wavelength_m = float(settings["wavelength_m"])
    data.fft_shift = False  # far field: in FFT order already (ptychi_inputs); near field: real space
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
    nearfield = is_nearfield(inputs)
    settings = {**settings, "wavelength_m": float(inputs["wavelength_m"]),
                "object_pixel_m": float(inputs["object_pixel_m"]), "distance_m": propagation_distance_m(inputs)}
    n_frames = arrays["diffraction_data"].shape[0]
    options = build_options(api, settings["engine"], settings, arrays, n_frames)
    task = PtychographyTask(
        options, diffraction_data=arrays["diffraction_data"], object_data=arrays["object_data"],
        probe_data=arrays["probe_data"], probe_position_x_px=arrays["probe_position_x_px"],
        probe_position_y_px=arrays["probe_position_y_px"], valid_pixel_mask=arrays["valid_pixel_mask"])

    def model() -> tuple[np.ndarray, np.ndarray]:
        return from_ptychi(task.get_data_to_cpu("object", as_numpy=True),
                           task.get_data_to_cpu("probe", as_numpy=True), nearfield)

    seconds, models = [], []
    for _ in range(int(settings["iterations"])):
        start = time.perf_counter()
        task.run(n_epochs=1)
        seconds.append(time.perf_counter() - start)
        if settings.get("keep_models"):
            models.append(model())  # outside the timed part
    obj, probe = model()
    extra = {"objects": np.stack([o for o, _ in models]), "probes": np.stack([p for _, p in models])} \
        if models else {}
    return {"object": obj, "probe": probe, "seconds": np.array(seconds),
            "version": np.array(package_version("ptychi")), **extra}


def main(argv: list[str]) -> int:
    return main_for(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
