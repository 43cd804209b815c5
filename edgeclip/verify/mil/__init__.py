"""A reference interpreter for CoreML ML Programs, so CoreML artifacts are verified off macOS.

Public API:

- ``MILRunner(artifact_or_path, threads=2)``: the ``Runner`` protocol of
  ``edgeclip.backends.base`` (``load_ms``, ``threads``, ``runtime="mil-interpreter"``,
  ``emulated=True``, ``__call__(*arrays) -> first output``; ``run(*arrays) -> {name: array}``).
- ``load_program(path) -> Program``: the parsed ``.mlpackage`` (functions, ops, numpy consts).
- ``Interpreter(program)``: materializes consts and compressed weights once; ``run(feeds)``.
- ``supported_ops() -> list[str]``; ``unsupported_ops(function) -> list[Op]``.
- ``BlobFile(path)``: the ``weight.bin`` reader; damaged or truncated files raise ``ExportError``.

An fp16 program is emulated by rounding every op's result to fp16 (precision loss and overflow
to inf show up as on device); compressed weights (``constexpr_*``) are decompressed with the
iOS16/iOS17/iOS18 semantics of coremltools' op definitions. Unknown ops raise ``ExportError``
naming the op type, function, op index and output name. Needs ``coremltools`` only to parse
the protobuf spec (its proto modules, no macOS runtime).
"""
from __future__ import annotations

from ._blob import BlobFile
from ._interp import Interpreter, unsupported_ops
from ._package import Function, Op, Program, Var, load_program
from ._table import OPS
from .runner import MILRunner

__all__ = ["MILRunner", "load_program", "Interpreter", "Program", "Function", "Op", "Var",
           "BlobFile", "supported_ops", "unsupported_ops"]


def supported_ops() -> list[str]:
    """Every MIL op type the interpreter runs (``const`` included)."""
    return sorted({"const", *OPS.names()})
