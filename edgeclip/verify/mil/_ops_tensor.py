"""Tensor-manipulation MIL ops: shapes, slicing, gathers, casts, selection, and the iOS17
activation ``quantize`` / ``dequantize`` pair that W8A8 programs use between layers."""
from __future__ import annotations

import numpy as np

from ._table import axes_of, broadcast_param, f32, np_dtype, op, scalar

__all__: list[str] = []  # registers into _table.OPS on import


def _ints(v) -> list[int]:
    return [int(i) for i in np.asarray(v).reshape(-1)]


@op("reshape")
def _reshape(a, out):
    x = np.asarray(a["x"])
    shape = _ints(a["shape"])
    if len(shape) == x.ndim:  # 0 copies the input dim when the rank is unchanged
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


@op("transpose")
def _transpose(a, out):
    return np.transpose(a["x"], _ints(a["perm"]))


@op("concat")
def _concat(a, out):
    vals = [np.asarray(v) for v in a["values"]]
    axis = int(scalar(a["axis"]))
    if scalar(a.get("interleave"), False):
        stacked = np.stack(vals, axis=axis + 1 if axis >= 0 else axis + vals[0].ndim + 1)
        shape = list(vals[0].shape)
        shape[axis] *= len(vals)
        return stacked.reshape(shape)
    return np.concatenate(vals, axis=axis)


@op("stack")
def _stack(a, out):
    return np.stack([np.asarray(v) for v in a["values"]], axis=int(scalar(a["axis"])))


@op("split")
def _split(a, out):
    x = np.asarray(a["x"])
    axis = int(scalar(a["axis"])) % x.ndim
    if a.get("split_sizes") is not None:
        cuts = np.cumsum(_ints(a["split_sizes"]))[:-1]
    else:
        cuts = len(out)
    return tuple(np.split(x, cuts, axis=axis))


@op("slice_by_index")
def _slice_by_index(a, out):
    x = np.asarray(a["x"])
    r = x.ndim
    begin, end = _ints(a["begin"]), _ints(a["end"])
    stride = _ints(a["stride"]) if a.get("stride") is not None else [1] * r
    bmask, emask, smask = ([bool(b) for b in np.asarray(a[k]).reshape(-1)] if a.get(k) is not None
                           else [False] * r for k in ("begin_mask", "end_mask", "squeeze_mask"))
    idx = []
    for i in range(r):
        if smask[i]:
            idx.append(begin[i])  # an int index drops the axis, as squeeze_mask asks
        else:
            idx.append(slice(None if bmask[i] else begin[i], None if emask[i] else end[i], stride[i]))
    return x[tuple(idx)]


@op("slice_by_size")
def _slice_by_size(a, out):
    x = np.asarray(a["x"])
    return x[tuple(slice(b, None if s == -1 else b + s) for b, s in zip(_ints(a["begin"]), _ints(a["size"])))]


@op("squeeze")
def _squeeze(a, out):
    x = np.asarray(a["x"])
    axes = axes_of(a.get("axes"), x.ndim) if x.ndim else None
    return np.squeeze(x, axis=axes)


@op("expand_dims")
def _expand_dims(a, out):
    x = np.asarray(a["x"])
    rank = x.ndim + len(_ints(a["axes"]))
    return np.expand_dims(x, tuple(i % rank for i in _ints(a["axes"])))


@op("tile")
def _tile(a, out):
    return np.tile(a["x"], _ints(a["reps"]))


@op("gather")
def _gather(a, out):
    x, idx = np.asarray(a["x"]), np.asarray(a["indices"]).astype(np.int64)
    axis = int(scalar(a.get("axis"), 0)) % x.ndim
    bd = int(scalar(a.get("batch_dims"), 0))
    if bd == 0:
        return np.take(x, idx, axis=axis)  # negative indices wrap, as in MIL
    lead = x.shape[:bd]
    xs, ids = x.reshape(-1, *x.shape[bd:]), idx.reshape(-1, *idx.shape[bd:])
    res = np.stack([np.take(xs[b], ids[b], axis=axis - bd) for b in range(xs.shape[0])])
    return res.reshape(*lead, *res.shape[1:])


@op("gather_along_axis")
def _gather_along_axis(a, out):
    x = np.asarray(a["x"])
    idx = np.asarray(a["indices"]).astype(np.int64)
    axis = int(scalar(a.get("axis"), 0)) % x.ndim
    return np.take_along_axis(x, np.where(idx < 0, idx + x.shape[axis], idx), axis=axis)


@op("gather_nd")
def _gather_nd(a, out):
    x, idx = np.asarray(a["x"]), np.asarray(a["indices"]).astype(np.int64)
    return x[tuple(np.moveaxis(idx, -1, 0))]


@op("cast")
def _cast(a, out):
    return np.asarray(a["x"]).astype(np_dtype(scalar(a["dtype"])))


@op("select")
def _select(a, out):
    return np.where(np.asarray(a["cond"]).astype(bool), f32(a["a"]), f32(a["b"]))


@op("pad")
def _pad(a, out):
    x = f32(a["x"])
    p = _ints(a["pad"])
    pads = [(0, 0)] * (x.ndim - len(p) // 2) + [(p[2 * i], p[2 * i + 1]) for i in range(len(p) // 2)]
    mode = scalar(a.get("mode"), "constant")
    if mode == "constant":
        return np.pad(x, pads, constant_values=scalar(a.get("constant_val"), 0.0))
    return np.pad(x, pads, mode={"reflect": "reflect", "replicate": "edge"}[mode])


@op("quantize")
def _quantize(a, out):
    """round(x / scale) + zero_point, clipped to the int8/uint8 range (round half to even)."""
    x = f32(a["input"])
    axis = None if a.get("axis") is None else int(scalar(a["axis"]))
    dtype = np.dtype(np_dtype(scalar(a["output_dtype"])))
    q = np.rint(x / broadcast_param(f32(a["scale"]), x.ndim, axis))
    if a.get("zero_point") is not None:
        q = q + broadcast_param(a["zero_point"], x.ndim, axis).astype(np.float32)
    info = np.iinfo(dtype)
    return np.clip(q, info.min, info.max).astype(dtype)


@op("dequantize")
def _dequantize(a, out):
    x = np.asarray(a["input"]).astype(np.float32)
    axis = None if a.get("axis") is None else int(scalar(a["axis"]))
    if a.get("zero_point") is not None:
        x = x - broadcast_param(a["zero_point"], x.ndim, axis).astype(np.float32)
    return x * broadcast_param(f32(a["scale"]), x.ndim, axis)


def _grid(n: int, m: int, mode: str) -> np.ndarray:
    """Source coordinates of ``m`` output samples over ``n`` inputs (resize_bilinear's notes)."""
    i = np.arange(m, dtype=np.float64)
    if mode in ("STRICT_ALIGN_CORNERS", "ALIGN_CORNERS"):
        src = i * ((n - 1) / (m - 1)) if m > 1 else np.full(m, (n - 1) / 2 if mode == "ALIGN_CORNERS" else 0.0)
    elif mode == "DEFAULT":
        src = i * ((n - n / m) / (m - 1)) if m > 1 else np.zeros(m)
    elif mode == "OFFSET_CORNERS":
        delta = max(1, n - 1) / m
        src = 0.5 * delta + i * delta
    elif mode == "UNALIGN_CORNERS":  # half-pixel centers
        src = (i + 0.5) * (n / m) - 0.5
    elif mode == "ASYMMETRIC":  # upsample_bilinear, align_corners=False without half-pixel centers
        src = i * (n / m)
    else:
        raise NotImplementedError(f"bilinear sampling mode {mode}")
    return np.clip(src, 0, n - 1)


def _lerp_axis(x: np.ndarray, axis: int, out_size: int, mode: str) -> np.ndarray:
    """Linear resampling of one axis (one half of a separable bilinear resize)."""
    n = x.shape[axis]
    src = _grid(n, out_size, mode)
    lo = np.floor(src).astype(np.intp)
    hi = np.minimum(lo + 1, n - 1)
    shape = [1] * x.ndim
    shape[axis] = out_size
    w = (src - lo).astype(np.float32).reshape(shape)
    return np.take(x, lo, axis=axis) * (1 - w) + np.take(x, hi, axis=axis) * w


@op("upsample_bilinear", "resize_bilinear")
def _bilinear(a, out):
    """Output size from the declared output shape; upsample_bilinear uses the recomputed scale
    (in/out), like torch's ``interpolate(size=...)``."""
    x = f32(a["x"])
    if "sampling_mode" in a or "target_size_height" in a:  # resize_bilinear
        mode = str(scalar(a.get("sampling_mode"), "DEFAULT"))
    else:
        align = bool(scalar(a.get("align_corners"), True))
        half = bool(scalar(a.get("half_pixel_centers"), not align))
        mode = "STRICT_ALIGN_CORNERS" if align else ("UNALIGN_CORNERS" if half else "ASYMMETRIC")
    oh, ow = out[0].shape[-2:]
    if None in (oh, ow):
        raise NotImplementedError("bilinear resize to a dynamic size")
    return _lerp_axis(_lerp_axis(x, x.ndim - 2, oh, mode), x.ndim - 1, ow, mode)
