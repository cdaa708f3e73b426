"""MPI communicator (mpi4py): frames split into contiguous blocks, object and probe replicated.

Per iteration the engines all-reduce their partial sums over their own frames (DM/RAAR overlap
numerators and denominators, ML gradients and line-search sums, error sums); serial and distributed
runs then differ only in the order of floating-point additions. Device arrays (torch CUDA, CuPy) are
staged through host memory. ePIE/rPIE are sequential in the frames, so under MPI each rank sweeps its
own frames and ranks merge object and probe every iteration (``merge_weighted``): a different
algorithm from serial ePIE, measured as such (README, "Distributed runs").
"""

from __future__ import annotations

from typing import Any

import numpy as np

try:
    from mpi4py import MPI
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(f"MPI runs need mpi4py and an MPI library: pip install '.[mpi]' (mpi4py, mpich): {error}"
                      ) from error


def frame_range(n_frames: int, rank: int, size: int) -> tuple[int, int]:
    """Contiguous block of frames of ``rank``: sizes differ by at most one, none lost or repeated."""
    base, extra = divmod(n_frames, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


class MPICommunicator:
    """Reductions over MPI ranks; counts the bytes it reduces (the communication model's input)."""

    def __init__(self, comm: Any = None) -> None:
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.backend: Any = None  # set by the Problem: device arrays are staged through the host
        self.bytes_reduced = 0
        self.allreduce_calls = 0  # each call pays the latency once: the model counts them

    def bind(self, backend: Any) -> None:
        self.backend = backend

    def frame_range(self, n_frames: int) -> tuple[int, int]:
        return frame_range(n_frames, self.rank, self.size)

    def allreduce_sum(self, array: Any) -> Any:
        if isinstance(array, np.ndarray):
            host = np.ascontiguousarray(array)
            self.comm.Allreduce(MPI.IN_PLACE, host, op=MPI.SUM)
            result = host
        else:
            host = np.ascontiguousarray(self.backend.to_numpy(array))
            self.comm.Allreduce(MPI.IN_PLACE, host, op=MPI.SUM)
            result = self.backend.asarray(host)
        self.bytes_reduced += host.nbytes
        self.allreduce_calls += 1
        return result

    def allreduce_scalars(self, values: list[float]) -> list[float]:
        buffer = np.asarray(values, dtype=np.float64)
        self.comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
        self.bytes_reduced += buffer.nbytes
        self.allreduce_calls += 1
        return buffer.tolist()

    def merge_weighted(self, problem: Any) -> None:
        """Object: Σ_r W_r·O_r / Σ_r W_r with W_r a rank's illumination Σ_j |P_r(r − r_j)|² over its own
        frames (pixels no rank lit keep their value, the same on every rank); probe: the mean."""
        xp = problem.xp
        weight = problem.local_illumination()
        numerator = self.allreduce_sum(xp.astype(weight, xp.complex64) * problem.object)
        total = self.allreduce_sum(weight)
        lit = total > 1e-12 * float(xp.max(total))
        safe = xp.where(lit, total, xp.ones_like(total))
        problem.object = xp.where(lit, numerator / xp.astype(safe, xp.complex64), problem.object)
        problem.probe = self.allreduce_sum(problem.probe) / self.size

    def barrier(self) -> None:
        self.comm.Barrier()

    def gather(self, value: Any) -> list[Any] | None:
        """Every rank's ``value`` on rank 0 (None elsewhere)."""
        return self.comm.gather(value, root=0)

    def node_rank(self) -> int:
        """This rank's index among the ranks on its node (which local GPU it takes)."""
        return self.comm.Split_type(MPI.COMM_TYPE_SHARED).Get_rank()
