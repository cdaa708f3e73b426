"""One distributed measurement, run on every rank: ``mpiexec -n K python -m mpi4py -m ptybench.mpi_run
MEASUREMENT.json RECORD.json [ARRAYS.npz]`` (launched by ``ptybench scale``; see ptybench/scaling.py).

Every rank calls the same ``ptybench.measurement.measure`` as the serial runner, with an MPI
communicator: each rank makes (or reads) only its own contiguous block of frames, so rank 0 never holds
the whole dataset, and rank 0 writes the one record. Launched through ``python -m mpi4py``, an
exception on any rank aborts the whole job instead of leaving the others waiting in a collective.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from ptybench.engines.mpi import MPICommunicator
    from ptybench.measurement import Measurement, measure
    from ptybench.results import write_json_atomically

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) not in (2, 3):
        print("usage: mpiexec -n K python -m mpi4py -m ptybench.mpi_run MEASUREMENT.json RECORD.json [ARRAYS.npz]",
              file=sys.stderr)
        return 2
    measurement = Measurement.from_json(Path(argv[0]).read_text())
    comm = MPICommunicator()
    # Which process is which rank: if one dies, the launcher names the rank, not only mpiexec's PID.
    (Path(argv[1]).parent / f"rank-{comm.rank}.pid").write_text(f"{os.getpid()} {os.uname().nodename}\n")
    record = measure(measurement, comm, arrays_path=argv[2] if len(argv) == 3 else None)
    if record is not None:
        write_json_atomically(argv[1], record.to_dict())
    return 0


if __name__ == "__main__":
    sys.exit(main())
