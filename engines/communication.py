"""Reductions over frames, the only thing that crosses MPI ranks (docs/algorithms.md, "Distributed runs (MPI)").

Engines call ``comm.allreduce_sum`` on partial sums over their own frames; serially that is the
identity. The MPI implementation (ptybench.engines.mpi) stages device buffers through the host. Engines
call them inside ``timer("communication")`` so every record separates compute from communication.
"""

from __future__ import annotations

from typing import Any


class SerialCommunicator:
    """One process owns every frame: reductions return their input."""

    rank = 0
    size = 1
    bytes_reduced = 0
    allreduce_calls = 0

    def allreduce_sum(self, array: Any) -> Any:
        return array

    def allreduce_scalars(self, values: list[float]) -> list[float]:
        return list(values)

    def frame_range(self, n_frames: int) -> tuple[int, int]:
        return 0, n_frames

    def bind(self, backend: Any) -> None:
        """Nothing to stage."""

    def merge_weighted(self, problem: Any) -> None:
        """One rank's object and probe are the result."""

    def barrier(self) -> None:
        """Nothing to wait for."""

    def gather(self, value: Any) -> list[Any]:
        return [value]

    def node_rank(self) -> int:
        return 0
