"""Error types and the user's source location.

Every error a user can trigger is a subclass of ``ValueError`` or ``TypeError`` so that
ordinary ``except`` clauses catch it, and carries the op, the shapes and the user's line.
"""

from __future__ import annotations

import os
import sys
from typing import Any

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))


_inside: dict[str, bool] = {}


def _is_ours(filename: str) -> bool:
    ours = _inside.get(filename)
    if ours is None:
        ours = _inside[filename] = os.path.abspath(filename).startswith(_PKG_DIR + os.sep)
    return ours


def user_location() -> str:
    """Return ``file:line`` of the innermost frame outside the symgrad package."""
    frame: Any = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not _is_ours(filename):
            return f"{filename}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>"


class SymgradError(Exception):
    """Base class of all symgrad errors."""


class ShapeError(SymgradError, ValueError):
    """An op was given operands whose shapes it cannot combine."""


class DTypeError(SymgradError, TypeError):
    """An op was given operands of a dtype it does not accept."""


class GradientError(SymgradError, ValueError):
    """A derivative was asked for that is not defined (non-scalar target, no path...)."""


class InputError(SymgradError, ValueError):
    """A compiled function was called with a missing, unknown or ill-shaped input."""


class InputDTypeError(InputError, TypeError):
    """A compiled function was given an input that cannot be cast safely."""


class PassError(SymgradError, RuntimeError):
    """A pass failed; the message holds the path of a reproducer file."""


class UnsupportedError(SymgradError, NotImplementedError):
    """A backend or target cannot handle some op; every such op is listed."""


def op_error(
    kind: type[SymgradError], op: str, message: str, shapes: object = None
) -> SymgradError:
    """Build an error that names the op, the operand shapes and the user's line."""
    where = user_location()
    text = f"{op}: {message}"
    if shapes is not None:
        text += f" (operand shapes: {shapes})"
    text += f"\n  at {where}"
    return kind(text)
