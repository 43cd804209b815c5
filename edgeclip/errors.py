"""Typed errors. The CLI maps each family to an exit code (see ``exit_code``).

Every message is one line that says what was wrong and how to fix it.
"""
from __future__ import annotations

__all__ = [
    "EdgeclipError",
    "ConfigError",
    "InputError",
    "ToolchainMissing",
    "ExportError",
    "VerificationFailed",
    "exit_code",
]


class EdgeclipError(Exception):
    """Base of every error edgeclip raises on purpose."""

    exit_code = 2


class ConfigError(EdgeclipError):
    """A recipe or target file is missing, malformed or names something unknown."""


class InputError(EdgeclipError):
    """A user-supplied file or argument (checkpoint, image, dataset, path) is unusable."""


class ToolchainMissing(EdgeclipError):
    """An optional toolchain (coremltools, executorch, ...) is not installed."""


class ExportError(EdgeclipError):
    """A backend could not convert or run a tower."""


class VerificationFailed(EdgeclipError):
    """An artifact fell short of an accuracy or latency threshold."""

    exit_code = 1


def exit_code(err: BaseException) -> int:
    """0 is success, 1 a verification threshold failed, 2 bad input or missing toolchain."""
    if isinstance(err, EdgeclipError):
        return err.exit_code
    return 3  # a bug: not a condition we raise on purpose
