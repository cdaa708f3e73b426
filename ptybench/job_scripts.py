"""Batch scripts that run a ``ptybench scale`` study where facilities run: Slurm or PBS.

The script requests the nodes, loads the site's modules and environment, and runs the same scale
command a user runs locally, with the batch system's own launcher (``srun`` under Slurm, ``mpiexec``
with ``$PBS_NODEFILE`` under PBS), collecting every point into one results file.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from ptybench.engines.errors import InputError

SYSTEMS = ("slurm", "pbs")
_WALLTIME = re.compile(r"^\d+:\d{2}:\d{2}$")
#: What a scheduler accepts in a job name, account, partition/queue or module name: no spaces, quotes, control
#: characters or shell syntax, so a value can never add a line or a command to the script.
_HEADER_VALUE = re.compile(r"^[A-Za-z0-9_.+\-/@:]+$")


@dataclass(frozen=True)
class JobRequest:
    system: str
    nodes: int
    ranks_per_node: int
    threads_per_rank: int = 1
    gpus_per_node: int | None = None
    walltime: str = "01:00:00"
    job_name: str = "ptybench-scale"
    account: str | None = None
    partition: str | None = None
    modules: list[str] = field(default_factory=list)
    environment: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.system not in SYSTEMS:
            raise InputError(f"--emit-job: expected one of {list(SYSTEMS)}, got {self.system!r}")
        for name in ("nodes", "ranks_per_node", "threads_per_rank"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')}: expected a positive integer, got {getattr(self, name)}")
        if not _WALLTIME.match(self.walltime):
            raise InputError(f"--time: expected HH:MM:SS, got {self.walltime!r}")
        for line in self.environment:
            if "=" not in line or not line.split("=", 1)[0].isidentifier():
                raise InputError(f"--env: expected NAME=VALUE, got {line!r}")
        for option, lines in (("--env", self.environment), ("--module", self.modules)):
            for line in lines:  # the user's own shell lines, but each must stay one line
                if any(ord(character) < 32 or ord(character) == 127 for character in line):
                    raise InputError(f"{option}: expected one line without control characters, got {line!r}")
        for option, value in (("--account", self.account), ("--partition", self.partition),
                              ("job name", self.job_name)):
            if value is not None and not _HEADER_VALUE.match(value):
                raise InputError(f"{option}: expected letters, digits and _ . + - / @ : only (what a scheduler "
                                 f"accepts; no spaces, quotes or line breaks), got {value!r}")

    @property
    def max_ranks(self) -> int:
        return self.nodes * self.ranks_per_node


def rank_ladder(max_ranks: int) -> list[int]:
    """1, 2, 4, … up to and including ``max_ranks``: the strong-scaling points a job measures."""
    ladder, ranks = [], 1
    while ranks < max_ranks:
        ladder.append(ranks)
        ranks *= 2
    return [*ladder, max_ranks]


def job_script(request: JobRequest, scale_arguments: list[str]) -> str:
    """The batch script text; ``scale_arguments`` are the ``ptybench scale`` options to run."""
    launcher = (["--launcher", "srun", "--ranks-per-node", str(request.ranks_per_node)] if request.system == "slurm"
                else ["--launcher", "mpiexec", "--hostfile", "$PBS_NODEFILE", "--ranks-per-node",
                      str(request.ranks_per_node)])
    if request.gpus_per_node:
        launcher += ["--gpus-per-node", str(request.gpus_per_node)]
    command = " ".join(["ptybench", "scale", *(shlex.quote(a) for a in scale_arguments),
                        *(a if a.startswith("$") else shlex.quote(a) for a in launcher)])
    if request.system == "slurm":
        header = [f"#SBATCH --job-name={request.job_name}", f"#SBATCH --nodes={request.nodes}",
                  f"#SBATCH --ntasks-per-node={request.ranks_per_node}",
                  f"#SBATCH --cpus-per-task={request.threads_per_rank}", f"#SBATCH --time={request.walltime}",
                  f"#SBATCH --output={request.job_name}-%j.out"]
        if request.gpus_per_node:
            header.append(f"#SBATCH --gpus-per-node={request.gpus_per_node}")
        if request.account:
            header.append(f"#SBATCH --account={request.account}")
        if request.partition:
            header.append(f"#SBATCH --partition={request.partition}")
        start = ['cd "${SLURM_SUBMIT_DIR:-$PWD}"']
    else:
        select = (f"select={request.nodes}:ncpus={request.ranks_per_node * request.threads_per_rank}"
                  f":mpiprocs={request.ranks_per_node}" + (f":ngpus={request.gpus_per_node}"
                                                           if request.gpus_per_node else ""))
        header = [f"#PBS -N {request.job_name}", f"#PBS -l {select}", f"#PBS -l walltime={request.walltime}",
                  "#PBS -j oe"]
        if request.account:
            header.append(f"#PBS -A {request.account}")
        if request.partition:
            header.append(f"#PBS -q {request.partition}")
        start = ['cd "${PBS_O_WORKDIR:-$PWD}"']
    lines = ["#!/bin/bash", *header, "# Written by `ptybench scale --emit-job`: the same scale study as on a laptop,",
             "# launched by the batch system; every point is appended to the --out results file.",
             "set -euo pipefail", *start, *request.modules,
             *(f"export {shlex.quote(line.split('=', 1)[0])}={shlex.quote(line.split('=', 1)[1])}"
               for line in request.environment),
             f"export OMP_NUM_THREADS={request.threads_per_rank}", command, ""]
    return "\n".join(lines)
