"""Reference ptychography engines (DM, RAAR, ePIE/rPIE, ML) on NumPy, CuPy and PyTorch.

    O, P = ptychography(diffraction_data, initial_object, initial_probe, scan_positions, mask,
                        {"engine": "DM", "iterations": 100})
"""

from .backends import BackendUnavailable, backend_status, get_backend
from .options import ParameterError, describe_options, parse_parameters
from .reconstruction import (
    IterationRecord,
    Reconstruction,
    ReconstructionDiverged,
    ReconstructionResult,
    ptychography,
)
from .registry import engine_names, engine_spec, register
from .validation import ProblemShape, validate_inputs

__all__ = [
    "ENGINE_NAMES", "BackendUnavailable", "IterationRecord", "ParameterError", "ProblemShape",
    "Reconstruction", "ReconstructionDiverged", "ReconstructionResult", "backend_status",
    "describe_options", "engine_names", "engine_spec", "get_backend", "parse_parameters", "ptychography",
    "register", "validate_inputs",
]


def __getattr__(name: str):
    """``ENGINE_NAMES`` is read when asked: plug-in engines may add to it."""
    if name == "ENGINE_NAMES":
        return engine_names()
    raise AttributeError(name)
