"""A test plug-in engine (loaded through PTYBENCH_ENGINE_MODULES) that fails on purpose: DM that, on the rank
named by FAULTY_RANK, raises (FAULTY_MODE=raise), runs out of memory (FAULTY_MODE=memory) or kills itself with
SIGKILL as the kernel's out-of-memory killer would (FAULTY_MODE=kill) in its first iteration. Fault injection
lives here, not in ptybench."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from ptybench.engines.dm_raar import _FORM, ProjectionEngine
from ptybench.engines.options import DMOptions
from ptybench.engines.registry import register


@register("Faulty", options=DMOptions, **_FORM)
class FaultyEngine(ProjectionEngine):
    def iterate(self, iteration: int):
        rank = self.problem.comm.rank
        if str(rank) == os.environ.get("FAULTY_RANK"):
            if os.environ.get("FAULTY_MODE") == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if os.environ.get("FAULTY_MODE") == "memory":
                raise MemoryError(f"rank {rank}: deliberate out-of-memory (test engine Faulty)")
            raise RuntimeError(f"rank {rank}: deliberate failure (test engine Faulty)")
        return super().iterate(iteration)


def environment(rank: int, mode: str) -> dict[str, str]:
    """The environment under which a measuring child loads this engine (this module is imported, so "Faulty" is
    registered here too), failing on ``rank`` by ``mode`` ("raise", "memory" or "kill")."""
    folder = str(Path(__file__).parent)
    return {"PYTHONPATH": os.pathsep.join(filter(None, [folder, os.environ.get("PYTHONPATH")])),
            "PTYBENCH_ENGINE_MODULES": "faulty_engine", "FAULTY_RANK": str(rank), "FAULTY_MODE": mode}
