"""Backends: one module per artifact format, registered in ``BACKENDS``.

Each module imports only numpy/stdlib at load time (toolchains and torch lazily inside
functions), so importing this package is cheap and ``available()`` says what is missing.
"""
from __future__ import annotations

from ._common import io_arrays
from .base import BACKENDS, Artifact, Backend, ExportSpec, Runner, size_bytes
from .coreml import CoreMLBackend
from .executorch import ExecuTorchBackend
from .litert import LiteRTBackend
from .onnx import OnnxBackend

__all__ = [
    "BACKENDS", "Artifact", "Backend", "ExportSpec", "Runner", "size_bytes",
    "CoreMLBackend", "ExecuTorchBackend", "LiteRTBackend", "OnnxBackend", "get_backend",
    "io_arrays",  # runner inputs in an artifact's dtypes: verify.profile feeds runtimes directly
]

for _b in (CoreMLBackend(), ExecuTorchBackend(), LiteRTBackend(), OnnxBackend()):
    BACKENDS.register(_b.name, _b)


def get_backend(name: str) -> Backend:
    """The registered backend instance; ConfigError lists the known names."""
    return BACKENDS.get(name)
