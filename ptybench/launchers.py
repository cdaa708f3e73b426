"""How MPI ranks are started: ``mpiexec`` (MPICH or Open MPI), ``srun`` (Slurm), or a site's own template.

The measurement is the same whichever starts it (``python -m mpi4py -m ptybench.mpi_run``); only the
prefix differs. A template is a command line with ``{ranks}`` (and optionally ``{hostfile}``,
``{ranks_per_node}``, ``{gpus_per_node}``), e.g. ``"mpirun -np {ranks} --hostfile hosts"``.
"""

from __future__ import annotations

import functools
import shlex
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ptybench.engines.errors import InputError

KINDS = ("mpiexec", "srun")


class MPIUnavailable(RuntimeError):
    """No mpiexec or no mpi4py here; the message says how to install them."""


def mpiexec_path() -> str:
    """mpiexec beside this Python (the mpich wheel puts it there), else on PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    if beside.exists():
        return str(beside)
    found = shutil.which("mpiexec")
    if found is None:
        raise MPIUnavailable("MPI not found: no mpiexec beside this Python or on PATH; install the MPI extra "
                             "with `pip install -c constraints.txt '.[mpi]'` (mpi4py and the MPICH wheel)")
    try:
        import mpi4py  # noqa: F401
    except ImportError as error:
        raise MPIUnavailable(f"mpi4py is not installed ({error}); `pip install -c constraints.txt '.[mpi]'`") \
            from error
    return found


@functools.cache
def mpiexec_flavour(path: str) -> str:
    """"mpich" (Hydra) or "openmpi", from ``mpiexec --version``; "unknown" otherwise."""
    try:
        text = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if "HYDRA" in text or "MPICH" in text:
        return "mpich"
    return "openmpi" if "Open MPI" in text or "OpenRTE" in text else "unknown"


@dataclass(frozen=True)
class Launcher:
    kind: str = "mpiexec"
    template: str | None = None
    hostfile: str | None = None
    ranks_per_node: int | None = None
    gpus_per_node: int | None = None
    #: Ranks on an emulated network (ptybench.emulated_network): (network namespace, interface) per rank.
    namespaces: tuple[tuple[str, str], ...] = ()
    #: Environment the ranks need (e.g. MPICH told to use its TCP network path), as (name, value) pairs.
    environment: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str = "mpiexec", hostfile: str | None = None, ranks_per_node: int | None = None,
              gpus_per_node: int | None = None) -> Launcher:
        """``mpiexec``, ``srun`` or a template containing ``{ranks}``; checked before anything runs."""
        for name, value in (("--ranks-per-node", ranks_per_node), ("--gpus-per-node", gpus_per_node)):
            if value is not None and value < 1:
                raise InputError(f"{name}: expected a positive integer, got {value}")
        if text in KINDS:
            return cls(text, None, hostfile, ranks_per_node, gpus_per_node)
        if "{ranks}" not in text:
            raise InputError(f"--launcher: expected mpiexec, srun or a template with {{ranks}} such as "
                             f"'mpirun -np {{ranks}} --hostfile hosts', got {text!r}")
        launcher = cls("custom", text, hostfile, ranks_per_node, gpus_per_node)
        launcher.prefix(1)  # an unknown {placeholder} is an error now, not in the first run
        return launcher

    def prefix(self, ranks: int) -> list[str]:
        """The command words before ``python -m mpi4py ...`` for ``ranks`` ranks."""
        if self.kind == "custom":
            try:
                return shlex.split(self.template.format(ranks=ranks, hostfile=self.hostfile or "",
                                                        ranks_per_node=self.ranks_per_node or "",
                                                        gpus_per_node=self.gpus_per_node or ""))
            except (KeyError, IndexError) as error:
                raise InputError(f"--launcher: unknown placeholder {error} in {self.template!r}; expected "
                                 f"{{ranks}}, {{hostfile}}, {{ranks_per_node}}, {{gpus_per_node}}") from None
        if self.kind == "srun":
            srun = shutil.which("srun")
            if srun is None:
                raise InputError("--launcher srun: no srun on PATH (run inside a Slurm allocation)")
            words = [srun, "-n", str(ranks)]
            if self.ranks_per_node:
                words += ["--ntasks-per-node", str(self.ranks_per_node)]
            if self.gpus_per_node:
                words += ["--gpus-per-node", str(self.gpus_per_node)]
            return words
        path = mpiexec_path()
        words = [path, "-n", str(ranks)]
        openmpi = mpiexec_flavour(path) == "openmpi"
        if self.hostfile:
            words += ["--hostfile" if openmpi else "-f", self.hostfile]
        if self.ranks_per_node:
            words += ["--npernode" if openmpi else "-ppn", str(self.ranks_per_node)]
        return words

    def command(self, ranks: int, program: list[str]) -> list[str]:
        """The whole command line that runs ``program`` on ``ranks`` ranks. On an emulated network each rank
        is started in its own namespace (MPMD: one ``-n 1`` section per rank)."""
        if not self.namespaces:
            return [*self.prefix(ranks), *program]
        if ranks > len(self.namespaces):
            raise InputError(f"ranks: the emulated network has {len(self.namespaces)} hosts, asked for {ranks}")
        words = [mpiexec_path()]
        for index, (namespace, interface) in enumerate(self.namespaces[:ranks]):
            words += [*([":"] if index else []), "-n", "1", "ip", "netns", "exec", namespace, "env",
                      f"FI_TCP_IFACE={interface}", *program]
        return words

    def describe(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value not in (None, ())}


def placement(per_rank: list[dict[str, Any]]) -> dict[str, Any]:
    """Node names and ranks per node from the ranks' own reports (what actually ran where)."""
    counts: dict[str, int] = {}
    for detail in per_rank:
        host = str(detail.get("host", "?"))
        counts[host] = counts.get(host, 0) + 1
    return {"nodes": sorted(counts), "ranks_per_node": counts}
