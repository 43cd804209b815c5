"""Compressed-weight (``constexpr_*``) ops: decompressed once, when the program is loaded.

iOS16 forms keep their parameters as attributes (``constexpr_lut_to_dense`` with byte-packed
``indices`` and a ``shape``; ``constexpr_affine_dequantize`` with a per-axis scale); iOS18 forms
take typed const inputs (sub-byte ``indices`` already unpacked by the reader, block-wise LUTs
and scales). Both are told apart by the parameters present, as coremltools' definitions do.
"""
from __future__ import annotations

import numpy as np

from ._blob import unpack_bits
from ._table import broadcast_param, op, scalar

__all__ = ["lut_to_dense", "blockwise_shift_scale", "sparse_to_dense"]


def _repeat_blocks(p: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Per-block parameters (each dim divides the data dim) repeated to the data's shape."""
    for axis, (n, b) in enumerate(zip(shape, p.shape)):
        if n % b:
            raise ValueError(f"parameter shape {p.shape} does not tile data shape {shape}")
        if n != b:
            p = np.repeat(p, n // b, axis=axis)
    return p


def lut_to_dense(indices: np.ndarray, lut: np.ndarray, vector_axis: int | None = None) -> np.ndarray:
    """iOS18 LUT decompression: ``lut`` is ``[blocks..., palettes, vector_size]``."""
    idx = np.asarray(indices).astype(np.intp)
    k = idx.ndim
    if lut.ndim != k + 2:
        raise ValueError(f"lut rank {lut.ndim} must be indices rank {k} + 2")
    grids = []
    for axis, (n, b) in enumerate(zip(idx.shape, lut.shape[:k])):
        if n % b:
            raise ValueError(f"lut blocks {lut.shape[:k]} do not tile indices shape {idx.shape}")
        shape = [1] * k
        shape[axis] = n
        grids.append((np.arange(n) // (n // b)).reshape(shape))  # block coordinate per position
    out = lut[(*grids, idx)]  # [indices..., vector_size]
    vsize = lut.shape[-1]
    if vsize == 1:
        return out[..., 0]
    ax = int(vector_axis) % k
    out = np.moveaxis(out, -1, ax + 1)  # element j of axis ``ax`` expands to j*V .. j*V+V-1
    shape = list(idx.shape)
    shape[ax] *= vsize
    return out.reshape(shape)


def blockwise_shift_scale(data: np.ndarray, scale: np.ndarray, offset: np.ndarray | None) -> np.ndarray:
    """``scale * (data - offset)`` with scale/offset given per block of ``data``."""
    x = np.asarray(data).astype(np.float32)
    if offset is not None:
        x = x - _repeat_blocks(np.asarray(offset).astype(np.float32), x.shape)
    return x * _repeat_blocks(np.asarray(scale).astype(np.float32), x.shape)


def sparse_to_dense(nonzero: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = np.zeros(mask.shape, dtype=np.asarray(nonzero).dtype)
    if int(np.count_nonzero(mask)) != np.asarray(nonzero).size:
        raise ValueError(f"mask has {np.count_nonzero(mask)} set bits but {np.asarray(nonzero).size} values")
    out[mask != 0] = np.asarray(nonzero).reshape(-1)
    return out


@op("constexpr_affine_dequantize")
def _affine_dequantize(a, out):
    q = np.asarray(a["quantized_data"]).astype(np.float32)
    axis = int(scalar(a.get("axis"), 0))
    zp = broadcast_param(np.asarray(a["zero_point"]).astype(np.float32), q.ndim, axis)
    return (q - zp) * broadcast_param(np.asarray(a["scale"]).astype(np.float32), q.ndim, axis)


@op("constexpr_cast")
def _cast(a, out):
    return np.asarray(a["source_val"]).astype(np.float32)


@op("constexpr_lut_to_dense")
def _lut_to_dense(a, out):
    lut = np.asarray(a["lut"])
    if a.get("shape") is not None:  # iOS16: flat LUT, byte-packed indices, explicit shape
        shape = tuple(int(s) for s in np.asarray(a["shape"]).reshape(-1))
        nbits = int(np.log2(lut.size))
        count = int(np.prod(shape))
        idx = unpack_bits(np.asarray(a["indices"]), nbits, count)
        return lut.reshape(-1)[idx.astype(np.intp)].reshape(shape)
    va = None if a.get("vector_axis") is None else int(scalar(a["vector_axis"]))
    return lut_to_dense(a["indices"], lut, va)


@op("constexpr_blockwise_shift_scale")
def _blockwise_shift_scale(a, out):
    return blockwise_shift_scale(a["data"], a["scale"], a.get("offset"))


@op("constexpr_sparse_to_dense")
def _sparse_to_dense(a, out):
    mask = np.asarray(a["mask"])
    if a.get("shape") is not None:  # iOS16: bit-packed mask bytes + shape
        shape = tuple(int(s) for s in np.asarray(a["shape"]).reshape(-1))
        mask = unpack_bits(mask, 1, int(np.prod(shape))).reshape(shape)
    return sparse_to_dense(a["nonzero_data"], mask)


@op("constexpr_lut_to_sparse")
def _lut_to_sparse(a, out):
    """(mask, nonzero values): palettized values of the sparse positions only."""
    mask = np.asarray(a["indices_mask"])
    idx = sparse_to_dense(a["indices_nonzero_data"], mask)
    va = None if a.get("vector_axis") is None else int(scalar(a["vector_axis"]))
    dense = lut_to_dense(idx, np.asarray(a["lut"]), va)
    if va is not None and np.asarray(a["lut"]).shape[-1] > 1:
        mask = np.repeat(mask, np.asarray(a["lut"]).shape[-1], axis=va)
    return mask, dense[mask != 0]


@op("constexpr_sparse_blockwise_shift_scale")
def _sparse_blockwise_shift_scale(a, out):
    mask = np.asarray(a["data_mask"])
    dense = blockwise_shift_scale(sparse_to_dense(a["nonzero_data"], mask), a["scale"], a.get("offset"))
    return mask, dense[mask != 0]
