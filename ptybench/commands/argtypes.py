"""argparse ``type=`` functions shared by the sub-commands: a bad value is refused while parsing (usage line,
exit 2), before anything is loaded or measured."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """A whole number ≥ 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def comma_list(text: str) -> list[str]:
    """``a,b , c`` -> ["a", "b", "c"]; an empty list is an error."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items
