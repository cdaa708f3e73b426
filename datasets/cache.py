"""Where generated datasets go: $PTYBENCH_CACHE, else the user's cache directory (never the repo)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def cache_dir() -> Path:
    path = Path(os.environ.get("PTYBENCH_CACHE") or platformdirs.user_cache_dir("ptybench"))
    path.mkdir(parents=True, exist_ok=True)
    return path
