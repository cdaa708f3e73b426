"""CXI (HDF5) files: the standard paths other ptychography codes read, plus a ptybench group.

Standard CXI 1.6 paths written (units in a ``units`` attribute) and read:
  /cxi_version, /entry_1/definition ("NXcxi_ptycho"), /entry_1/start_time,
  /entry_1/instrument_1/source_1/energy (J),
  /entry_1/instrument_1/detector_1/{data, distance (m), x_pixel_size, y_pixel_size (m), mask},
  /entry_1/sample_1/geometry_1/translation (N, 3) in metres (x = column, y = row, z = 0),
  /entry_1/image_1/data the initial probe (modes, Y, X), data_type "probe", linked from
  /entry_1/instrument_1/source_1/illumination; /entry_1/image_2/data the initial object (modes, A, B),
  data_type "object"; each image with data_space "real", image_size (m) and process_1 (program, version,
  date, note); /entry_1/data_1/{data, translation} as links.
The CXI mask is a bit field with 0 = good pixel; ptybench's mask is True = measured.
CXI cannot say which propagation regime the data are in: /entry_1/ptybench keeps the propagation
("farfield" | "nearfield") and the Fresnel number of one pixel (near field; the standard distance and
pixel size are written consistent with it), plus what makes a round trip exact: positions in pixels,
the object pixel size, the dataset spec and the ground truth.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ptybench.engines.errors import InputError
from ptybench.engines.modes import expand_modes

from .bad_pixels import BadPixels, find_bad_pixels
from .base import Dataset, GroundTruth
from .geometry import (
    PIXEL_MATCH,
    PROPAGATIONS,
    GeometryError,
    ScanGeometry,
    farfield_geometry,
    nearfield_geometry,
    parse_options,
    positive_length,
)
from .spec import HC_KEV_M, DatasetSpec

#: A scan wider than this many object pixels is a unit or geometry mistake (float32 positions stay exact below it).
MAX_SCAN_PIXELS = 2**24
CXI_VERSION = 160
JOULES_PER_KEV = 1.602176634e-16
DETECTOR = "entry_1/instrument_1/detector_1"
SOURCE = "entry_1/instrument_1/source_1"
TRANSLATION = "entry_1/sample_1/geometry_1/translation"
PROBE_IMAGE = "entry_1/image_1"
OBJECT_IMAGE = "entry_1/image_2"
EXTRA = "entry_1/ptybench"
WRITE_BLOCK_BYTES = 256 * 2**20
#: What a CXI file's HDF5 indirection to other files may do (CXIDataset's ``external``).
EXTERNAL_POLICIES = ("refuse", "same-folder")
#: Frames read to find dead and hot pixels in a file without a mask.
BAD_PIXEL_FRAMES = 256
#: data_type values that name an object image (ptybench writes "object"; ptychodus "electron density").
OBJECT_DATA_TYPES = ("object", "electron density", "transmission", "complex")


def _with_units(group: Any, name: str, value: Any, units: str) -> None:
    group[name] = value
    group[name].attrs["units"] = units


def _write_image(f: Any, path: str, array: np.ndarray, data_type: str, pixel_m: float, note: str) -> None:
    """A CXI image group the way other writers lay it out: data, data_type, data_space, image_size,
    and the process that made it."""
    from ptybench import __version__

    image = f.require_group(path)
    image["data"] = np.asarray(array, dtype=np.complex64)
    image["data"].attrs["axes"] = "mode:y:x"
    image["data_type"] = data_type
    image["data_space"] = "real"
    _with_units(image, "image_size", np.array([array.shape[-1] * pixel_m, array.shape[-2] * pixel_m, 0.0]), "m")
    process = image.require_group("process_1")
    process["program"] = "ptybench"
    process["version"] = __version__
    process["date"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    process["note"] = note


def write_cxi(path: str | os.PathLike, dataset: Dataset) -> Path:
    """Write a dataset (SyntheticDataset or CXIDataset) to ``path`` block by block, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # created exclusively under an unpredictable name: a symlink planted at a known name is never written through
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(descriptor)
    os.chmod(name, 0o644)
    partial = Path(name)
    spec = dataset.spec
    n_frames, frame_shape = dataset.n_frames, dataset.frame_shape
    positions = dataset.positions
    with h5py.File(partial, "w") as f:
        f["cxi_version"] = CXI_VERSION
        f["entry_1/definition"] = "NXcxi_ptycho"
        f["entry_1/start_time"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        _with_units(f.require_group(SOURCE), "energy", dataset.energy_kev * JOULES_PER_KEV, "J")
        detector = f.require_group(DETECTOR)
        data = detector.create_dataset("data", shape=(n_frames, *frame_shape), dtype=np.uint32,
                                       chunks=(1, *frame_shape))
        data.attrs["axes"] = "translation:y:x"
        block = max(1, WRITE_BLOCK_BYTES // (4 * frame_shape[0] * frame_shape[1]))
        for start in range(0, n_frames, block):
            stop = min(start + block, n_frames)
            data[start:stop] = dataset.frames(start, stop)
        _with_units(detector, "distance", dataset.distance_m, "m")
        _with_units(detector, "x_pixel_size", dataset.detector_pixel_m, "m")
        _with_units(detector, "y_pixel_size", dataset.detector_pixel_m, "m")
        detector["mask"] = np.where(dataset.mask, 0, 1).astype(np.uint32)
        translation = np.zeros((n_frames, 3))
        translation[:, 0] = positions[:, 1] * dataset.object_pixel_m
        translation[:, 1] = positions[:, 0] * dataset.object_pixel_m
        _with_units(f, TRANSLATION, translation, "m")
        _write_image(f, PROBE_IMAGE, dataset.initial_probe(), "probe", dataset.object_pixel_m, "initial guess")
        f[SOURCE + "/illumination"] = h5py.SoftLink(f"/{PROBE_IMAGE}/data")
        _write_image(f, OBJECT_IMAGE, dataset.initial_object(), "object", dataset.object_pixel_m, "initial guess")
        f["entry_1/data_1/data"] = h5py.SoftLink(f"/{DETECTOR}/data")
        f["entry_1/data_1/translation"] = h5py.SoftLink(f"/{TRANSLATION}")
        extra = f.require_group(EXTRA)
        extra["positions_pixels"] = positions
        extra.attrs["object_pixel_m"] = dataset.object_pixel_m
        for key, value in dataset.engine_parameters().items():
            extra.attrs[key] = value
        geometry = getattr(dataset, "scan_geometry", None)
        if geometry is not None and geometry.focus_to_sample_m is not None:
            extra.attrs["focus_to_sample_m"] = geometry.focus_to_sample_m
        if spec is not None:
            extra.attrs["spec"] = json.dumps(spec.to_dict())
        truth = dataset.ground_truth()
        if truth is not None:
            extra["ground_truth/object"] = truth.object
            extra["ground_truth/probe"] = truth.probe
    os.replace(partial, path)
    return path


class CXIDataset(Dataset):
    """CXI files read lazily: frames come from disk block by block, like a SyntheticDataset's.

    Only standard fields are required: detector data, distance and pixel size, source energy and the
    sample translations (metres). Files from other codes get positions from the translations and the
    far-field pixel size λz/(X·pixel); the initial probe from source_1/illumination, else estimated from
    the mean pattern (``initial_probe_source`` says which); the initial object from an
    entry_1/image_N with data_type "object", else flat. Several files can be combined (diffraction in
    the first, positions or probe in the others, as some beamlines split them): each field is taken from
    the first file that has it.
    """

    REQUIRED = (DETECTOR + "/data", DETECTOR + "/distance", DETECTOR + "/x_pixel_size", SOURCE + "/energy",
                TRANSLATION)

    def __init__(self, path: str | os.PathLike, *more: str | os.PathLike, external: str = "refuse",
                 **geometry: Any) -> None:
        """``geometry``: what the file may not say (datasets/geometry.py): ``propagation``, ``beam`` and
        ``focus_to_sample_m`` (a cone beam's focus-to-sample distance). ``external``: "refuse" (default) any
        HDF5 indirection to other files (external links, external raw storage, virtual datasets), or
        "same-folder": follow it only to files in the CXI file's own folder (VDS master files)."""
        if external not in EXTERNAL_POLICIES:
            raise InputError(f"external: expected one of {list(EXTERNAL_POLICIES)}, got {external!r}")
        self.external = external
        self.paths = [Path(p) for p in (path, *more)]
        self.path = self.paths[0]
        self._files = [_open_hdf5(p) for p in self.paths]
        try:
            for field in self.REQUIRED:
                self._require(field)
            self._data = self._require(DETECTOR + "/data")
            if self._data.dtype.kind not in "iuf":
                raise InputError(f"dataset: {self._where(DETECTOR + '/data')} holds {self._data.dtype} values; "
                                 f"intensities are real, non-negative counts (integer or float)")
            if self._data.ndim != 3:
                raise InputError(f"dataset: {self._where(DETECTOR + '/data')} is {self._data.ndim}-D with shape "
                                 f"{self._data.shape}; expected (N, Y, X) frames")
            if self._data.shape[0] == 0:
                raise InputError(f"dataset: {self._where(DETECTOR + '/data')} holds no frames (shape "
                                 f"{self._data.shape})")
            self._check_translations()
            self._extra = self._find(EXTRA)
            attrs = self._extra.attrs if self._extra is not None else {}
            self.spec = _stored_spec(attrs, self._where(EXTRA))
            self.scan_geometry = self._resolve_geometry(parse_options(geometry))
        except ValueError:
            self.close()
            raise

    def _check_translations(self) -> None:
        """One finite (x, y[, z]) translation per frame: checked when the file is opened, before any work."""
        translation = self._require(TRANSLATION)
        if translation.ndim != 2 or translation.shape[0] != self.n_frames or translation.shape[1] < 2:
            raise InputError(f"dataset: /{TRANSLATION} in {self.path} has shape {translation.shape}; expected "
                             f"({self.n_frames}, 3) translations in metres, one per frame")
        if translation.dtype.kind not in "iuf" or not np.all(np.isfinite(np.asarray(translation)[:, :2])):
            raise InputError(f"dataset: /{TRANSLATION} in {self.path} holds NaN, infinite or non-numeric "
                             f"translations")

    # --- geometry ------------------------------------------------------------------------------------
    def _resolve_geometry(self, given: dict[str, Any]) -> ScanGeometry:
        """The regime from the ptybench group, the user's options or a stored image's pixel size, in that
        order; near field also needs the beam (parallel, or a cone with its focus distance). Anything that
        cannot be told is a GeometryError saying what to pass."""
        attrs = self._extra.attrs if self._extra is not None else {}
        wavelength = HC_KEV_M / self.energy_kev
        distance = positive_length(f"/{DETECTOR}/distance", self.distance_m)
        pixel = positive_length(f"/{DETECTOR}/x_pixel_size", self.detector_pixel_m)
        stored = _text(attrs["propagation"]) if "propagation" in attrs else None
        if stored is not None and stored not in PROPAGATIONS:
            raise GeometryError(f"propagation: /{EXTRA} in {self.path} says {stored!r}; expected one of "
                                f"{list(PROPAGATIONS)}")
        if stored is not None and given.get("propagation") not in (None, stored):
            raise GeometryError(f"propagation: {given['propagation']!r} given, but {self.path} says {stored!r}")
        propagation, source = (given["propagation"], "given") if given.get("propagation") else (stored, "file")
        if propagation is None and self._stored_image_pixel_is_farfield(wavelength, distance, pixel):
            propagation, source = "farfield", "file (a stored image has the far-field pixel size)"
        if propagation is None:
            raise GeometryError(
                f"dataset: {self.path} does not say whether it is far- or near-field data (CXI has no field for "
                f"it), and the two give object pixels 10-100x apart; pass the geometry, e.g. "
                f"'{self.path}?propagation=farfield', '{self.path}?propagation=nearfield&beam=parallel' or "
                f"'{self.path}?propagation=nearfield&focus_to_sample_m=0.00365' (a cone beam)")
        if propagation == "farfield":
            if "object_pixel_m" in attrs:
                return ScanGeometry("farfield", float(attrs["object_pixel_m"]), None, None, 1.0, distance, source)
            return farfield_geometry(wavelength, distance, pixel, self.frame_shape[1], source)
        focus = given.get("focus_to_sample_m") or attrs.get("focus_to_sample_m")
        beam = given.get("beam") or ("cone" if focus is not None else attrs.get("beam"))
        if beam is None and stored == "nearfield" and "fresnel_number" in attrs and "object_pixel_m" in attrs:
            fresnel = positive_length(f"/{EXTRA}@fresnel_number", attrs["fresnel_number"])
            return ScanGeometry("nearfield", float(attrs["object_pixel_m"]), fresnel, "parallel", 1.0, distance,
                                "file (ptybench group)")
        if beam is None:
            raise GeometryError(
                f"beam: near-field data in {self.path} need the beam: pass beam=parallel (object pixel = detector "
                f"pixel) or focus_to_sample_m=<metres> (a cone beam, Fresnel scaling), e.g. "
                f"'{self.path}?propagation=nearfield&focus_to_sample_m=0.00365'")
        focus = positive_length("focus_to_sample_m", focus) if beam == "cone" else None
        return nearfield_geometry(wavelength, distance, pixel, focus, source)

    def _stored_image_pixel_is_farfield(self, wavelength: float, distance: float, pixel: float) -> bool:
        """A probe or object image stored with its physical size (as ptychodus writes them) tells the regime."""
        farfield_pixel = wavelength * distance / (self.frame_shape[1] * pixel)
        for image in (self._stored_probe(), self._stored_object()):
            if image is None or image.parent is None or "image_size" not in image.parent:
                continue
            size = np.asarray(image.parent["image_size"], dtype=float).ravel()
            if size.size and np.isfinite(size[0]) and size[0] > 0:
                image_pixel = size[0] / image.shape[-1]
                return abs(image_pixel / farfield_pixel - 1) < PIXEL_MATCH
        return False

    # --- where fields are ----------------------------------------------------------------------------
    def _find(self, field: str) -> Any:
        for handle in self._files:
            if self._linked_safely(handle, field) and field in handle:
                found = handle[field]
                if isinstance(found, h5py.Dataset):
                    self._check_storage(handle, field, found)
                return found
        return None

    def _linked_safely(self, handle: Any, field: str) -> bool:
        """Whether ``field`` exists without crossing an external link that the policy refuses (checked link by
        link before h5py follows any); an allowed link must stay inside the file's folder."""
        parts = field.split("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            link = handle.get(prefix, getlink=True)
            if link is None:
                return False
            if isinstance(link, h5py.ExternalLink):
                where = f"/{prefix} in {handle.filename}"
                if self.external == "refuse":
                    raise InputError(f"dataset: {where} is an external link to {link.filename!r}; refused "
                                     f"(a file from elsewhere may point anywhere); pass external=same-folder to "
                                     f"follow links to files in its own folder")
                self._require_same_folder(handle, link.filename, where)
        return True

    def _check_storage(self, handle: Any, field: str, dataset: Any) -> None:
        where = f"/{field} in {handle.filename}"
        sources = []
        if dataset.external:
            if self.external == "refuse":
                raise InputError(f"dataset: {where} keeps its values in external storage "
                                 f"({dataset.external[0][0]!r}); refused: raw external files are never followed")
            raise InputError(f"dataset: {where} keeps its values in external raw storage "
                             f"({dataset.external[0][0]!r}); not followed even with external=same-folder")
        if dataset.is_virtual:
            sources = [source.file_name for source in dataset.virtual_sources()]
            if self.external == "refuse":
                raise InputError(f"dataset: {where} is a virtual dataset over {sources[:3]}; refused by default; "
                                 f"pass external=same-folder to read its sources from the file's own folder")
        for source in sources:
            self._require_same_folder(handle, source, where)

    @staticmethod
    def _require_same_folder(handle: Any, target: str, where: str) -> None:
        folder = Path(handle.filename).resolve().parent
        resolved = (folder / target).resolve() if target not in (".", "") else Path(handle.filename).resolve()
        if resolved.parent != folder:
            raise InputError(f"dataset: {where} points to {target!r}, outside the file's folder {str(folder)!r}; "
                             f"refused")

    def _require(self, field: str) -> Any:
        found = self._find(field)
        if found is None:
            files = ", ".join(str(p) for p in self.paths)
            raise InputError(f"dataset: {files} lacks the required CXI field /{field}")
        return found

    def _where(self, field: str) -> str:
        return f"/{field} in {self.paths[0]}"

    def close(self) -> None:
        for handle in self._files:
            handle.close()

    def __repr__(self) -> str:
        files = ", ".join(repr(str(p)) for p in self.paths)
        return f"CXIDataset({files}, {self.n_frames} frames of {self.frame_shape})"

    # --- metadata ------------------------------------------------------------------------
    @property
    def n_frames(self) -> int:
        return int(self._data.shape[0])

    @property
    def frame_shape(self) -> tuple[int, int]:
        return (int(self._data.shape[1]), int(self._data.shape[2]))

    def _number(self, field: str) -> float:
        """A numeric scalar field (a one-element array too), or an InputError naming it."""
        value = np.asarray(self._require(field)[()])
        if value.dtype.kind not in "iuf" or value.size < 1:
            raise InputError(f"dataset: {self._where(field)} is {value!r}; expected a number")
        return float(value.ravel()[0])

    @property
    def energy_kev(self) -> float:
        return positive_length(f"/{SOURCE}/energy", self._number(SOURCE + "/energy")) / JOULES_PER_KEV

    @property
    def distance_m(self) -> float:
        return self._number(DETECTOR + "/distance")

    @property
    def detector_pixel_m(self) -> float:
        return self._number(DETECTOR + "/x_pixel_size")

    @property
    def object_pixel_m(self) -> float:
        return self.scan_geometry.object_pixel_m

    def engine_parameters(self) -> dict[str, Any]:
        return self.scan_geometry.engine_parameters()

    # --- arrays ----------------------------------------------------------------------------
    @property
    def positions(self) -> np.ndarray:
        if self._extra is not None and "positions_pixels" in self._extra:
            return np.asarray(self._extra["positions_pixels"], dtype=np.float32)
        translation = np.asarray(self._require(TRANSLATION))
        if translation.ndim != 2 or translation.shape[0] != self.n_frames or translation.shape[1] < 2:
            raise InputError(f"dataset: /{TRANSLATION} has shape {translation.shape}; expected ({self.n_frames}, 3) "
                             f"translations in metres, one per frame")
        if not np.all(np.isfinite(translation[:, :2])):
            raise InputError(f"dataset: /{TRANSLATION} in {self.path} holds NaN or infinite translations")
        with np.errstate(over="ignore", invalid="ignore"):
            pixels = np.stack([translation[:, 1], translation[:, 0]], axis=1) / self.object_pixel_m
            pixels = pixels - pixels.min(axis=0)
        extent = float(np.max(pixels)) if pixels.size else 0.0
        if not (np.isfinite(extent) and extent <= MAX_SCAN_PIXELS):
            raise InputError(f"dataset: /{TRANSLATION} in {self.path} spans {extent:.3g} object pixels of "
                             f"{self.object_pixel_m:.3g} m; expected at most {MAX_SCAN_PIXELS} (are the "
                             f"translations in metres, and the detector pixel size and distance right?)")
        # kept to the sub-pixel: the engines say what they do with the fraction (docs/algorithms.md)
        return pixels.astype(np.float32)

    @property
    def mask(self) -> np.ndarray:
        """The file's mask; for a file without one, dead and hot pixels found in (up to) its first
        BAD_PIXEL_FRAMES frames (``mask_source`` says which)."""
        mask = self._find(DETECTOR + "/mask")
        if mask is not None:
            return np.asarray(mask) == 0
        return self._bad_pixels().mask

    def _bad_pixels(self) -> BadPixels:
        if getattr(self, "_found_bad_pixels", None) is None:
            self._found_bad_pixels = find_bad_pixels(self.frames(0, min(self.n_frames, BAD_PIXEL_FRAMES)))
        return self._found_bad_pixels

    @property
    def mask_source(self) -> str:
        return "file" if self._find(DETECTOR + "/mask") is not None else self._bad_pixels().describe()

    def frames(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        stop = self.n_frames if stop is None else stop
        if not (0 <= start <= stop <= self.n_frames):
            raise InputError(f"frames: expected 0 <= start <= stop <= {self.n_frames}, got {start}, {stop}")
        try:
            block = self._data[start:stop]
        except OSError as error:  # a truncated file: h5py cannot read the chunks
            raise InputError(f"dataset: cannot read frames {start}..{stop} of {self._where(DETECTOR + '/data')} "
                             f"({error}); is the file complete?") from None
        return block if block.dtype == np.uint32 else block.astype(np.float32)

    def ground_truth(self) -> GroundTruth | None:
        if self._extra is None or "ground_truth" not in self._extra:
            return None
        truth = self._extra["ground_truth"]
        return GroundTruth(np.asarray(truth["object"]), np.asarray(truth["probe"]))

    @property
    def object_shape(self) -> tuple[int, int]:
        stored = self._stored_object()
        if stored is not None:
            return tuple(int(s) for s in stored.shape[-2:])
        from ptybench.engines.validation import frame_corners

        extent = frame_corners(self.positions).max(axis=0)
        return (int(extent[0]) + self.frame_shape[0], int(extent[1]) + self.frame_shape[1])

    def _stored_object(self) -> Any:
        if self._extra is not None and "initial/object" in self._extra:
            return self._extra["initial/object"]
        return _image_of_type(self._files, OBJECT_DATA_TYPES)

    def _stored_probe(self) -> Any:
        if self._extra is not None and "initial/probe" in self._extra:
            return self._extra["initial/probe"]
        return self._find(SOURCE + "/illumination")

    @property
    def probe_modes(self) -> int:
        """From the stored probe's shape, without estimating a probe from the frames (that reads them)."""
        stored = self._stored_probe()
        return 1 if stored is None or len(stored.shape) == 2 else int(stored.shape[-3])

    @property
    def object_modes(self) -> int:
        stored = self._stored_object()
        return 1 if stored is None else (1 if len(stored.shape) == 2 else int(stored.shape[0]))

    @property
    def initial_probe_source(self) -> str:
        if self._stored_probe() is not None:
            return "file"
        return "estimated from the mean diffraction pattern"

    def initial_object(self, modes: int | None = None) -> np.ndarray:
        stored = self._stored_object()
        if stored is not None:
            obj = _as_modes(np.asarray(stored))
            if modes is None or modes == obj.shape[0]:
                return obj
        return np.ones((modes or 1, *self.object_shape), dtype=np.complex64)

    def initial_probe(self, modes: int | None = None) -> np.ndarray:
        stored = self._stored_probe()
        if stored is not None:
            probe = _as_modes(np.asarray(stored))
            return probe if modes is None else expand_modes(probe, modes)
        return probe_from_mean_pattern(self.frames(0, min(self.n_frames, 256)), self.mask, modes or 1,
                                       self.engine_parameters())

    def describe(self, name: str) -> dict[str, Any]:
        return {**super().describe(name), "initial_probe": self.initial_probe_source,
                "files": [str(p) for p in self.paths], "geometry": self.scan_geometry.to_dict(),
                "mask": self.mask_source}


def _stored_spec(attrs: Any, where: str) -> DatasetSpec | None:
    if "spec" not in attrs:
        return None
    try:
        return DatasetSpec.from_dict(json.loads(_text(attrs["spec"])))
    except (json.JSONDecodeError, TypeError) as error:
        raise InputError(f"dataset: the spec attribute of {where} is not a JSON dataset spec ({error})") from None


def _open_hdf5(path: Path) -> Any:
    if not path.is_file():
        raise InputError(f"dataset: expected a CXI file, {str(path)!r} does not exist")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise InputError(f"dataset: {str(path)!r} is not a readable HDF5/CXI file ({error})") from None


def _image_of_type(files: list[Any], data_types: tuple[str, ...]) -> Any:
    """The data of the first entry_1/image_N whose data_type is one of ``data_types`` (CXI convention)."""
    for handle in files:
        entry = handle.get("entry_1")
        if entry is None:
            continue
        for key in sorted(k for k in entry if k.startswith("image_")):
            group = entry[key]
            kind = group.get("data_type")
            if kind is not None and "data" in group and _text(kind[()]) in data_types:
                return group["data"]
    return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _as_modes(array: np.ndarray) -> np.ndarray:
    """(Y, X), (modes, Y, X) or (components, modes, Y, X) as complex64 (modes, Y, X); of several
    probe components (ptychodus's orthogonal probe relaxation) the first, the mean probe."""
    array = np.asarray(array, dtype=np.complex64)
    if array.ndim == 4:
        array = array[0]
    return array[None] if array.ndim == 2 else array


def probe_from_mean_pattern(frames: np.ndarray, mask: np.ndarray, modes: int,
                            propagation: dict[str, Any] | None = None) -> np.ndarray:
    """The classic guess for data without one: D⁻¹ of √(mean pattern), flat phase; extra modes from it
    (engines/modes.py: orthogonal, 5 % of its power each).
    Far field: the pattern's inverse FFT, centred; near field: the mean hologram propagated back to the
    sample (the object averages out over the scan, so the mean hologram is about |D P|²)."""
    mean = np.where(mask, frames.astype(np.float64).mean(axis=0), 0.0)
    propagation = propagation or {"propagation": "farfield"}
    if propagation["propagation"] == "nearfield":
        from ptybench.engines.backends.numpy_backend import NumpyBackend
        from ptybench.engines.propagation import make_propagator

        propagator = make_propagator(NumpyBackend(), "nearfield", mean.shape, propagation["fresnel_number"])
        probe = propagator.backward(np.sqrt(mean).astype(np.complex64)[None, None, None].copy())[0, 0, 0]
    else:
        probe = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(np.sqrt(mean)), norm="ortho"))
    return expand_modes(probe.astype(np.complex64)[None], modes)


def open_cxi(path: str | os.PathLike, *more: str | os.PathLike, **geometry: Any) -> CXIDataset:
    """A CXI dataset from one file, or several that complete each other (fields from the first that has them);
    ``geometry`` gives what the file does not say (datasets/geometry.py)."""
    return CXIDataset(path, *more, **geometry)
