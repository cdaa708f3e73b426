"""Per-stage wall-clock timers that synchronise the device, so GPU time lands in the right stage."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class StageTimer:
    """Accumulates exclusive seconds per stage name; ``sync`` is called before each clock read.

    Stages nest: time spent in an inner stage (e.g. "communication" inside "overlap_update") is
    counted there and not again in the outer one, so the stages of an iteration add up to at most
    its wall time.
    """

    def __init__(self, sync: Callable[[], None], enabled: bool = True) -> None:
        self._sync = sync
        self.enabled = enabled
        self.seconds: dict[str, float] = defaultdict(float)
        self._inner: list[float] = []  # per open stage: seconds already credited to nested stages

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        self._sync()
        start = time.perf_counter()
        self._inner.append(0.0)
        try:
            yield
        finally:
            self._sync()
            elapsed = time.perf_counter() - start
            nested = self._inner.pop()
            self.seconds[stage] += elapsed - nested
            if self._inner:
                self._inner[-1] += elapsed

    def take(self) -> dict[str, float]:
        """Return the seconds accumulated since the last take, and start again."""
        taken = dict(self.seconds)
        self.seconds.clear()
        return taken
