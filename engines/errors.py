"""The one error type for a caller's mistake, so that a bug never looks like one.

Every check of user input (arrays, parameters, files, command-line values, environment variables) raises
``InputError`` with a message naming the argument, what was expected and what was given. The command line
turns it into one line and exit status 2; any other exception is a bug and keeps its traceback.
``InputError`` is a ValueError (``InputTypeError`` also a TypeError), so code that caught those still does.
"""

from __future__ import annotations


class InputError(ValueError):
    """The caller's input is wrong: the message names the argument, the expected and the actual value."""


class InputTypeError(InputError, TypeError):
    """The caller's input has the wrong type (an array where a number belongs)."""
