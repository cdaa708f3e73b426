"""ptybench: benchmarking and scaling test suite for ptychographic reconstruction."""

from ._version import __version__

__all__ = ["__version__"]
