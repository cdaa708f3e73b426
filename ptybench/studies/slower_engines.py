"""Plug-in engines for the gate study: a built-in engine that does a known fraction more work per iteration.

``DM-slower-10`` is DM that, after each iteration, keeps the CPU busy for 10 % of the time that iteration took
(a spin on the clock, so the extra cost is work, not sleep, and scales with the iteration as a real slowdown
would). Loaded only through ``PTYBENCH_ENGINE_MODULES=ptybench.studies.slower_engines``: nothing in ptybench's
own engines changes.
"""

from __future__ import annotations

import time

from ptybench.engines.registry import engine_spec, register

#: Built-in engines wrapped, and the slowdowns (percent) registered for each.
WRAPPED = ("DM", "ePIE", "ML")
SLOWDOWNS = (5, 10, 25)


def slower_name(engine: str, percent: int) -> str:
    return f"{engine}-slower-{percent}"


def _slower(engine: str, percent: int) -> type:
    spec = engine_spec(engine)
    fraction = percent / 100.0

    class Slower(spec.engine_class):  # type: ignore[misc, valid-type]
        def iterate(self, iteration: int):
            start = time.perf_counter()
            result = super().iterate(iteration)
            self.problem.backend.sync()  # on a GPU the iteration's work is done only after this
            end = time.perf_counter() + fraction * (time.perf_counter() - start)
            while time.perf_counter() < end:
                pass
            return result

    Slower.__name__ = Slower.__qualname__ = slower_name(engine, percent).replace("-", "_")
    register(slower_name(engine, percent), options=spec.options_class, memory=spec.memory,
             propagations_per_frame=spec.propagations_per_frame, keeps_exit_waves=spec.keeps_exit_waves,
             distributed=spec.distributed, frames_per_fft_batch=spec.frames_per_fft_batch,
             block_limit=spec.block_limit)(Slower)
    return Slower


for _engine in WRAPPED:
    for _percent in SLOWDOWNS:
        _slower(_engine, _percent)
