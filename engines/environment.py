"""Environment variables read by ptybench, checked like any other input: a mistyped value names the variable and
what it accepts instead of silently meaning the default."""

from __future__ import annotations

import math
import os

from .errors import InputError


def env_choice(name: str, choices: tuple[str, ...], default: str) -> str:
    value = os.environ.get(name, "").strip() or default
    if value not in choices:
        raise InputError(f"{name}: expected one of {list(choices)}, got {value!r} (unset it for {default!r})")
    return value


def env_number(name: str, default: float, minimum: float = 0.0) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{name}: expected a number ≥ {minimum:g}, got {text!r}") from None
    if not (math.isfinite(value) and value >= minimum):
        raise InputError(f"{name}: expected a number ≥ {minimum:g}, got {text!r}")
    return value
