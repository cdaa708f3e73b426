"""argparse ``type=`` functions and option groups shared by the sub-commands: a bad value is refused while
parsing (one line, exit 2), before anything is loaded or measured."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path


def positive_int(text: str) -> int:
    """A whole number ≥ 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def byte_size(text: str) -> int:
    """``8MiB``, ``2GB``, ``1e6`` -> bytes (ptybench.memory_model.parse_bytes)."""
    from ptybench.engines.errors import InputError
    from ptybench.memory_model import parse_bytes

    try:
        return parse_bytes(text)
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def comma_list(text: str) -> list[str]:
    """``a,b , c`` -> ["a", "b", "c"]; an empty list is an error."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


def count_list(minimum: int) -> Callable[[str], list[int]]:
    """``1,2,4`` -> [1, 2, 4], every value a whole number ≥ ``minimum``."""

    def parse(text: str) -> list[int]:
        items = comma_list(text)
        if not all(item.isdigit() and int(item) >= minimum for item in items):
            raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers >= {minimum}, got {text!r}")
        return [int(item) for item in items]

    return parse


def dataset_list(text: str) -> list[str]:
    """Comma-separated datasets; a path that exists is one dataset even with commas in its name (and
    ``a.cxi,b.cxi``, files that complete each other, is one dataset too when given to ``run``)."""
    path = text.partition("?")[0]
    return [text] if Path(path).is_file() else comma_list(text)


def add_target_options(parser: argparse.ArgumentParser) -> None:
    """The forecast's target, shared by ``forecast`` and ``report``."""
    parser.add_argument("--target", default="seed-2552x768",
                        help="catalogue dataset to forecast (default: %(default)s)")
    parser.add_argument("--projections", type=positive_int, default=498,
                        help="projections in the tomogram (default: %(default)s)")
    parser.add_argument("--rates", default="3kHz,10kHz,110kHz", help="detector frame rates (default: %(default)s)")
