"""Engine registry: a name in ``parameters['engine']`` to the class that runs it."""

from __future__ import annotations

import importlib

_ENGINES = {
    "DM": ("dm_raar", "ProjectionEngine"),
    "RAAR": ("dm_raar", "ProjectionEngine"),
    "ePIE": ("pie", "PIEEngine"),
    "rPIE": ("pie", "PIEEngine"),
    "ML": ("ml", "MaximumLikelihoodEngine"),
}

ENGINE_NAMES = tuple(_ENGINES)


def engine_class(name: str) -> type:
    if name not in _ENGINES:
        raise ValueError(f"engine: expected one of {list(_ENGINES)}, got {name!r}")
    module_name, class_name = _ENGINES[name]
    return getattr(importlib.import_module(f"{__package__}.{module_name}"), class_name)
