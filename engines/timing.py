"""Per-stage wall-clock timers that synchronise the device, so GPU time lands in the right stage."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class StageTimer:
    """Accumulates seconds per stage name; ``sync`` is called before each clock read when enabled."""

    def __init__(self, sync: Callable[[], None], enabled: bool = True) -> None:
        self._sync = sync
        self.enabled = enabled
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.seconds[stage] += time.perf_counter() - start

    def take(self) -> dict[str, float]:
        """Return the seconds accumulated since the last take, and start again."""
        taken = dict(self.seconds)
        self.seconds.clear()
        return taken
