"""Two hosts on one machine: ranks in separate network namespaces joined by a shaped veth pair.

Shared memory hides communication: two ranks on one machine exchange object-sized buffers at memory
speed. To check the communication model where it matters, each rank runs in its own network namespace
(``ip netns``), the two joined by a veth pair whose ends are shaped with ``tc``: ``tbf`` for the rate
(each direction, like a full-duplex link) and ``netem`` for a one-way delay where the kernel has it.
MPICH is told to treat the ranks as remote and to use its TCP path (``MPIR_CVAR_NOLOCAL=1``, the ofi
netmod with the ``tcp`` provider on each namespace's veth end). Needs root and iproute2; ``problem()``
says why not where they are missing, and the tests skip with that reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

from ptybench.engines.errors import InputError
from ptybench.launchers import Launcher

#: MPICH (ch4): no shared memory between ranks; libfabric's TCP provider.
MPICH_NETWORK_ENVIRONMENT = (("MPIR_CVAR_NOLOCAL", "1"), ("MPIR_CVAR_CH4_NETMOD", "ofi"), ("FI_PROVIDER", "tcp"))
SUBNET = "10.77.{}.{}"


@dataclass(frozen=True)
class Shaping:
    rate_bits_per_s: float
    delay_s: float | None = None

    @classmethod
    def parse(cls, text: str) -> Shaping:
        """"1gbit" or "1gbit,200us": the link's rate (bit/s units: kbit, mbit, gbit) and optional one-way delay."""
        rate_text, _, delay_text = text.partition(",")
        units = {"gbit": 1e9, "mbit": 1e6, "kbit": 1e3, "bit": 1.0}
        rate = None
        for unit, factor in units.items():
            if rate_text.strip().lower().endswith(unit):
                try:
                    rate = float(rate_text.strip()[: -len(unit)]) * factor
                except ValueError:
                    rate = None
                break
        if not rate or rate <= 0:
            raise InputError(f"--emulate-network: expected a rate such as 1gbit or 100mbit[,200us], got {text!r}")
        delay = None
        if delay_text:
            scales = {"us": 1e-6, "ms": 1e-3}
            unit = delay_text.strip()[-2:]
            try:
                delay = float(delay_text.strip()[:-2]) * scales[unit]
            except (KeyError, ValueError):
                raise InputError(f"--emulate-network: expected a delay such as 200us or 1ms, got {delay_text!r}") \
                    from None
        return cls(rate, delay)

    def tc_arguments(self, netem: bool) -> list[str]:
        rate = f"{self.rate_bits_per_s / 1e6:g}mbit"
        if netem and self.delay_s:
            return ["netem", "delay", f"{self.delay_s * 1e6:g}us", "rate", rate]
        return ["tbf", "rate", rate, "burst", "64kb", "latency", "50ms"]


def _run(*words: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(words), capture_output=True, text=True, timeout=30)


def problem() -> str | None:
    """Why an emulated network cannot be made here (None: it can)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and tc)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"no `{tool}` (apt-get install iproute2)"
    probe = f"ptyb-probe-{os.getpid()}"
    try:
        if _run("ip", "netns", "add", probe).returncode != 0:
            return "cannot create network namespaces here"
        if _run("tc", "-n", probe, "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "1gbit", "burst", "256kb",
                "latency", "50ms").returncode != 0:
            return "tc cannot shape links here (no tbf qdisc in this kernel)"
    finally:
        _run("ip", "netns", "delete", probe)
    return None


def netem_available() -> bool:
    """Whether this kernel has the netem qdisc (a shaped delay); tbf alone shapes only the rate."""
    probe = f"ptyb-netem-{os.getpid()}"
    try:
        _run("ip", "netns", "add", probe)
        return _run("tc", "-n", probe, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "100us").returncode == 0
    finally:
        _run("ip", "netns", "delete", probe)


@contextlib.contextmanager
def emulated_network(shaping: Shaping, hosts: int = 2) -> Iterator[Launcher]:
    """Two namespaces joined by a shaped veth pair for the duration; yields the launcher that starts one
    rank in each. Everything is removed on exit, also after an error."""
    if hosts != 2:
        raise InputError(f"--emulate-network: two hosts (one veth pair), asked for {hosts} ranks")
    reason = problem()
    if reason:
        raise InputError(f"--emulate-network: {reason}")
    netem = bool(shaping.delay_s) and netem_available()
    if shaping.delay_s and not netem:
        raise InputError("--emulate-network: this kernel has no netem qdisc, so a delay cannot be shaped; "
                         "give the rate alone (e.g. 1gbit)")
    tag = f"{os.getpid() % 100000}"
    names = [f"ptyb{tag}-{i}" for i in range(hosts)]
    interfaces = [f"pb{tag}v{i}" for i in range(hosts)]
    subnet = os.getpid() % 250 + 1
    try:
        for name in names:
            _check(_run("ip", "netns", "add", name))
            _check(_run("ip", "-n", name, "link", "set", "lo", "up"))
        _check(_run("ip", "link", "add", interfaces[0], "netns", names[0], "type", "veth", "peer", "name",
                    interfaces[1], "netns", names[1]))
        for index, (name, interface) in enumerate(zip(names, interfaces, strict=True)):
            _check(_run("ip", "-n", name, "addr", "add", f"{SUBNET.format(subnet, index + 1)}/24", "dev", interface))
            _check(_run("ip", "-n", name, "link", "set", interface, "up"))
            _check(_run("tc", "-n", name, "qdisc", "add", "dev", interface, "root", *shaping.tc_arguments(netem)))
        _wait_until_up(names, interfaces)
        yield Launcher(kind="emulated-network", namespaces=tuple(zip(names, interfaces, strict=True)),
                       environment=MPICH_NETWORK_ENVIRONMENT)
    finally:
        for name in names:
            _run("ip", "netns", "delete", name)


def _wait_until_up(names: list[str], interfaces: list[str], timeout_s: float = 10.0) -> None:
    """A new veth pair takes a moment to carry traffic (and IPv6 to finish address checks); MPI started
    before that fails to open its endpoints."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        states = [_run("ip", "-n", name, "addr", "show", "dev", interface).stdout
                  for name, interface in zip(names, interfaces, strict=True)]
        if all("state UP" in state and "tentative" not in state for state in states):
            return
        time.sleep(0.1)
    raise RuntimeError(f"emulated network: {interfaces} not up after {timeout_s:g} s")


def _check(done: subprocess.CompletedProcess) -> None:
    if done.returncode != 0:
        raise RuntimeError(f"emulated network: `{' '.join(done.args)}` failed: {done.stderr.strip()}")
