"""All-reduce micro-benchmark, run on every rank: ``mpiexec -n K python -m mpi4py -m ptybench.mpi_bench OUT.json``.

Times MPI_Allreduce(SUM) of float32 buffers from 4 KB to 64 MB (median of repeats after a warm-up),
the data ``ptybench.scaling.fit_allreduce`` turns into latency and bandwidth. Before each repeat every rank
writes a 32 MB scratch array, so the buffer comes from memory, not from cache, as an engine's object-sized
reductions do after an iteration's compute (on shared memory a warm buffer measured 2–3× the bandwidth
the engines then saw).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI

SIZES_BYTES = [2**k for k in range(12, 27, 2)]
EVICT_BYTES = 32 * 2**20


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    comm = MPI.COMM_WORLD
    seconds = []
    scratch = np.zeros(EVICT_BYTES // 4, dtype=np.float32)
    for size in SIZES_BYTES:
        buffer = np.ones(size // 4, dtype=np.float32)
        repeats = max(3, min(50, 2**24 // size))
        times = []
        for repeat in range(repeats + 1):
            scratch += 1.0  # evict the buffer from cache
            comm.Barrier()
            start = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
            elapsed = comm.allreduce(time.perf_counter() - start, op=MPI.MAX)
            if repeat:
                times.append(elapsed)
        seconds.append(float(np.median(times)))
    if comm.Get_rank() == 0:
        Path(argv[0]).write_text(json.dumps({"ranks": comm.Get_size(), "bytes": SIZES_BYTES, "seconds": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
