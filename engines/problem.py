"""Problem: the data and shared state of one reconstruction on one backend.

Every engine stage reads the same Problem: measured intensities (float32 photons, the propagator's
internal order, masked pixels zeroed), mask, frame corners, object and probe (scaled to photons
with the data). Per-frame arrays live in
FrameStores, resident on the device or streamed block by block from the host (frames_per_block).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from . import subpixel
from .backends import backend_descriptor, get_backend
from .backends.base import Backend
from .communication import SerialCommunicator
from .errors import InputError
from .host_memory import host_available_bytes
from .metrics import FourierErrorSums
from .options import RunOptions
from .photons import QUANTUM_SAMPLE, PhotonScale, noise_floor_sum, photon_scale
from .placement import Placement, choose_placement, frame_costs
from .propagation import make_propagator
from .registry import engine_spec
from .scratch import BlockReadAhead, ScratchFrameStore, frames_key, scratch_directory
from .timing import StageTimer
from .validation import ProblemShape, frame_corners

#: Data are converted to float32 in steps of this many bytes, so loading adds little to the peak.
LOAD_STEP_BYTES = 16 * 2**20
#: The noise floor reads the data in steps of this many bytes (its integer temporaries are 3× that).
NOISE_STEP_BYTES = 2**20
#: Frames (spread over the scan) on which the initial probe's power is matched to the data.
POWER_MATCH_FRAMES = 64
#: The model's errors are computed this many bytes of exit waves at a time: a memory add-on that does not
#: grow with the compute block.
EVALUATION_STEP_BYTES = 2**20


def evaluation_step(frames_per_block: int, modes: int, frame_shape: tuple[int, int]) -> int:
    """Frames per step of the model evaluation: EVALUATION_STEP_BYTES of exit waves, within one block."""
    wave_bytes = 8 * modes * frame_shape[0] * frame_shape[1]
    return max(1, min(frames_per_block, EVALUATION_STEP_BYTES // wave_bytes))


def _frames_of(frames: np.ndarray | ScratchFrameStore, picked: np.ndarray) -> Iterator[np.ndarray]:
    """The ``picked`` frames of intensities in memory or on disk, one at a time, on the host."""
    for j in picked:
        yield frames[j] if isinstance(frames, np.ndarray) else frames.read_host(int(j), int(j) + 1)


class FrameStore:
    """Per-frame arrays on the device (resident) or on the host, copied in and out per block.

    The store takes ownership of ``host_array`` (a host backend keeps it without a copy).

    ``read`` returns a device array the engine may modify in place; ``write`` stores it back
    (nothing to do when resident: the block was a view of the stored array). When streaming,
    reading a block of ``blocks`` starts the upload of the one the engine will read next, as
    ``BlockReadAhead`` guesses it (the next in a sweep, the next of a mini-batch), so transfers
    overlap compute; any other range is copied on demand.
    """

    def __init__(self, backend: Backend, host_array: np.ndarray | None, shape: tuple[int, ...], dtype: Any,
                 resident: bool, blocks: list[tuple[int, int]] | None = None) -> None:
        self.backend = backend
        self.resident = resident
        self.shape = shape
        self._read_ahead = BlockReadAhead(blocks)
        self._pending: dict[tuple[int, int], Any] = {}
        if resident:
            self._array = backend.adopt(host_array) if host_array is not None else backend.zeros(
                shape, getattr(backend.xp, np.dtype(dtype).name))
        else:
            self._array = backend.pinned_empty(shape, np.dtype(dtype))
            if host_array is not None:  # an engine's own store (exit waves) is written before it is read
                self._array[...] = host_array

    def read(self, start: int, stop: int) -> Any:
        if self.resident:
            return self._array[start:stop]
        key = (start, stop)
        handle = self._pending.pop(key, None)
        if handle is None:
            handle = self.backend.upload_async(self._array[start:stop])
        following = self._read_ahead.advance(key, self._pending)
        if following is not None:
            self._pending[following] = self.backend.upload_async(self._array[slice(*following)])
        return self.backend.ready(handle)

    def gather(self, frames: np.ndarray, device_frames: Any) -> Any:
        """A copy of the frames listed (host indices ``frames``, the same on the device ``device_frames``):
        batches drawn from anywhere in the scan. Streamed, they are gathered on the host and copied in one go
        (or were, by ``gather_ahead``)."""
        if self.resident:
            return self._array[device_frames]
        handle = self._pending.pop(frames_key(frames), None)
        return self.backend.ready(handle) if handle is not None else self.backend.asarray(self._array[frames])

    def gather_ahead(self, frames: np.ndarray) -> None:
        """Start copying the frames listed in, for a ``gather`` of the same list soon (nothing to do when resident)."""
        key = frames_key(frames)
        if not self.resident and key not in self._pending:
            self._pending[key] = self.backend.upload_async(self._array[frames])

    def write(self, start: int, stop: int, block: Any) -> None:
        if self.resident:
            return
        key = (start, stop)
        self._pending.pop(key, None)  # a prefetched copy of this range is stale now
        self.backend.download_async(block, self._array[start:stop])


class Problem:
    """Inputs turned into backend arrays once; engines share it across stages."""

    def __init__(self, diffraction_data: Any, initial_object: np.ndarray, initial_probe: np.ndarray,
                 scan_positions: np.ndarray, mask: np.ndarray, shape: ProblemShape, run: RunOptions,
                 comm: Any = None, n_frames_total: int | None = None, stages: Any = None) -> None:
        """``stages``: the plan's stages (engine name and options each), which the placement reads."""
        self.run = run
        self.shape = shape
        self.comm = comm or SerialCommunicator()
        self.backend = get_backend(run.backend, run.device, run.threads)
        self.comm.bind(self.backend)
        self.xp = self.backend.xp
        self.timer = StageTimer(self.backend.sync, self._stage_timings(run.stage_timings, list(stages or ())))
        self.frame_shape = shape.frame_shape
        self.n_frames = shape.n_frames
        self.n_frames_total = n_frames_total or shape.n_frames
        self.propagator = make_propagator(self.backend, run.propagation, self.frame_shape, run.fresnel_number)

        #: Sub-pixel positions (top-left corners, object pixels) and the whole-pixel corners frames sit at.
        self.positions = np.asarray(scan_positions, dtype=np.float64).copy()
        self.corners = frame_corners(self.positions)
        self.rows = self.backend.index_array(self.corners[:, 0])
        self.cols = self.backend.index_array(self.corners[:, 1])
        #: Each frame's probe shifted by its position's fraction of a pixel (engines/subpixel.py), or None: whole
        #: pixels, the backends' fused kernels.
        self.subpixel = subpixel.SubpixelShifts(self.backend, self.frame_shape, self.positions - self.corners) \
            if run.positions == "subpixel" else None
        self._last_corners: tuple[np.ndarray, Any, Any] | None = None  # _rows_cols's last index array

        internal_mask = self.propagator.to_internal(np.asarray(mask, dtype=bool))
        self.mask = self.backend.asarray(internal_mask)
        self.valid_pixels = int(internal_mask.sum())
        self.placement = self._place(list(stages or ()))
        self.frames_per_block = self.placement.frames_per_block
        self._block_buffers: dict[str, Any] = {}
        self.streaming = self.placement.streaming
        #: Scratch files of this run (intensities, exit waves): their traffic is the run's disk I/O.
        self.scratch_stores: list[ScratchFrameStore] = []
        intensities = self._intensity_target()
        saturated, sample = self._load_intensities(diffraction_data, internal_mask, intensities)
        self.saturated_pixels = self._mask_saturated(intensities, saturated, internal_mask)
        self.photon_scale = self._to_photons(intensities, diffraction_data, sample)
        self.noise_floor = self._noise_floor(intensities)
        picked = self._power_match_frames()
        measured_power = float(sum(np.sum(block, dtype=np.float64) for block in _frames_of(intensities, picked)))
        self.intensities = intensities if isinstance(intensities, ScratchFrameStore) else \
            self.frame_store(intensities, (self.n_frames, *self.frame_shape), np.float32)
        del intensities
        self.object = self.backend.asarray(np.asarray(initial_object, dtype=np.complex64))
        probe_scale = np.float32(np.sqrt(self.photon_scale.photons_per_unit))
        self.probe = self.backend.asarray(np.asarray(initial_probe, dtype=np.complex64) * probe_scale)
        self._require_probe_power_on_valid_pixels(initial_probe, internal_mask)
        #: The incoherent background per detector pixel (photons, internal order; engines/background.py), or None
        #: until one is fitted.
        self.background: Any = None
        self.initial_probe_scale = self._match_probe_power(picked, measured_power) if run.probe_power == "data" \
            else 1.0

    def _stage_timings(self, requested: bool | str, stages: list[Any]) -> bool:
        """'auto': stage timers on, except on a device for an engine that works one frame or one small batch at
        a time (each timer syncs the device: five syncs per frame or batch would serialise the host's kernel
        launches with the device's work, which otherwise overlap)."""
        if requested != "auto":
            return bool(requested)
        from .registry import engine_spec

        small_steps = any(engine_spec(stage.engine).one_frame_at_a_time
                          or engine_spec(stage.engine).largest_useful_block(stage.options) is not None
                          for stage in stages)
        return not (self.backend.is_device_memory and small_steps)

    def _place(self, stages: list[Any]) -> Placement:
        """Residency and compute block from the stages' registered memory terms and the free memory; an
        automatic block is no larger than the most frames any stage can use at once."""
        descriptor = backend_descriptor(self.run.backend)
        specs = [engine_spec(stage.engine) for stage in stages] if stages else [engine_spec("DM")]
        costs = frame_costs(self.frame_shape, self.shape.object_shape, self.shape.probe_modes,
                            self.shape.object_modes, specs, descriptor.fused_kernels(self.run.device),
                            self.run.positions == "subpixel")
        requested = None if self.run.frames_per_block in (None, "auto") else int(self.run.frames_per_block)
        available = self.backend.available_memory_bytes() if self.backend.is_device_memory else \
            host_available_bytes()
        limits = [engine_spec(stage.engine).largest_useful_block(stage.options) for stage in stages]
        limit = None if not limits or None in limits else max(limits)
        return choose_placement(self.n_frames, costs, self.backend.is_device_memory, available, requested,
                                self.run.residency, limit)

    def _intensity_target(self) -> np.ndarray | ScratchFrameStore:
        """Where the float32 intensities are loaded: host memory, or a scratch file when the placement puts them
        on disk (they do not fit the host's free memory)."""
        shape = (self.n_frames, *self.frame_shape)
        if not self.placement.intensities_on_disk:
            return np.empty(shape, dtype=np.float32)
        store = ScratchFrameStore(self.backend, shape, np.float32, scratch_directory(self.run.scratch_directory),
                                  list(self.blocks()), self.timer)
        self.scratch_stores.append(store)
        return store

    def _host_blocks(self, frames: np.ndarray | ScratchFrameStore, step_bytes: int
                     ) -> Iterator[tuple[int, int, np.ndarray]]:
        """Host blocks of the loaded intensities, in memory or on disk (in compute blocks there: what does not fit
        memory is never held whole); see ``_put_back``."""
        step = self._load_step(frames, step_bytes)
        for start in range(0, self.n_frames, step):
            stop = min(start + step, self.n_frames)
            yield start, stop, frames[start:stop] if isinstance(frames, np.ndarray) else frames.read_host(start, stop)

    def _load_step(self, frames: np.ndarray | ScratchFrameStore, step_bytes: int) -> int:
        if not isinstance(frames, np.ndarray):
            return self.frames_per_block
        return max(1, step_bytes // (4 * self.frame_shape[0] * self.frame_shape[1]))

    @staticmethod
    def _put_back(frames: np.ndarray | ScratchFrameStore, start: int, stop: int, block: np.ndarray) -> None:
        """A block changed in place: in memory it was a view (nothing to do), on disk it is written back."""
        if not isinstance(frames, np.ndarray):
            frames.write(start, stop, block)

    def _load_intensities(self, diffraction_data: Any, internal_mask: np.ndarray,
                          out: np.ndarray | ScratchFrameStore) -> tuple[np.ndarray, np.ndarray]:
        """float32 intensities in internal order with masked pixels zeroed into ``out``, converted block by block
        (reading a lazy or HDF5 source one step at a time; no full-size temporaries). Returns the (Y, X) pixels
        that hold the integer type's largest value in some frame (saturated or overflow-flagged), and every
        k-th value of the data (the sample the count quantum is found in, photons.count_quantum)."""
        saturated = np.zeros(self.frame_shape, dtype=bool)
        dtype = np.dtype(getattr(diffraction_data, "dtype", np.float32))
        ceiling = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else None
        frame_size = self.frame_shape[0] * self.frame_shape[1]
        stride = self.n_frames * frame_size // QUANTUM_SAMPLE + 1 if self.n_frames * frame_size > QUANTUM_SAMPLE \
            else 1
        sample = []
        step = self._load_step(out, LOAD_STEP_BYTES)
        for start in range(0, self.n_frames, step):
            stop = min(start + step, self.n_frames)
            block = out[start:stop] if isinstance(out, np.ndarray) else \
                np.empty((stop - start, *self.frame_shape), dtype=np.float32)
            source = np.asarray(diffraction_data[start:stop])
            if ceiling is not None:
                saturated |= np.any(source == ceiling, axis=0)
            self.propagator.to_internal_into(source, block)
            np.multiply(block, internal_mask, out=block)
            sample.append(block.reshape(-1)[(-start * frame_size) % stride::stride].copy())
            self._put_back(out, start, stop, block)
        return self.propagator.to_internal(saturated), np.concatenate(sample)

    def _mask_saturated(self, intensities: np.ndarray | ScratchFrameStore, saturated: np.ndarray,
                        internal_mask: np.ndarray) -> int:
        """Pixels at the integer type's ceiling are not counts: they leave the mask (all ranks agree), with a
        warning naming how many, rather than feed 4·10⁹ photons to every engine."""
        saturated &= internal_mask
        if self.comm.size > 1:
            saturated = self.comm.allreduce_sum(saturated.astype(np.float32)) > 0
        count = int(saturated.sum())
        if count:
            for start, stop, block in self._host_blocks(intensities, LOAD_STEP_BYTES):
                block[:, saturated] = 0.0
                self._put_back(intensities, start, stop, block)
            internal_mask &= ~saturated
            self.mask = self.backend.asarray(internal_mask)
            self.valid_pixels = int(internal_mask.sum())
            if self.valid_pixels == 0:
                raise InputError("diffraction_data: every valid pixel is saturated (holds the integer type's "
                                 "largest value in some frame)")
            warnings.warn(f"diffraction_data: {count} pixel(s) hold the integer type's largest value "
                          f"(saturated or flagged) in some frame; they are masked", stacklevel=4)
        return count

    def _to_photons(self, intensities: np.ndarray | ScratchFrameStore, diffraction_data: Any,
                    sample: np.ndarray) -> PhotonScale:
        """Scale the loaded data to photons in place; every rank uses the mean of the ranks' factors."""
        is_integer = np.issubdtype(np.dtype(getattr(diffraction_data, "dtype", np.float32)), np.integer)
        scale = photon_scale(sample, is_integer, self.run.photons_per_unit)
        if self.comm.size > 1:
            factor = self.comm.allreduce_scalars([scale.photons_per_unit])[0] / self.comm.size
            scale = PhotonScale(factor, scale.source)
        if scale.photons_per_unit != 1.0:
            for start, stop, block in self._host_blocks(intensities, LOAD_STEP_BYTES):
                np.multiply(block, np.float32(scale.photons_per_unit), out=block)
                self._put_back(intensities, start, stop, block)
        if scale.source == "assumed":
            warnings.warn("diffraction_data: float data with no count quantum; taken as photon counts. "
                          "State parameters['photons_per_unit'] if they are not.", stacklevel=4)
        return scale

    def _power_match_frames(self) -> np.ndarray:
        """This rank's share of POWER_MATCH_FRAMES frames spread over the whole scan: the same frames of the scan
        whatever the rank count, so MPI runs scale the probe as a serial run does."""
        total = self.n_frames_total
        first, _ = self.comm.frame_range(total)
        spread = np.unique(np.linspace(0, total - 1, min(total, POWER_MATCH_FRAMES)).astype(int)) - first
        return spread[(spread >= 0) & (spread < self.n_frames)]

    def _match_probe_power(self, picked: np.ndarray, measured: float) -> float:
        """Scale the probe so Σ Î = Σ I on the ``picked`` frames of every rank (``measured``: this rank's Σ I
        there); returns the amplitude factor applied (1 when the model has no counts to compare)."""
        xp, kernels = self.xp, self.backend.kernels
        model = 0.0
        for start in range(0, len(picked), 8):
            waves = self.waves_at(picked[start:start + 8])
            intensity = kernels.mode_intensity(self.forward(picked[start:start + 8], waves, overwrite=True))
            # float64 sums: the factor must agree between backends to float32 rounding (DM amplifies 1e-7)
            model += float(xp.sum(xp.where(self.mask, intensity, xp.zeros_like(intensity)), dtype=xp.float64))
        measured, model = self.comm.allreduce_scalars([measured, model])
        if not (model > 0 and measured > 0):
            return 1.0
        factor = float(np.sqrt(measured / model))
        self.probe = self.probe * np.float32(factor)
        return factor

    def _require_probe_power_on_valid_pixels(self, initial_probe: np.ndarray, internal_mask: np.ndarray) -> None:
        """A probe whose detector-side power falls only on masked pixels cannot be constrained by the data."""
        from .backends.numpy_backend import NumpyBackend

        host = make_propagator(NumpyBackend(), self.run.propagation, self.frame_shape, self.run.fresnel_number)
        far = host.forward(np.asarray(initial_probe, dtype=np.complex64)[None, :, None].copy(), overwrite=True)
        power = np.sum(np.abs(far[0, :, 0]) ** 2, axis=0)
        if not np.sum(power[internal_mask]) > 1e-6 * np.sum(power):
            raise InputError("initial_probe: expected detector-side power on valid pixels, got (almost) none "
                             "inside the mask: the data cannot constrain this probe")

    def _noise_floor(self, intensities: np.ndarray | ScratchFrameStore) -> float:
        """Mean over valid pixels of every frame of e(k) = E[(√λ − √k)²] at the measured counts k:
        the Fourier error a perfect model would have on these data (docs/algorithms.md, "Power bound")."""
        local = photons = zeros = 0.0
        for _, _, block in self._host_blocks(intensities, NOISE_STEP_BYTES):
            local += noise_floor_sum(block, self.photon_scale.quantised)
            photons += float(np.sum(block, dtype=np.float64))
            zeros += float(np.count_nonzero(block == 0))
        # masked pixels are zero too: the zeros among valid pixels are all zeros less the masked ones
        zeros -= self.n_frames * (self.frame_shape[0] * self.frame_shape[1] - self.valid_pixels)
        total, all_photons, all_zeros = self.comm.allreduce_scalars([local, photons, zeros])
        if not all_photons > 0:
            raise InputError("diffraction_data: expected photons on valid pixels, got all zero (after the mask)")
        #: Share of valid pixels of every frame that counted nothing: sparse data when most did.
        self.zero_fraction = all_zeros / max(1, self.n_frames_total * self.valid_pixels)
        return total / max(1, self.n_frames_total * self.valid_pixels)

    def frame_store(self, host_array: np.ndarray | None, shape: tuple[int, ...], dtype: Any) -> Any:
        """A per-frame array, resident or streamed in this problem's blocks; an engine's own (``host_array``
        None: exit waves) in a scratch file when the placement says disk."""
        if host_array is None and self.placement.disk:
            store = ScratchFrameStore(self.backend, shape, dtype, scratch_directory(self.run.scratch_directory),
                                      list(self.blocks()), self.timer)
            self.scratch_stores.append(store)
            return store
        return FrameStore(self.backend, host_array, shape, dtype, resident=not self.streaming,
                          blocks=list(self.blocks()))

    def disk_traffic(self) -> tuple[int, int]:
        """Bytes read from and written to this run's scratch files so far."""
        return (sum(store.bytes_read for store in self.scratch_stores),
                sum(store.bytes_written for store in self.scratch_stores))

    def move_frames(self, positions: np.ndarray) -> bool:
        """Place this rank's frames at ``positions`` (sub-pixel, kept); True when a frame moved where the engines
        see it: to another pixel, or (sub-pixel placement) by any fraction."""
        self.positions = np.asarray(positions, dtype=np.float64)
        corners = frame_corners(self.positions)
        moved = bool(np.any(corners != self.corners))
        if moved:
            self.corners = corners
            self.rows = self.backend.index_array(corners[:, 0])
            self.cols = self.backend.index_array(corners[:, 1])
        self._last_corners = None
        if self.subpixel is not None:
            fractions = self.positions - self.corners
            moved = moved or bool(np.any(fractions != self.subpixel.fractions))
            self.subpixel.move(fractions)
        return moved

    @property
    def position_limits(self) -> np.ndarray:
        """The largest top-left corner (row, col) that keeps a frame inside the object."""
        return np.array(self.shape.object_shape) - np.array(self.frame_shape)

    def blocks(self) -> Iterator[tuple[int, int]]:
        for start in range(0, self.n_frames, self.frames_per_block):
            yield start, min(start + self.frames_per_block, self.n_frames)

    def overlap_waves(self, start: int, stop: int, out: Any = None) -> Any:
        """P·O_j of frames start..stop, (n, M_p, M_o, Y, X), without a gathered copy where the backend can."""
        return self.waves_at(slice(start, stop), out)

    # --- what the engines compute per frame, where the frames are placed -------------------------------------
    # ``frames``: a slice of this rank's frames or a host array of their indices. On whole pixels each method is
    # the backend's (fused where it can); with sub-pixel placement it is the reference product with each
    # frame's shifted probe (engines/subpixel.py).
    def _rows_cols(self, frames: slice | np.ndarray) -> tuple[Any, Any]:
        """The corners of the selected frames on the backend. An index array's are kept for the next call with
        the same array: a batched PIE block asks four times, and on a device each would be a transfer."""
        if isinstance(frames, slice):
            return self.rows[frames], self.cols[frames]
        kept = self._last_corners
        if kept is not None and kept[0] is frames:
            return kept[1], kept[2]
        index = self.backend.index_array(frames)
        self._last_corners = (frames, self.rows[index], self.cols[index])
        return self._last_corners[1], self._last_corners[2]

    def waves_at(self, frames: slice | np.ndarray, out: Any = None, probe: Any = None, obj: Any = None) -> Any:
        """``probe``·``obj`` (default: the problem's) of the selected frames, (n, M_p, M_o, Y, X), into ``out``
        if given."""
        return self._waves(*self._rows_cols(frames), frames, None, out, probe, obj)

    def waves_placed(self, positions: np.ndarray) -> Any:
        """P·O of frames placed at ``positions`` ((n, 2), object pixels; not the problem's own): how the data would
        fit there (position refinement's test of a move)."""
        corners = frame_corners(positions)
        rows, cols = self.backend.index_array(corners[:, 0]), self.backend.index_array(corners[:, 1])
        return self._waves(rows, cols, slice(None), np.asarray(positions) - corners)

    def _waves(self, rows: Any, cols: Any, frames: slice | np.ndarray, fractions: np.ndarray | None,
               out: Any = None, probe: Any = None, obj: Any = None) -> Any:
        probe = self.probe if probe is None else probe
        obj = self.object if obj is None else obj
        if self.subpixel is None:
            return self.backend.overlap_waves(probe, obj, rows, cols, out)
        waves = subpixel.exit_waves(self.subpixel.shifted(probe, frames, fractions),
                                    self.backend.gather_views(obj, rows, cols, self.frame_shape))
        if out is None:
            return waves
        out[...] = waves
        return out

    def forward(self, frames: slice | np.ndarray, waves: Any, overwrite: bool = False,
                fractions: np.ndarray | None = None) -> Any:
        """The selected frames' exit waves propagated to the detector (with sub-pixel placement in the near field,
        each hologram moved back by its frame's fraction: engines/subpixel.py)."""
        moves = self._detector_moves(frames, fractions)
        if moves is None:
            return self.propagator.forward(waves, overwrite=overwrite)
        return self.propagator.forward(waves, overwrite=overwrite, moved=moves)

    def backward(self, frames: slice | np.ndarray, waves: Any, overwrite: bool = False) -> Any:
        """The adjoint of ``forward``: detector waves of the selected frames back to the sample."""
        moves = self._detector_moves(frames)
        if moves is None:
            return self.propagator.backward(waves, overwrite=overwrite)
        return self.propagator.backward(waves, overwrite=overwrite, moved=moves)

    def _detector_moves(self, frames: slice | np.ndarray, fractions: np.ndarray | None = None) -> Any:
        if self.subpixel is None or self.propagator.kind == "farfield":
            return None
        return self.subpixel.detector_moves(frames, fractions)

    @property
    def difference_map_scratch(self) -> bool:
        """Whether DM/RAAR keep P·O_j in a scratch block between the halves of their update."""
        return self.subpixel is not None or self.backend.difference_map_scratch

    def mixed_overlap_waves(self, frames: slice, waves: Any, c: float, a: float, b: float, out: Any,
                            scratch: Any = None) -> Any:
        """c·P·O_j + (1 − c)·ψ into ``out`` (``Backend.mixed_overlap_waves``)."""
        if self.subpixel is None:
            rows, cols = self._rows_cols(frames)
            return self.backend.mixed_overlap_waves(self.probe, self.object, rows, cols, waves, c, a, b, out, scratch)
        return self._reference_kernels.linear_mix(self.waves_at(frames, scratch), waves, c, out)

    def difference_map_update(self, frames: slice, waves: Any, projected: Any, a: float, b: float,
                              scratch: Any = None) -> Any:
        """ψ ← (1 − a − b)·ψ + b·Π_M + a·P·O_j in place (``Backend.difference_map_update_at``)."""
        if self.subpixel is None:
            rows, cols = self._rows_cols(frames)
            return self.backend.difference_map_update_at(self.probe, self.object, rows, cols, waves, projected, a, b,
                                                         scratch)
        return self._reference_kernels.difference_map_update(waves, projected, scratch, a, b)

    def add_object_terms(self, target: Any, frames: slice | np.ndarray, waves: Any, probe: Any = None) -> None:
        """target += Σ_k P_k* ψ_jk scattered to each frame's window (``Backend.add_object_terms``)."""
        probe = self.probe if probe is None else probe
        rows, cols = self._rows_cols(frames)
        if self.subpixel is None:
            self.backend.add_object_terms(target, rows, cols, probe, waves)
            return
        terms = subpixel.object_terms(self.xp, self.subpixel.shifted(probe, frames), waves)
        self.backend.scatter_add_views(target, rows, cols, terms)

    def probe_update_terms(self, frames: slice | np.ndarray, waves: Any) -> tuple[Any, Any]:
        """Σ_jl O_l,j* ψ_jkl (M_p, Y, X) and Σ_jl |O_l,j|² (Y, X) (``Backend.probe_update_terms_at``); with
        sub-pixel placement the numerator's per-frame terms are moved back onto the shared probe."""
        rows, cols = self._rows_cols(frames)
        if self.subpixel is None:
            return self.backend.probe_update_terms_at(self.object, rows, cols, waves)
        views = self.backend.gather_views(self.object, rows, cols, self.frame_shape)
        numerator, denominator = subpixel.probe_terms(self.xp, views, waves)
        return self.subpixel.adjoint_sum(numerator, frames), denominator

    def add_illumination(self, target: Any, frames: slice | np.ndarray, probe: Any = None) -> None:
        """target (1, A, B) += Σ_k |P_k(r − r_j)|² of the selected frames."""
        xp = self.xp
        probe = self.probe if probe is None else probe
        rows, cols = self._rows_cols(frames)
        if self.subpixel is None:
            power = xp.sum(xp.real(probe) ** 2 + xp.imag(probe) ** 2, axis=0)
            patches = xp.broadcast_to(power, (len(rows), 1, *power.shape))
        else:
            patches = subpixel.probe_power(xp, self.subpixel.shifted(probe, frames))
        self.backend.scatter_add_views(target, rows, cols, patches)

    @functools.cached_property
    def _reference_kernels(self) -> Any:
        from .kernels import Kernels

        return Kernels(self.xp)

    @property
    def single_block(self) -> bool:
        """Every frame in one compute block (then a block buffer holds a value for all frames)."""
        return self.frames_per_block >= self.n_frames

    def block_buffer(self, name: str, start: int, stop: int, frame_tail: tuple[int, ...], dtype: Any) -> Any:
        """A per-block work array, allocated once per run and reused by every block and iteration.

        A fresh block-sized array costs its page faults every time (measured: 6 ms per 128 MB on the
        CPU, a third of a memory-bound pass); a device allocator hides that, but the memory is the same
        either way, so every backend reuses one buffer per name. Returned as frames start..stop of it."""
        shape = (self.frames_per_block, *frame_tail)
        buffer = self._block_buffers.get(name)
        if buffer is None or tuple(buffer.shape) != shape:
            buffer = self._block_buffers[name] = self.backend.empty(shape, dtype)
        return buffer[:stop - start]

    def release_block_buffers(self) -> None:
        """Frees the block buffers (at the end of a stage: the next engine has its own)."""
        self._block_buffers.clear()

    def views(self, start: int, stop: int, obj: Any = None) -> Any:
        """Object views of frames start..stop, (n, M_o, Y, X)."""
        return self.backend.gather_views(self.object if obj is None else obj, self.rows[start:stop],
                                         self.cols[start:stop], self.frame_shape)

    def illumination(self, blocks: Any = None) -> Any:
        """Σ_j Σ_k |P_k(r − r_j)|² on the object grid, (1, A, B), over the frames of ``blocks`` (default:
        all) and every rank: DM's object denominator and ML's object preconditioner."""
        illumination = self.local_illumination(blocks)
        with self.timer("communication"):
            return self.comm.allreduce_sum(illumination)

    def local_illumination(self, blocks: Any = None) -> Any:
        """Σ_j Σ_k |P_k(r − r_j)|² over this rank's frames of ``blocks`` (default: all), (1, A, B)."""
        illumination = self.backend.zeros((1, *self.object.shape[1:]), self.xp.float32)
        for start, stop in self.blocks() if blocks is None else blocks:
            self.add_illumination(illumination, slice(start, stop))
        return illumination

    def model_intensities(self, with_background: bool = True) -> Iterator[tuple[Any, Any]]:
        """(measured I, model Î) of this rank's frames, an evaluation step at a time, for the current object and
        probe: Î = Σ_k |D(P_k·O_j)|², plus the background where one is fitted and ``with_background``."""
        kernels = self.backend.kernels
        step = evaluation_step(self.frames_per_block, self.shape.probe_modes * self.shape.object_modes,
                               self.frame_shape)
        for block_start, block_stop in self.blocks():
            intensities = self.intensities.read(block_start, block_stop)
            for start in range(block_start, block_stop, step):
                stop = min(start + step, block_stop)
                detector = self.forward(slice(start, stop), self.overlap_waves(start, stop), overwrite=True)
                model = kernels.mode_intensity(detector)
                if with_background and self.background is not None:
                    model += self.background
                yield intensities[start - block_start:stop - block_start], model

    def model_error_sums(self) -> FourierErrorSums:
        """Σ M (|D(P·O_j)| − √I)² and Σ M |D(P·O_j)| − √I| of the current object and probe (and background)
        over this rank's frames: the quality of what a run returns. (An engine's own sums are of something
        else: DM's and RAAR's of the Fourier projection's input, ePIE's of a sweep whose object moves frame by
        frame, ML's of the model before its step.)"""
        xp, kernels = self.xp, self.backend.kernels
        errors = FourierErrorSums()
        for intensities, model in self.model_intensities():
            squared, absolute = kernels.amplitude_errors(model, intensities, self.mask)
            errors.add(xp.sum(squared), xp.sum(absolute))
        return errors

    def coherent_part(self, intensities: Any) -> Any:
        """What the exit waves must explain of measured ``intensities``: (I − b)₊ with a fitted background b
        (engines/background.py), else I itself (no copy)."""
        if self.background is None:
            return intensities
        remainder = intensities - self.background
        remainder *= remainder > 0  # in place: one float32 frame and a mask per frame, not three frames
        return remainder

    def measured_amplitude_sum(self) -> float:
        """Σ_j Σ M √I_j over all ranks: the R-factor's denominator, a constant of the data."""
        xp = self.xp
        local = sum(float(xp.sum(xp.sqrt(self.intensities.read(start, stop)))) for start, stop in self.blocks())
        with self.timer("communication"):
            return self.comm.allreduce_scalars([local])[0]
