"""The op table: MIL op type -> numpy implementation, plus the helpers implementations share.

An implementation is ``fn(a, out) -> array | tuple[array, ...]``: ``a`` maps the op's input and
attribute names to values (one array per input; a list for variadic inputs such as
``concat.values``), ``out`` lists the declared output ``Var``s (dtype/shape) for ops whose
result type is not implied by their inputs (``cast``, ``quantize``). Float inputs arrive as
float32 (fp16 values already rounded); the interpreter rounds every result to its declared
dtype afterwards, so implementations compute in float32 and never cast to fp16 themselves.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ...registry import Registry

__all__ = ["OPS", "op", "VARIADIC", "f32", "scalar", "axes_of", "np_dtype", "broadcast_param"]

OPS: Registry[Callable[..., Any]] = Registry("MIL op")
VARIADIC = frozenset({"values"})  # inputs that are always lists, even with one binding

_NP_DTYPES = {"fp16": np.float16, "fp32": np.float32, "fp64": np.float64, "bf16": np.float32,
              "int8": np.int8, "int16": np.int16, "int32": np.int32, "int64": np.int64,
              "uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32, "uint64": np.uint64,
              "bool": np.bool_, "int4": np.int8, "uint4": np.uint8, "uint2": np.uint8,
              "uint1": np.uint8, "uint3": np.uint8, "uint6": np.uint8}


def op(*names: str):
    """Register one implementation under one or more MIL op type names."""
    def deco(fn):
        for n in names:
            OPS.register(n, fn)
        return fn
    return deco


def np_dtype(name: str):
    """Numpy dtype of a MIL dtype name ('fp16', 'int32', ...); KeyError when unknown."""
    return _NP_DTYPES[name]


def f32(x) -> np.ndarray:
    """Float values as float32 (the compute dtype); other dtypes unchanged."""
    x = np.asarray(x)
    return x.astype(np.float32, copy=False) if x.dtype.kind == "f" else x


def scalar(v, default=None):
    """A 0-d/1-element MIL value as a Python scalar (``default`` when the input is absent)."""
    if v is None:
        return default
    if isinstance(v, (str, bool, int, float)):
        return v
    a = np.asarray(v)
    return a.reshape(-1)[0].item() if a.size else default


def axes_of(v, ndim: int) -> tuple[int, ...] | None:
    """An ``axes`` input as a tuple of non-negative ints; None when absent (all axes)."""
    if v is None:
        return None
    return tuple(int(i) % ndim for i in np.asarray(v).reshape(-1))


def broadcast_param(p: np.ndarray, ndim: int, axis: int | None) -> np.ndarray:
    """A scalar/vector quantization parameter shaped to broadcast along ``axis`` of a rank-``ndim`` tensor."""
    p = np.asarray(p)
    if p.ndim == ndim or p.ndim == 0:
        return p
    shape = [1] * ndim
    shape[(axis if axis is not None else -1) % ndim] = p.size
    return p.reshape(shape)
