"""A scaling model built from what one run measured, checked against runs it did not see.

From a measured run (its per-stage seconds, frames, all-reduce bytes and calls) the model predicts the
time per iteration on K ranks, in two parts that are also measured separately:

    compute(K)       = t_frame · ⌈N/K⌉ · imbalance  +  t_object
    communication(K) = calls · 2(K − 1)·α  +  2(K − 1)/K · bytes / β        (ring all-reduce)

- t_frame: seconds per frame of the per-frame stages (propagation, exit waves, Fourier projection, overlap
  and probe terms, line search, transfers): they shrink as ranks share the frames;
- t_object: the per-object work every rank repeats (stage ``object_update``: object and probe division,
  conjugate directions) plus what no stage timed (Python between stages): constant per rank;
- imbalance: the slowest rank's compute over the mean, beyond the uneven frame split (1 when fitted on
  one rank: nothing measured yet);
- α, β: latency and bandwidth of MPI all-reduce measured on the same launcher and fabric
  (``ptybench.mpi_bench``); bytes and calls: what the engine reduces per iteration (counted).

``hold_out``: fit on the records of every rank count but the largest, predict the largest, and report
the error of compute and communication separately. Amdahl/Gustafson/Karp–Flatt stay in
``ptybench.scaling`` as descriptions of the measured points; they are not this model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ptybench.engines.errors import InputError
from ptybench.scaling import AllreduceModel

#: Stages whose work does not shrink with more ranks (engines time them as "object_update").
PER_OBJECT_STAGES = ("object_update",)
NOT_COMPUTE_STAGES = ("communication",)


@dataclass(frozen=True)
class StageModel:
    frames: int
    frame_pixels: int
    object_pixels: int
    seconds_per_frame: float
    object_seconds: float
    imbalance: float
    bytes_per_iteration: float
    calls_per_iteration: float
    allreduce: AllreduceModel

    def compute(self, ranks: int, frames: int | None = None, frame_scale: float = 1.0,
                object_scale: float = 1.0) -> float:
        frames = self.frames if frames is None else frames
        imbalance = self.imbalance if ranks > 1 else 1.0
        return (self.seconds_per_frame * frame_scale * math.ceil(frames / ranks) * imbalance
                + self.object_seconds * object_scale)

    def communication(self, ranks: int, object_scale: float = 1.0) -> float:
        if ranks <= 1:
            return 0.0
        model = self.allreduce
        return (self.calls_per_iteration * 2 * (ranks - 1) * model.latency_s
                + 2 * (ranks - 1) / ranks * self.bytes_per_iteration * object_scale / model.bandwidth_bytes_per_s)

    def predict(self, ranks: int, **scales: Any) -> dict[str, float]:
        object_scale = scales.get("object_scale", 1.0)
        compute = self.compute(ranks, **scales)
        communication = self.communication(ranks, object_scale)
        return {"ranks": ranks, "compute_s": compute, "communication_s": communication,
                "seconds": compute + communication}


def _critical_rank(record: dict[str, Any]) -> dict[str, Any]:
    """The rank whose compute set the pace (rank 0 for a serial record)."""
    ranks = record.get("per_rank") or []
    if len(ranks) <= 1:
        return {"stages": record.get("stages") or {}, "frames": [0, record["dataset_info"]["n_frames"]]}

    def compute(detail: dict[str, Any]) -> float:
        walls, comms = detail.get("iteration_seconds") or [0.0], detail.get("communication_seconds") or [0.0]
        return sorted(w - c for w, c in zip(walls, comms, strict=True))[len(walls) // 2]

    return max(ranks, key=compute)


def fit_stage_model(records: list[dict[str, Any]], allreduce: AllreduceModel) -> StageModel:
    """The model from the record(s) of the largest rank count given (its critical rank's stages)."""
    ok = [r for r in records if r.get("status") == "ok" and r.get("compute_seconds") is not None]
    if not ok:
        raise InputError("scaling model: no successful record to fit")
    record = max(ok, key=lambda r: r["ranks"])
    critical = _critical_rank(record)
    stages = critical.get("stages") or {}
    if not stages:
        raise InputError("scaling model: the record has no stage timings (run with stage_timings on)")
    per_frame = sum(v for k, v in stages.items() if k not in PER_OBJECT_STAGES + NOT_COMPUTE_STAGES)
    per_object = sum(v for k, v in stages.items() if k in PER_OBJECT_STAGES)
    untimed = max(0.0, record["compute_seconds"] - per_frame - per_object)
    start, stop = critical["frames"]
    frames = record["dataset_info"]["n_frames"]
    ranks = record["ranks"]
    even_share = math.ceil(frames / ranks)
    imbalance = record.get("load_imbalance") or 1.0
    # the uneven split is in ⌈N/K⌉ already; what is left of the measured imbalance is the machine's
    split_imbalance = even_share / (frames / ranks)
    excess = max(1.0, imbalance / split_imbalance) if ranks > 1 else 1.0
    info = record["dataset_info"]
    return StageModel(
        frames=frames, frame_pixels=info["height"] * info["width"],
        object_pixels=int(info.get("object_height", 1) * info.get("object_width", 1)),
        seconds_per_frame=per_frame / max(stop - start, 1) / excess,  # the pace of a rank without the excess
        object_seconds=per_object + untimed,
        imbalance=excess,
        bytes_per_iteration=float(record.get("bytes_reduced_per_iteration") or 0.0),
        calls_per_iteration=float(record.get("allreduce_calls_per_iteration") or 0.0),
        allreduce=allreduce)


def hold_out(records: list[dict[str, Any]], allreduce: AllreduceModel) -> dict[str, Any] | None:
    """Fit on every rank count but the largest, predict the largest: predicted vs measured, per part."""
    ok = [r for r in records if r.get("status") == "ok" and r.get("compute_seconds") is not None]
    counts = sorted({r["ranks"] for r in ok})
    if len(counts) < 2:
        return None
    largest = max(r for r in ok if r["ranks"] == counts[-1])
    model = fit_stage_model([r for r in ok if r["ranks"] < counts[-1]], allreduce)
    predicted = model.predict(counts[-1], frames=largest["dataset_info"]["n_frames"])
    measured = {"compute_s": largest["compute_seconds"], "communication_s": largest["communication_seconds"],
                "seconds": largest["seconds_per_iteration"]}
    errors = {part: (predicted[part] / measured[part] - 1.0) if measured[part] else None
              for part in ("compute_s", "communication_s", "seconds")}
    return {"ranks": counts[-1], "fitted_on": counts[:-1], "predicted": predicted, "measured": measured,
            "relative_error": errors}


def seed_scales(model: StageModel, target: Any) -> dict[str, Any]:
    """How the measured costs scale to a target geometry: per frame as an FFT (D² log D²), per object and
    the reduced bytes with the object's pixels. An assumption, stated wherever it is used."""
    pixels = target.frame_shape[0] * target.frame_shape[1]
    object_pixels = target.object_shape[0] * target.object_shape[1]
    frame_scale = (pixels * math.log2(pixels)) / (model.frame_pixels * math.log2(model.frame_pixels))
    return {"frames": target.n_frames, "frame_scale": frame_scale,
            "object_scale": object_pixels / max(model.object_pixels, 1)}
