"""ExecuTorch's runtime without its exporter: ``executorch.runtime`` imported without running
``executorch.exir/__init__``.

``executorch.extension.pybindings.portable_lib`` imports ``executorch.exir._warnings`` for one
decorator, and that import runs the whole exporter package first (torch.export, the dialects,
the passes): 11.2 s against 3.2 s for torch and the runtime alone, measured on a 2-core AVX2 VM
with executorch 1.5.1. A phone's runtime loads no exporter, so neither should a process that only
runs .pte files (the bench children): ``import_runtime`` lets ``_warnings`` load as a plain module
under a stand-in parent package, then takes the stand-in away again, so a later
``import executorch.exir`` in the same process still runs the real package (tested beside an
export in ``tests/backends/test_backends_executorch.py``).
"""
from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

__all__ = ["import_runtime"]

_EXIR = "executorch.exir"
_PYBIND = "executorch.extension.pybindings.portable_lib"


def import_runtime():
    """``executorch.runtime``, imported without the exporter unless it is already loaded."""
    if _EXIR in sys.modules or _PYBIND in sys.modules:
        return importlib.import_module("executorch.runtime")
    import executorch

    stand_in = types.ModuleType(_EXIR)
    stand_in.__path__ = [str(Path(p) / "exir") for p in executorch.__path__]  # its submodules resolve
    sys.modules[_EXIR] = stand_in
    try:
        return importlib.import_module("executorch.runtime")
    finally:
        # what was imported under the stand-in (``_warnings``) stays; the package itself goes, so
        # the next ``import executorch.exir`` runs its real ``__init__``
        if sys.modules.get(_EXIR) is stand_in:
            del sys.modules[_EXIR]
        if getattr(executorch, "exir", None) is stand_in:
            delattr(executorch, "exir")
