"""The ``ptybench`` command: one entry point, one sub-command module per task.

Sub-command modules expose ``add_parser(subparsers)`` which registers the parser and sets
``func`` (called with the parsed arguments, returns an exit code).
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from ptybench._version import __version__
from ptybench.engines.backends.base import BackendUnavailable
from ptybench.engines.errors import InputError
from ptybench.launchers import MPIUnavailable

DESCRIPTION = """\
ptybench measures ptychographic reconstruction: how long it takes, how much memory it needs and
how well it reconstructs, for the DM, RAAR, ePIE/rPIE and ML engines on NumPy, PyTorch and CuPy,
on synthetic far- and near-field datasets with a known ground truth and on measured scans.

Start with `ptybench demo` (a small dataset, a few engines, a results table and a plot), then
`ptybench datasets list` to see the dataset catalogue and its size ladders."""

EPILOG = """\
examples:
  ptybench demo                                  # the embedded default run
  ptybench datasets list --ladders               # every named dataset
  ptybench datasets info seed-2552x768           # sizes and memory of the seed workload
  ptybench datasets make farfield-128-1024 --out data.cxi
  ptybench engines ML                            # the keys of ML's parameters
  ptybench datasets info p25-nearfield           # the measured near-field scan: geometry, attribution
  ptybench datasets info 'scan.cxi?propagation=farfield'   # your file, with the regime it does not store
  ptybench --debug run ...                       # a user's mistake with its full traceback

Data is cached in $PTYBENCH_CACHE (default: your user cache directory); generated frames of datasets up to
$PTYBENCH_FRAME_CACHE_BYTES (default 512 MB; 0: never) are kept there in frames/."""

#: The order commands are listed in; a command module not named here (a new one) follows, by name. Adding a
#: command is one module in ptybench/commands/ with ``add_parser(subparsers)``, plus its test.
LISTING_ORDER = ("demo", "run", "sweep", "report", "plan", "scale", "procure", "forecast", "compare", "history",
                 "resolution", "datasets", "engines", "backends")


def command_modules() -> list[Any]:
    """Every module of ptybench.commands that registers a sub-command."""
    import importlib
    import pkgutil

    import ptybench.commands

    names = [info.name for info in pkgutil.iter_modules(ptybench.commands.__path__)]
    modules = [importlib.import_module(f"ptybench.commands.{name}") for name in names]
    commands = [module for module in modules if hasattr(module, "add_parser")]
    return sorted(commands, key=lambda m: (LISTING_ORDER.index(m.__name__.rpartition(".")[2])
                                           if m.__name__.rpartition(".")[2] in LISTING_ORDER else len(LISTING_ORDER),
                                           m.__name__))


class CommandLineParser(argparse.ArgumentParser):
    """argparse, with its errors (an unknown option, a value its ``type=`` refused) as InputErrors: one line and
    exit 2 like every other mistake of the user's (sub-command parsers are of this class too)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandLineParser(prog="ptybench", description=DESCRIPTION, epilog=EPILOG,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"ptybench {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of every error, a user's mistake too (by default one line, exit 2)")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for command in command_modules():
        command.add_parser(subparsers)
    return parser


#: What a user can fix: their input, a backend or MPI that is not installed, a path or a disk. Anything else is a
#: bug and keeps its traceback.
USER_ERRORS = (InputError, BackendUnavailable, MPIUnavailable, FileNotFoundError, FileExistsError,
               PermissionError, IsADirectoryError, NotADirectoryError)
#: Disk full, quota, read-only file system: the machine's state, not ptybench's.
USER_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def is_user_error(error: BaseException) -> bool:
    return isinstance(error, USER_ERRORS) or (isinstance(error, OSError) and error.errno in USER_ERRNOS)


class Terminated(BaseException):
    """SIGTERM or SIGHUP, raised where the process is, so that every ``finally`` runs: claims are released,
    children killed, partial files removed."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(signum)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except InputError as error:
        if "--debug" in (sys.argv[1:] if argv is None else argv):
            raise
        print(f"ptybench: error: {error}", file=sys.stderr)
        return 2
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    previous = {signum: signal.signal(signum, _raise_terminated) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # `ptybench ... | head`: the reader left; say nothing more (Python's documented recipe).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print("ptybench: interrupted (Ctrl-C); claims released, nothing half-written kept", file=sys.stderr)
        return 130
    except Terminated as stop:
        print(f"ptybench: stopped by {stop}; claims released, nothing half-written kept", file=sys.stderr)
        return stop.exit_code
    except Exception as error:
        # A user's mistake is one line and exit 2; with --debug (or a bug) the traceback stays.
        if args.debug or not is_user_error(error):
            raise
        print(f"ptybench: error: {error}", file=sys.stderr)
        return 2
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
