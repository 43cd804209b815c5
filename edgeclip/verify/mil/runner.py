"""``MILRunner``: the Runner protocol (``edgeclip.backends.base.Runner``) over the MIL interpreter.

It lets Linux CI verify CoreML artifacts: same inputs and first output as ``CoreMLRunner``, with
``emulated=True`` so reports say the numbers come from a reference interpreter, not Core ML.
"""
from __future__ import annotations

import contextlib
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputError
from ._interp import Interpreter
from ._package import Program, load_program
from ._table import np_dtype

__all__ = ["MILRunner"]


def _thread_limit(threads: int):
    """Cap BLAS threads for a call (threadpoolctl ships with scikit-learn); no-op without it."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn depends on it
        return contextlib.nullcontext()
    return threadpool_limits(limits=max(1, int(threads)))


class MILRunner:
    """Load an ``.mlpackage`` (an ``Artifact`` or a path) and run its ``main`` function with numpy.

    ``__call__(*arrays)`` takes the inputs in the program's order, casts them to the declared
    dtypes (shapes must match: the exported shapes are fixed) and returns the first output as
    float32; ``run(*arrays)`` returns every output by name. ``emulate_fp16=False`` skips the
    per-op fp16 rounding of fp16 programs (see ``Interpreter``).
    """

    runtime = "mil-interpreter"
    emulated = True

    def __init__(self, artifact_or_path: Any, threads: int = 2, *, emulate_fp16: bool = True):
        self.path = Path(getattr(artifact_or_path, "path", artifact_or_path))
        self.threads = int(threads)
        t0 = time.perf_counter()
        self.program: Program = load_program(self.path)
        with _thread_limit(self.threads):
            self.interpreter = Interpreter(self.program, emulate_fp16=emulate_fp16)
        self.load_ms = (time.perf_counter() - t0) * 1e3
        fn = self.interpreter.fn
        self.input_names = [v.name for v in fn.inputs]
        self.input_dtypes = [v.dtype for v in fn.inputs]
        self.input_shapes = [list(v.shape) for v in fn.inputs]
        self.output_names = list(fn.outputs)
        self.op_counts = Counter(o.type for o in fn.ops)

    @property
    def first_nonfinite(self) -> str | None:
        """Where the last call first produced inf/nan (e.g. fp16 overflow), else None."""
        return self.interpreter.first_nonfinite

    def _feeds(self, inputs: tuple) -> dict[str, np.ndarray]:
        if len(inputs) != len(self.input_names):
            raise InputError(f"{self.path.name} takes {len(self.input_names)} input(s) "
                             f"({', '.join(self.input_names)}), got {len(inputs)}")
        feeds = {}
        for name, dtype, shape, x in zip(self.input_names, self.input_dtypes, self.input_shapes, inputs):
            arr = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)
            if None not in shape and list(arr.shape) != shape:
                raise InputError(f"input {name!r} of {self.path.name} has shape {list(arr.shape)}, the "
                                 f"model was exported for {shape}; re-export for this shape or batch")
            if dtype != "fp16":  # fp16 inputs are rounded by the interpreter itself
                arr = arr.astype(np_dtype(dtype), copy=False)
            feeds[name] = np.ascontiguousarray(arr)
        return feeds

    def run(self, *inputs) -> dict[str, np.ndarray]:
        """Every output of ``main``, by name, as numpy arrays of their declared dtypes."""
        with _thread_limit(self.threads):
            return self.interpreter.run(self._feeds(inputs))

    def __call__(self, *inputs) -> np.ndarray:
        out = self.run(*inputs)
        return np.asarray(out[self.output_names[0]], dtype=np.float32)
