"""What both peer scripts share: their command line and the peer's version. Imported by file name when
a script runs in a peer's venv (ptybench is not installed there), as ``ptybench.peers`` otherwise."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np


def package_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def main_for(run: Callable[[Any, Mapping[str, Any]], dict[str, np.ndarray]], doc: str,
             argv: list[str]) -> int:
    """``SCRIPT INPUTS.npz SETTINGS.json OUTPUT.npz``: run the peer on the exported inputs."""
    if len(argv) != 3:
        print(doc.split("\n\n")[1], file=sys.stderr)
        return 2
    inputs_path, settings_path, output_path = argv
    settings = json.loads(Path(settings_path).read_text())
    with np.load(inputs_path) as inputs:
        result = run(inputs, settings)
    np.savez(output_path, **result)
    return 0
