"""The interpreter loop: constants and compressed weights materialized once, then ops in order.

Precision: every op computes in float32 and its result is rounded to the dtype the program
declares for that output. An fp16 program (``compute_precision=fp16``) therefore loses precision
and overflows to inf after every op the way the device's fp16 kernels do; what is *not*
emulated is reduced precision inside one op (an fp16 accumulator in a long matmul sum).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import EdgeclipError, ExportError
from . import _constexpr, _ops_math, _ops_tensor  # noqa: F401  (fill the op table)
from ._package import Function, Op, Program, Var
from ._table import OPS, VARIADIC, np_dtype

__all__ = ["Interpreter", "unsupported_ops", "conform"]

_FLOAT = {"fp16", "fp32", "fp64", "bf16"}


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def unsupported_ops(fn: Function) -> list[Op]:
    """Ops of ``fn`` the interpreter cannot run (unknown types or nested control-flow blocks)."""
    return [o for o in fn.ops if o.type != "const" and (o.type not in OPS or o.nested)]


def conform(value: Any, var: Var, where: str, fp16: bool = True) -> Any:
    """A result cast to its declared dtype (floats kept as float32 holding fp16-rounded values;
    ``fp16=False`` keeps fp16-declared results unrounded)."""
    if var.dtype == "string":
        return value
    v = np.asarray(value)
    if var.dtype == "fp16" and fp16:
        with np.errstate(over="ignore"):  # overflow to inf is the behaviour being emulated
            v = v.astype(np.float16).astype(np.float32) if v.dtype != np.float16 else v.astype(np.float32)
    elif var.dtype in _FLOAT:
        v = v.astype(np.float32, copy=False)
    else:
        try:
            v = v.astype(np_dtype(var.dtype), copy=False)
        except KeyError:
            raise ExportError(f"MIL interpreter: dtype {var.dtype!r} of {where} is not supported") from None
    if None not in var.shape and v.shape != var.shape:
        raise ExportError(f"MIL interpreter: {where} computed shape {list(v.shape)} but the program "
                          f"declares {list(var.shape)}; this op's semantics are not emulated correctly")
    return v


class Interpreter:
    """Runs one function of a loaded ``Program`` on numpy inputs.

    ``emulate_fp16=False`` computes an fp16 program without rounding op results (its fp16
    weights stay as stored): comparing both runs tells fp16 activation rounding/overflow apart
    from weight rounding or compression when an artifact falls short.
    """

    def __init__(self, program: Program, function: str = "main", emulate_fp16: bool = True):
        self.program = program
        self.emulate_fp16 = emulate_fp16  # False: fp16-declared results stay float32 (diagnosis)
        self.fn = program.main if function == "main" else program.functions[function]
        bad = unsupported_ops(self.fn)
        if bad:
            o = bad[0]
            what = "has nested blocks (control flow)" if o.type in OPS else "is not supported"
            others = sorted({b.type for b in bad[1:]} - {o.type})
            raise ExportError(
                f"MIL interpreter: op {o.type!r} at {o.location} {what}"
                + (f" (also unsupported: {', '.join(others)})" if others else "")
                + "; verify this model on macOS, or extend edgeclip.verify.mil")
        self.consts: dict[str, Any] = {}
        self.plan: list[Op] = []
        for o in self.fn.ops:
            if o.type == "const":
                self.consts[o.outputs[0].name] = conform(o.attrs["val"], o.outputs[0], o.location)
            elif o.type.startswith("constexpr_"):
                self._store(o, self._execute(o, self.consts), self.consts)
            else:
                self.plan.append(o)
        self._last_use = self._lifetimes()
        self.first_nonfinite: str | None = None  # where inf/nan first appeared in the last run

    def _lifetimes(self) -> dict[str, int]:
        last: dict[str, int] = {}
        for i, o in enumerate(self.plan):
            for items in o.inputs.values():
                for it in items:
                    if isinstance(it, str) and it not in self.consts:
                        last[it] = i
        for name in self.fn.outputs:
            last.pop(name, None)  # outputs live to the end
        return last

    def _args(self, o: Op, env: dict[str, Any]) -> dict[str, Any]:
        a = {k: v for k, v in o.attrs.items() if k != "name"}
        for key, items in o.inputs.items():
            vals = []
            for it in items:
                if isinstance(it, str):
                    if it not in env:
                        raise ExportError(f"MIL interpreter: {o.type} at {o.location} reads {it!r}, "
                                          "which no earlier op or input defines; the program is malformed")
                    vals.append(env[it])
                else:
                    vals.append(it)
            a[key] = vals if key in VARIADIC or len(vals) != 1 else vals[0]
        return a

    def _execute(self, o: Op, env: dict[str, Any]) -> Any:
        try:
            return OPS.get(o.type)(self._args(o, env), o.outputs)
        except EdgeclipError:
            raise
        except NotImplementedError as e:
            raise ExportError(f"MIL interpreter: {o.type} at {o.location}: {e} is not supported; "
                              "verify this model on macOS, or extend edgeclip.verify.mil") from e
        except Exception as e:
            raise ExportError(f"MIL interpreter: {o.type} at {o.location} failed: {_one_line(e)}") from e

    def _store(self, o: Op, result: Any, env: dict[str, Any]) -> None:
        results = result if isinstance(result, tuple) else (result,)
        if len(results) != len(o.outputs):
            raise ExportError(f"MIL interpreter: {o.type} at {o.location} gave {len(results)} "
                              f"output(s), the program declares {len(o.outputs)}")
        for var, r in zip(o.outputs, results):
            env[var.name] = conform(r, var, o.location, self.emulate_fp16)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Execute the function; ``feeds`` maps each function input name to an array."""
        env: dict[str, Any] = dict(self.consts)
        for var in self.fn.inputs:
            if var.name not in feeds:
                raise ExportError(f"MIL interpreter: input {var.name!r} was not given")
            env[var.name] = conform(feeds[var.name], var, f"input {var.name!r}")
        self.first_nonfinite = None
        with np.errstate(all="ignore"):  # fp16 overflow becomes inf, as on device
            for i, o in enumerate(self.plan):
                self._store(o, self._execute(o, env), env)
                if self.first_nonfinite is None:
                    self._check_finite(o, env)
                for items in o.inputs.values():
                    for it in items:
                        if isinstance(it, str) and self._last_use.get(it) == i:
                            env.pop(it, None)
        return {name: env[name] for name in self.fn.outputs}

    def _check_finite(self, o: Op, env: dict[str, Any]) -> None:
        for var in o.outputs:
            v = env[var.name]
            if var.dtype in _FLOAT and not np.isfinite(v).all():
                self.first_nonfinite = f"{o.type} at {o.location} ({var.dtype})"
                return
