"""Arithmetic MIL ops: elementwise, activations, reductions, normalization, linear algebra.

Semantics follow coremltools' op definitions (``converters/mil/mil/ops/defs/iOS15..18``),
including their defaults (``rsqrt``/``log``/``inverse`` epsilons, ``layer_norm`` epsilon 1e-5).
Whole-tensor numpy: matmuls go to BLAS; convolutions are im2col + matmul (dense) or one
vectorized multiply-add per kernel tap (grouped/depthwise), never a loop over elements.
"""
from __future__ import annotations

import numpy as np

from ._table import axes_of, f32, op, scalar

__all__: list[str] = []  # registers into _table.OPS on import


# ---- elementwise ---------------------------------------------------------------------------

def _binary(fn):
    return lambda a, out: fn(f32(a["x"]), f32(a["y"]))


for _name, _fn in {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "real_div": np.divide,
    "maximum": np.maximum, "minimum": np.minimum, "pow": np.power, "mod": np.mod,
    "floor_div": lambda x, y: np.floor_divide(x, y),
    "equal": np.equal, "not_equal": np.not_equal, "greater": np.greater,
    "greater_equal": np.greater_equal, "less": np.less, "less_equal": np.less_equal,
    "logical_and": np.logical_and, "logical_or": np.logical_or, "logical_xor": np.logical_xor,
}.items():
    op(_name)(_binary(_fn))


def _erf(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf  # scipy ships with scikit-image / scikit-learn

    return erf(x).astype(np.float32, copy=False)


def _sigmoid(x):
    return 0.5 * (np.tanh(0.5 * x) + 1.0)  # overflow-free logistic


def _unary(fn):
    return lambda a, out: fn(f32(a["x"]))


for _name, _fn in {
    "abs": np.abs, "exp": np.exp, "tanh": np.tanh, "sigmoid": _sigmoid,
    "relu": lambda x: np.maximum(x, 0), "relu6": lambda x: np.clip(x, 0, 6), "erf": _erf,
    "sin": np.sin, "cos": np.cos, "floor": np.floor, "ceil": np.ceil, "round": np.round,
    "sign": np.sign, "square": np.square, "sqrt": np.sqrt, "logical_not": np.logical_not,
    "silu": lambda x: x * _sigmoid(x), "softplus": lambda x: np.logaddexp(x, 0),
    "identity": lambda x: x,
}.items():
    op(_name)(_unary(_fn))


@op("rsqrt")
def _rsqrt(a, out):
    return 1.0 / np.sqrt(f32(a["x"]) + np.float32(scalar(a.get("epsilon"), 1e-12)))


@op("inverse")
def _inverse(a, out):
    return 1.0 / (f32(a["x"]) + np.float32(scalar(a.get("epsilon"), 1e-4)))


@op("log")
def _log(a, out):
    return np.log(f32(a["x"]) + np.float32(scalar(a.get("epsilon"), 1e-45)))


@op("clip")
def _clip(a, out):
    return np.clip(f32(a["x"]), scalar(a["alpha"]), scalar(a["beta"]))


@op("leaky_relu")
def _leaky_relu(a, out):
    x = f32(a["x"])
    return np.where(x >= 0, x, np.float32(scalar(a.get("alpha"), 0.01)) * x)


@op("elu")
def _elu(a, out):
    x = f32(a["x"])
    return np.where(x > 0, x, np.float32(scalar(a.get("alpha"), 1.0)) * np.expm1(np.minimum(x, 0)))


@op("sigmoid_hard")
def _sigmoid_hard(a, out):
    x = f32(a["x"])
    return np.clip(scalar(a.get("alpha"), 0.2) * x + scalar(a.get("beta"), 0.5), 0, 1)


@op("gelu")
def _gelu(a, out):
    x = f32(a["x"])
    mode = scalar(a.get("mode"), "EXACT")
    if mode == "TANH_APPROXIMATION":
        return 0.5 * x * (1 + np.tanh(np.float32(np.sqrt(2 / np.pi)) * (x + 0.044715 * x ** 3)))
    if mode == "SIGMOID_APPROXIMATION":
        return x * _sigmoid(1.702 * x)
    return 0.5 * x * (1 + _erf(x * np.float32(1 / np.sqrt(2))))


@op("softmax")
def _softmax(a, out):
    x = f32(a["x"])
    axis = int(scalar(a.get("axis"), -1))
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# ---- reductions ----------------------------------------------------------------------------

def _reduce(fn):
    def run(a, out):
        x = f32(a["x"])
        return fn(x, axis=axes_of(a.get("axes"), x.ndim), keepdims=bool(scalar(a.get("keep_dims"), False)))
    return run


for _name, _fn in {
    "reduce_sum": np.sum, "reduce_mean": np.mean, "reduce_max": np.max, "reduce_min": np.min,
    "reduce_prod": np.prod,
    "reduce_sum_square": lambda x, axis, keepdims: np.sum(x * x, axis=axis, keepdims=keepdims),
    "reduce_l1_norm": lambda x, axis, keepdims: np.sum(np.abs(x), axis=axis, keepdims=keepdims),
    "reduce_l2_norm": lambda x, axis, keepdims: np.sqrt(np.sum(x * x, axis=axis, keepdims=keepdims)),
    "reduce_log_sum_exp": lambda x, axis, keepdims: np.log(np.sum(np.exp(x), axis=axis, keepdims=keepdims)),
}.items():
    op(_name)(_reduce(_fn))


def _arg(fn):
    def run(a, out):
        x = f32(a["x"])
        axis = int(scalar(a.get("axis"), -1))
        r = fn(x, axis=axis)  # ties: first index, like the reference
        return np.expand_dims(r, axis) if scalar(a.get("keep_dims"), False) else r
    return run


op("reduce_argmax")(_arg(np.argmax))
op("reduce_argmin")(_arg(np.argmin))


# ---- normalization -------------------------------------------------------------------------

def _along(p, x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """gamma/beta of shape x.shape[axes] reshaped to broadcast against x."""
    shape = [x.shape[i] if i in axes else 1 for i in range(x.ndim)]
    return f32(p).reshape(shape)


def _affine(y: np.ndarray, a, reshape) -> np.ndarray:
    """``y * gamma + beta`` (each optional), ``reshape`` making them broadcast against ``y``."""
    if a.get("gamma") is not None:
        y = y * reshape(a["gamma"])
    if a.get("beta") is not None:
        y = y + reshape(a["beta"])
    return y


@op("layer_norm")
def _layer_norm(a, out):
    x = f32(a["x"])
    axes = axes_of(a.get("axes"), x.ndim) or tuple(range(x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    d = x - mean
    y = d / np.sqrt((d * d).mean(axis=axes, keepdims=True) + np.float32(scalar(a.get("epsilon"), 1e-5)))
    return _affine(y, a, lambda p: _along(p, x, axes))


@op("batch_norm")
def _batch_norm(a, out):
    x = f32(a["x"])
    c = (1, -1) + (1,) * (x.ndim - 2)
    inv = 1.0 / np.sqrt(f32(a["variance"]).reshape(c) + np.float32(scalar(a.get("epsilon"), 1e-5)))
    y = (x - f32(a["mean"]).reshape(c)) * inv
    return _affine(y, a, lambda p: f32(p).reshape(c))


@op("instance_norm")
def _instance_norm(a, out):
    x = f32(a["x"])
    axes = tuple(range(2, x.ndim))
    d = x - x.mean(axis=axes, keepdims=True)
    y = d / np.sqrt((d * d).mean(axis=axes, keepdims=True) + np.float32(scalar(a.get("epsilon"), 1e-5)))
    c = (1, -1) + (1,) * (x.ndim - 2)
    return _affine(y, a, lambda p: f32(p).reshape(c))


@op("l2_norm")
def _l2_norm(a, out):
    """x / sqrt(sum(x^2) + eps) over the last three dims (leading dims are batch)."""
    x = f32(a["x"])
    axes = tuple(range(x.ndim - 3, x.ndim))
    return x / np.sqrt(np.sum(x * x, axis=axes, keepdims=True) + np.float32(scalar(a.get("epsilon"), 1e-6)))


# ---- linear algebra ------------------------------------------------------------------------

def _x_wt(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x @ w.T`` for x ``[..., in]`` and w ``[out, in]`` as one 2-D GEMM.

    With few rows (tokens of one image) OpenBLAS runs ``w @ x.T`` 3-9x faster than
    ``x @ w.T`` here, so the product is taken in whichever order suits the shape.
    """
    x2 = x.reshape(-1, x.shape[-1])
    y = (w @ x2.T).T if x2.shape[0] <= 512 else x2 @ w.T
    return y.reshape(*x.shape[:-1], w.shape[0])


@op("linear")
def _linear(a, out):
    y = _x_wt(f32(a["x"]), f32(a["weight"]))
    return y + f32(a["bias"]) if a.get("bias") is not None else y


@op("matmul")
def _matmul(a, out):
    x, y = f32(a["x"]), f32(a["y"])
    if scalar(a.get("transpose_x"), False) and x.ndim > 1:
        x = np.swapaxes(x, -1, -2)
    if scalar(a.get("transpose_y"), False) and y.ndim > 1:
        y = np.swapaxes(y, -1, -2)
    return np.matmul(x, y)


def _pads(a, spatial, kernel, strides, dilations) -> list[tuple[int, int]]:
    """(before, after) padding per spatial dim for pad_type valid | same | same_lower | custom."""
    kind = scalar(a.get("pad_type"), "valid")
    if kind == "custom":
        p = _ints(a.get("pad"), [0] * 2 * len(spatial))
        return [(p[2 * i], p[2 * i + 1]) for i in range(len(spatial))]
    if kind in ("same", "same_lower"):
        pads = []
        for n, k, s, d in zip(spatial, kernel, strides, dilations):
            total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
            lo = total // 2 if kind == "same" else total - total // 2
            pads.append((lo, total - lo))
        return pads
    return [(0, 0)] * len(spatial)


def _windows(x: np.ndarray, kernel, strides, dilations, out_hw):
    """Views [N, C, OH, OW] of x for each kernel tap (i, j)."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, strides, dilations, out_hw
    for i in range(kh):
        for j in range(kw):
            yield i, j, x[:, :, i * dh: i * dh + (oh - 1) * sh + 1: sh, j * dw: j * dw + (ow - 1) * sw + 1: sw]


def _ints(v, default) -> list[int]:
    return list(default) if v is None else [int(i) for i in np.asarray(v).reshape(-1)]


def _conv_geometry(a, x, kernel):
    nd = len(kernel)
    strides, dilations = (_ints(a.get(k), [1] * nd) for k in ("strides", "dilations"))
    pads = _pads(a, x.shape[2:], kernel, strides, dilations)
    x = np.pad(x, [(0, 0), (0, 0), *pads]) if any(p != (0, 0) for p in pads) else x
    out = [(n - (k - 1) * d - 1) // s + 1 for n, k, s, d in zip(x.shape[2:], kernel, strides, dilations)]
    return x, strides, dilations, out


@op("conv")
def _conv(a, out):
    x, w = f32(a["x"]), f32(a["weight"])
    one_d = x.ndim == 3
    if one_d:  # conv1d as conv2d over a unit height
        x, w = x[:, :, None, :], w[:, :, None, :]
        a = dict(a, **{k: [1, *np.asarray(a[k]).reshape(-1)] for k in ("strides", "dilations") if a.get(k) is not None})
        if a.get("pad") is not None:
            a["pad"] = [0, 0, *np.asarray(a["pad"]).reshape(-1)]
    if x.ndim != 4:
        raise NotImplementedError(f"conv over {x.ndim - 2} spatial dims (1D and 2D are supported)")
    groups = int(scalar(a.get("groups"), 1))
    cout, cin_g, kh, kw = w.shape
    x, strides, dil, (oh, ow) = _conv_geometry(a, x, (kh, kw))
    n = x.shape[0]
    if groups == 1:  # im2col: one [N*OH*OW, C*kh*kw] x [C*kh*kw, Cout] GEMM
        cols = np.stack([v for _, _, v in _windows(x, (kh, kw), strides, dil, (oh, ow))], axis=2)
        cols = cols.transpose(0, 3, 4, 1, 2).reshape(n * oh * ow, cin_g * kh * kw)
        y = _x_wt(cols, w.reshape(cout, -1)).reshape(n, oh, ow, cout).transpose(0, 3, 1, 2)
    else:  # grouped / depthwise: per tap, a batched [Cout_g, Cin_g] x [Cin_g, OH*OW] product
        og = cout // groups
        wg = w.reshape(groups, og, cin_g, kh, kw)
        y = np.zeros((n, groups, og, oh, ow), np.float32)
        for i, j, v in _windows(x, (kh, kw), strides, dil, (oh, ow)):
            v = v.reshape(n, groups, cin_g, oh, ow)
            if cin_g == 1:
                y += v * wg[None, :, :, 0, i, j, None, None]
            else:
                y += np.einsum("goc,ngchw->ngohw", wg[:, :, :, i, j], v, optimize=True)
        y = y.reshape(n, cout, oh, ow)
    if a.get("bias") is not None:
        y = y + f32(a["bias"]).reshape(1, -1, 1, 1)
    return y[:, :, 0, :] if one_d else np.ascontiguousarray(y)


def _pool(reduce_max: bool):
    def run(a, out):
        x = f32(a["x"])
        if x.ndim != 4:
            raise NotImplementedError(f"pooling over {x.ndim - 2} spatial dims (2D is supported)")
        kernel = [int(v) for v in np.asarray(a["kernel_sizes"]).reshape(-1)]
        if scalar(a.get("ceil_mode"), False):
            raise NotImplementedError("pooling with ceil_mode=True")
        fill = -np.inf if reduce_max else 0.0
        xp, strides, dil, (oh, ow) = _conv_geometry(dict(a, dilations=None), x, kernel)
        if xp is not x and reduce_max:
            pads = _pads(a, x.shape[2:], kernel, strides, dil)
            xp = np.pad(x, [(0, 0), (0, 0), *pads], constant_values=fill)
        acc = np.full((x.shape[0], x.shape[1], oh, ow), fill, np.float32)
        for _, _, v in _windows(xp, kernel, strides, dil, (oh, ow)):
            acc = np.maximum(acc, v) if reduce_max else acc + v
        if reduce_max:
            return acc
        if scalar(a.get("exclude_padding_from_average"), False) and xp is not x:
            ones = np.pad(np.ones((1, 1, *x.shape[2:]), np.float32),
                          [(0, 0), (0, 0), *_pads(a, x.shape[2:], kernel, strides, dil)])
            cnt = sum(v for _, _, v in _windows(ones, kernel, strides, dil, (oh, ow)))
            return acc / cnt
        return acc / np.float32(kernel[0] * kernel[1])
    return run


op("avg_pool")(_pool(False))
op("max_pool")(_pool(True))
