"""The order in which a distributed run's local ranks ended, seen from outside through pidfds.

Why: when one rank dies, MPICH's launcher kills the others with the same signal and then reports the lowest
rank that ended badly, which is often one it killed itself (``mpiexec -print-all-exitcodes`` shows "9,9"
for a job in which only rank 1 was killed). The kernel knows who went first: a pidfd becomes readable the
moment its process exits, so a thread polling the ranks' pidfds records each exit within milliseconds, and
the launcher's clean-up comes after a round trip through its proxies. Ranks on other nodes cannot be
watched; for them the launcher's words stay the only evidence (ptybench.scaling.dead_rank)."""

from __future__ import annotations

import os
import select
import threading
import time
from pathlib import Path


class RankExits:
    """Watches ``folder/rank-N.pid`` files (written by ptybench.mpi_run as "PID HOST") as they appear and
    records when each local rank's process ended."""

    def __init__(self, folder: Path, poll_s: float = 0.05) -> None:
        self.folder = folder
        self.poll_s = poll_s
        self.host = os.uname().nodename
        self.ended: dict[int, float] = {}
        self._descriptors: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="ptybench-rank-exits", daemon=True)

    def __enter__(self) -> RankExits:
        if hasattr(os, "pidfd_open"):
            self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for descriptor in self._descriptors.values():
            os.close(descriptor)
        self._descriptors.clear()

    def first(self, margin_s: float = 0.002) -> list[int]:
        """The rank that ended first, or every rank that ended within ``margin_s`` of it (a tie is not a
        finding); empty when no local rank was seen to end."""
        if not self.ended:
            return []
        earliest = min(self.ended.values())
        return sorted(rank for rank, when in self.ended.items() if when - earliest < margin_s)

    def _watch(self) -> None:
        poller = select.poll()
        while not self._stop.is_set():
            self._open_new(poller)
            for descriptor, _events in poller.poll(self.poll_s * 1000):
                rank = next(r for r, d in self._descriptors.items() if d == descriptor)
                self.ended.setdefault(rank, time.monotonic())
                poller.unregister(descriptor)

    def _open_new(self, poller: select.poll) -> None:
        for path in self.folder.glob("rank-*.pid"):
            try:
                rank = int(path.stem.removeprefix("rank-"))
                if rank in self._descriptors:
                    continue
                pid, _, host = path.read_text().strip().partition(" ")
                if host != self.host:
                    continue
                descriptor = os.pidfd_open(int(pid))
            except (OSError, ValueError):  # half-written, or the process already gone: not seen, not guessed
                continue
            self._descriptors[rank] = descriptor
            poller.register(descriptor, select.POLLIN)
