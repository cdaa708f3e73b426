"""A test plug-in engine (loaded through PTYBENCH_ENGINE_MODULES) that fails on purpose: DM that, on the rank
named by FAULTY_RANK, raises (FAULTY_MODE=raise) or kills itself with SIGKILL as the kernel's out-of-memory
killer would (FAULTY_MODE=kill) in its first iteration. Fault injection lives here, not in ptybench."""

from __future__ import annotations

import os
import signal

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
            raise RuntimeError(f"rank {rank}: deliberate failure (test engine Faulty)")
        return super().iterate(iteration)
