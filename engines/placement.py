"""Where per-frame data live and how many frames are computed at once: two separate choices.

Residency: the per-frame arrays (intensities, and DM/RAAR exit waves) are *resident* in the memory
the engine computes in when they fit, and *streamed* from pinned host memory block by block when they
do not (device backends only). On the host, per-frame arrays that do not fit the free memory go to
scratch files on *disk* (engines/scratch.py): the exit waves first (they are rewritten every iteration
anyway), then the intensities too when those alone do not fit, so a dataset larger than the host's
memory runs. Compute block B: frames processed at once, whatever the residency, so
the temporaries are O(B), not O(N). Both are chosen from the engines' registered memory terms and
the memory free on the device (or host) with a safety margin, unless the user states them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .errors import InputError

#: Share of the free memory the plan may use (allocator fragmentation, libraries' workspaces).
SAFETY = 0.85
#: On a device the block's temporaries get at most this share of the usable memory: beyond a few
#: hundred frames a larger block launches no fewer kernels that matter, and the rest is headroom.
DEVICE_TEMPORARY_SHARE = 0.1
#: On a host the block is kept near this size so its temporaries stay in cache between steps.
HOST_BLOCK_BYTES = 4 * 2**20
RESIDENCIES = ("auto", "resident", "streamed", "disk")


@dataclass(frozen=True)
class FrameCosts:
    """Bytes per frame: held for the whole run (``data``), and alive during a block (``temporaries``);
    ``fixed``: object, probe and their buffers; ``wave``: one frame of exit waves (the host block unit)."""

    data: int
    temporaries: int
    fixed: int
    wave: int
    kept_waves: int = 0  # of ``data``: the engine's own per-frame arrays (exit waves), which may go to disk


@dataclass(frozen=True)
class Placement:
    """``disk``: the engine's own per-frame arrays (DM/RAAR exit waves) live in a scratch file (engines/scratch.py);
    ``intensities_on_disk``: the measured intensities too."""

    frames_per_block: int
    streaming: bool
    reason: str
    disk: bool = False
    intensities_on_disk: bool = False

    @property
    def residency(self) -> str:
        return "disk" if self.disk or self.intensities_on_disk else "streamed" if self.streaming else "resident"


def choose_placement(n_frames: int, costs: FrameCosts, on_device: bool, available_bytes: int | None,
                     requested_block: int | None = None, requested_residency: str = "auto",
                     block_limit: int | None = None) -> Placement:
    """Residency and block size for ``n_frames`` frames (explicit requests win). ``block_limit``: the most
    frames the engines can use at once (a batched engine's batch); an automatic block stays within it."""
    if requested_residency not in RESIDENCIES:
        raise InputError(f"residency: expected one of {list(RESIDENCIES)}, got {requested_residency!r}")
    if requested_block is None and block_limit is not None:
        n_frames_useful = min(n_frames, block_limit)
    else:
        n_frames_useful = n_frames
    if not on_device:
        block = min(requested_block or max(1, HOST_BLOCK_BYTES // max(costs.wave, 1)), n_frames_useful)
        return _host_placement(n_frames, costs, available_bytes, block, requested_residency)
    if requested_residency == "disk":
        raise InputError("residency: 'disk' is for host backends (numpy, torch on the CPU); a device streams from "
                         "host memory ('streamed')")
    usable = math.inf if available_bytes is None else SAFETY * available_bytes
    resident_bytes = n_frames * costs.data + costs.fixed
    if requested_residency == "auto":
        fits = resident_bytes + costs.temporaries <= usable
        streaming = not fits
        why = "fits the device" if fits else "does not fit the device: streamed from pinned host memory"
    else:
        streaming = requested_residency == "streamed"
        why = f"{requested_residency} as requested"
    if requested_block is not None:
        return Placement(min(requested_block, n_frames), streaming, f"{why}; block as requested")
    held = costs.fixed if streaming else resident_bytes
    room = max(usable - held, 0.0)
    per_frame = costs.temporaries + (2 * costs.data if streaming else 0)  # streamed: in use + in flight
    budget = min(room, DEVICE_TEMPORARY_SHARE * usable)
    block = (int(min(n_frames_useful, max(1, budget // max(per_frame, 1)))) if math.isfinite(budget)
             else n_frames_useful)
    source = (f"the engine's batch of {block_limit}" if block == block_limit
              else f"{DEVICE_TEMPORARY_SHARE:.0%} of free memory")
    return Placement(block, streaming, f"{why}; block of {block} from {source}")


def _host_placement(n_frames: int, costs: FrameCosts, available_bytes: int | None, block: int,
                    requested_residency: str) -> Placement:
    """Resident when everything fits the host's free memory; else exit waves to disk, and the intensities as well
    when they alone do not fit (or when the engines keep no exit waves and disk was asked for)."""
    usable = math.inf if available_bytes is None else SAFETY * available_bytes
    kept = costs.kept_waves
    if requested_residency != "disk" and (requested_residency != "auto"
                                          or n_frames * costs.data + costs.fixed <= usable):
        return Placement(block, False, "host memory: resident, cache-sized blocks")
    why = "as requested" if requested_residency == "disk" else "they do not fit the host's free memory"
    in_flight = 2 * block * costs.data  # a block in use and the next one read ahead, per store
    intensities = not kept or n_frames * (costs.data - kept) + costs.fixed + in_flight > usable
    what = ("intensities and exit waves in scratch files" if kept and intensities else
            "exit waves in a scratch file" if kept else "intensities in a scratch file")
    return Placement(block, False, f"host memory, {what} ({why}); cache-sized blocks", disk=bool(kept),
                     intensities_on_disk=intensities)


def subpixel_temporaries(spec: Any, subpixel: bool) -> float:
    """Exit waves of one frame that sub-pixel placement adds per frame of a block (the engine's
    ``MemoryTerms.subpixel``; ePIE, one frame at a time, adds none to speak of)."""
    return spec.memory.subpixel if subpixel and not spec.one_frame_at_a_time else 0.0


def frame_costs(frame_shape: tuple[int, int], object_shape: tuple[int, int], probe_modes: int, object_modes: int,
                specs: list, fused_kernels: bool, subpixel: bool = False) -> FrameCosts:
    """The registered memory terms of the engines that will run (the largest of their stages), in bytes:
    docs/algorithms.md ("Memory terms"); ptybench's memory model reports the same numbers."""
    pixels = frame_shape[0] * frame_shape[1]
    wave = 8 * probe_modes * object_modes * pixels
    view = 8 * object_modes * pixels
    data = 4 * pixels + (wave if any(spec.keeps_exit_waves for spec in specs) else 0)
    temporaries = 0
    for spec in specs:
        waves, views = spec.memory.fused if fused_kernels else spec.memory.reference
        waves += subpixel_temporaries(spec, subpixel)
        temporaries = max(temporaries, int(waves * wave + views * view))
    object_bytes = 8 * object_modes * object_shape[0] * object_shape[1]
    buffers = max(spec.memory.object_buffers for spec in specs)
    fixed = int((1 + buffers) * object_bytes) + 4 * 8 * probe_modes * pixels + pixels
    kept = wave if any(spec.keeps_exit_waves for spec in specs) else 0
    return FrameCosts(data=data, temporaries=temporaries, fixed=fixed, wave=wave, kept_waves=kept)
