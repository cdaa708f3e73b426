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
from .registry import ENGINE_NAMES
from .validation import ProblemShape, validate_inputs

__all__ = [
    "ENGINE_NAMES", "BackendUnavailable", "IterationRecord", "ParameterError", "ProblemShape",
    "Reconstruction", "ReconstructionDiverged", "ReconstructionResult", "backend_status",
    "describe_options", "get_backend", "parse_parameters", "ptychography", "validate_inputs",
]
