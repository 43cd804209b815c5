"""Op-level checks of the MIL interpreter against torch and hand-computed cases (no conversion)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgeclip.verify.mil import supported_ops
from edgeclip.verify.mil._package import Var
from edgeclip.verify.mil._table import OPS


def run(op_type: str, out=(), **args):
    return OPS.get(op_type)(args, list(out))


def rnd(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


_R = np.random.default_rng(0)
_X = _R.standard_normal((2, 3, 4, 5)).astype(np.float32)
_Y = _R.standard_normal((2, 3, 4, 5)).astype(np.float32)
_POS = np.abs(_X) + 0.1
_V3 = [_R.random(3).astype(np.float32) for _ in range(3)]
ORACLE_CASES = (
    [(n, dict(x=_X, y=_Y)) for n in ("add", "sub", "mul", "real_div", "maximum", "minimum", "equal", "not_equal",
                                     "greater", "greater_equal", "less", "less_equal", "floor_div", "mod")]
    + [(n, dict(x=_X)) for n in ("abs", "exp", "tanh", "sigmoid", "relu", "relu6", "erf", "sin", "cos", "floor",
                                 "ceil", "round", "sign", "square", "softplus", "identity", "gelu")]
    + [(n, dict(x=_X > 0, y=_Y > 0)) for n in ("logical_and", "logical_or", "logical_xor")]
    + [(n, dict(x=_X, axes=[1, -1], keep_dims=k)) for k in (False, True)
       for n in ("reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reduce_prod", "reduce_sum_square",
                 "reduce_l1_norm", "reduce_l2_norm", "reduce_log_sum_exp")]
    + [("pow", dict(x=_POS, y=_Y)), ("sqrt", dict(x=_POS)), ("rsqrt", dict(x=_POS, epsilon=1e-3)),
       ("inverse", dict(x=_POS, epsilon=1e-3)), ("log", dict(x=_POS, epsilon=1e-3)), ("logical_not", dict(x=_X > 0)),
       ("clip", dict(x=_X, alpha=-0.5, beta=0.7)), ("leaky_relu", dict(x=_X, alpha=0.2)),
       ("elu", dict(x=_X, alpha=1.3)), ("sigmoid_hard", dict(x=_X, alpha=0.3, beta=0.4)),
       ("gelu", dict(x=_X, mode="TANH_APPROXIMATION")), ("gelu", dict(x=_X, mode="SIGMOID_APPROXIMATION")),
       ("softmax", dict(x=_X, axis=1)), ("l2_norm", dict(x=_X, epsilon=1e-6)),
       ("layer_norm", dict(x=_X, axes=[1, 3], epsilon=1e-4, gamma=_R.random((3, 5)).astype(np.float32),
                           beta=_R.random((3, 5)).astype(np.float32))),
       ("reduce_argmax", dict(x=_X, axis=2, keep_dims=True)), ("reduce_argmin", dict(x=_X, axis=-1)),
       ("matmul", dict(x=_X, y=_Y, transpose_y=True)),
       ("linear", dict(x=_X, weight=_R.standard_normal((7, 5)).astype(np.float32), bias=_V3[0][:1].repeat(7))),
       ("reshape", dict(x=_X, shape=np.array([0, -1, 2, 0], np.int32))), ("transpose", dict(x=_X, perm=[0, 2, 3, 1])),
       ("concat", dict(values=[_X, _Y], axis=2)), ("stack", dict(values=[_X, _Y], axis=1)),
       ("slice_by_size", dict(x=_X, begin=np.array([0, 1, 1, 0], np.int32), size=np.array([-1, 2, 2, 3], np.int32))),
       ("slice_by_index", dict(x=_X, begin=np.array([0, 2, 0, 1], np.int32), end=np.array([2, 0, 4, 5], np.int32),
                               stride=np.array([1, -1, 2, 2], np.int32))),
       ("squeeze", dict(x=_X[:, :1], axes=[1])), ("expand_dims", dict(x=_X, axes=[0, -1])),
       ("tile", dict(x=_X, reps=[1, 2, 1, 3])),
       ("gather", dict(x=_X, indices=np.array([[3, -1], [0, 2]], np.int32), axis=2)),
       ("gather_along_axis", dict(x=_X, indices=np.ones((2, 3, 4, 2), np.int32), axis=3)),
       ("select", dict(cond=_X > 0, a=_X, b=_Y)), ("cast", dict(x=_X * 10, dtype="int32")),
       ("pad", dict(x=_X, pad=np.array([1, 2, 0, 1], np.int32), mode="constant", constant_val=0.5)),
       ("pad", dict(x=_X, pad=np.array([1, 2, 0, 1], np.int32), mode="reflect")),
       ("pad", dict(x=_X, pad=np.array([1, 2, 0, 1], np.int32), mode="replicate")),
       ("split", dict(x=_X, split_sizes=[1, 3], axis=2)), ("split", dict(x=_X, num_splits=2, axis=0)),
       ("quantize", dict(input=_X, scale=np.float32(0.02), zero_point=np.int8(3), output_dtype="int8"))]
)


@pytest.mark.toolchain
@pytest.mark.parametrize("case", range(len(ORACLE_CASES)), ids=[c[0] for c in ORACLE_CASES])
def test_ops_match_coremltools_value_inference(case):
    """coremltools' own op definitions constant-fold all-const inputs: the reference semantics."""
    ct = pytest.importorskip("coremltools")
    from coremltools.converters.mil.mil import Builder as mb
    from coremltools.converters.mil.mil import Function

    name, kw = ORACLE_CASES[case]
    with Function({}, opset_version=ct.target.iOS17):
        ref = getattr(mb, name)(**kw)
    refs = ref if isinstance(ref, (list, tuple)) else [ref]
    assert all(r.val is not None for r in refs), f"coremltools cannot fold {name}; test it another way"
    mine = OPS.get(name)(kw, [Var(r.name, "fp32", tuple(r.shape)) for r in refs])
    mine = mine if isinstance(mine, tuple) else (mine,)
    assert len(mine) == len(refs)
    for m, r in zip(mine, refs):
        assert np.shape(m) == np.shape(r.val)
        np.testing.assert_allclose(np.asarray(m, np.float64), np.asarray(r.val, np.float64), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("groups,stride,pad_type,pad,dil,k", [
    (1, 1, "valid", None, 1, 3), (1, 2, "custom", [1, 0, 2, 1], 1, 3), (1, 8, "valid", None, 1, 8),
    (4, 1, "same", None, 1, 3), (8, 2, "custom", [1, 1, 1, 1], 1, 3), (2, 1, "same", None, 2, 3),
    (8, 1, "same", None, 1, 7),
])
def test_conv_matches_torch(groups, stride, pad_type, pad, dil, k):
    x, w, b = rnd(2, 8, 13, 11), rnd(16, 8 // groups, k, k, seed=1), rnd(16, seed=2)
    y = run("conv", x=x, weight=w, bias=b, strides=[stride, stride], pad_type=pad_type, pad=pad,
            dilations=[dil, dil], groups=groups)
    xt = torch.from_numpy(x)
    if pad_type == "custom":
        xt = F.pad(xt, (pad[2], pad[3], pad[0], pad[1]))
    ref = F.conv2d(xt, torch.from_numpy(w), torch.from_numpy(b), stride=stride, dilation=dil, groups=groups,
                   padding="same" if pad_type == "same" else 0)
    np.testing.assert_allclose(y, ref.numpy(), rtol=1e-4, atol=1e-4)


def test_conv1d_and_pools_match_torch():
    x, w = rnd(1, 4, 20), rnd(6, 4, 3, seed=1)
    y = run("conv", x=x, weight=w, strides=[2], pad_type="custom", pad=[1, 1], dilations=[1], groups=1)
    np.testing.assert_allclose(y, F.conv1d(torch.from_numpy(x), torch.from_numpy(w), stride=2, padding=1).numpy(),
                               rtol=1e-4, atol=1e-5)
    x = rnd(2, 3, 9, 9)
    for kind, fn in (("avg_pool", F.avg_pool2d), ("max_pool", F.max_pool2d)):
        y = run(kind, x=x, kernel_sizes=[3, 3], strides=[2, 2], pad_type="custom", pad=[1, 1, 1, 1],
                exclude_padding_from_average=False)
        kw = {"count_include_pad": True} if kind == "avg_pool" else {}
        np.testing.assert_allclose(y, fn(torch.from_numpy(x), 3, 2, 1, **kw).numpy(), rtol=1e-5, atol=1e-6)
    y = run("avg_pool", x=x, kernel_sizes=[3, 3], strides=[2, 2], pad_type="custom", pad=[1, 1, 1, 1],
            exclude_padding_from_average=True)
    ref = F.avg_pool2d(torch.from_numpy(x), 3, 2, 1, count_include_pad=False)
    np.testing.assert_allclose(y, ref.numpy(), rtol=1e-5, atol=1e-6)


def test_normalization_activation_softmax_match_torch():
    x, g, b = rnd(2, 5, 16), rnd(16, seed=1), rnd(16, seed=2)
    np.testing.assert_allclose(run("layer_norm", x=x, gamma=g, beta=b, axes=[-1], epsilon=1e-5),
                               F.layer_norm(*map(torch.from_numpy, (x,)), (16,), torch.from_numpy(g),
                                            torch.from_numpy(b)).numpy(), rtol=1e-4, atol=1e-5)
    xc = rnd(2, 6, 4, 4)
    stats = [rnd(6, seed=i) for i in range(4)]
    stats[1] = np.abs(stats[1]) + 0.1
    ref = F.batch_norm(torch.from_numpy(xc), *(torch.from_numpy(s) for s in stats[:2]),
                       torch.from_numpy(stats[2]), torch.from_numpy(stats[3]), eps=1e-3)
    y = run("batch_norm", x=xc, mean=stats[0], variance=stats[1], gamma=stats[2], beta=stats[3], epsilon=1e-3)
    np.testing.assert_allclose(y, ref.numpy(), rtol=1e-4, atol=1e-5)
    t = torch.from_numpy(x)
    np.testing.assert_allclose(run("gelu", x=x), F.gelu(t).numpy(), atol=1e-6)
    np.testing.assert_allclose(run("gelu", x=x, mode="TANH_APPROXIMATION"), F.gelu(t, approximate="tanh").numpy(),
                               atol=1e-6)
    np.testing.assert_allclose(run("softmax", x=x * 50, axis=1), torch.softmax(t * 50, 1).numpy(), atol=1e-6)
    np.testing.assert_allclose(run("rsqrt", x=np.abs(x)), 1 / np.sqrt(np.abs(x) + 1e-12), rtol=1e-6)
    np.testing.assert_allclose(run("silu", x=x), F.silu(t).numpy(), atol=1e-6)


def test_slicing_gathers_and_shapes():
    x = np.arange(2 * 3 * 4).reshape(2, 3, 4).astype(np.float32)
    y = run("slice_by_index", x=x, begin=[0, 1, 0], end=[0, 3, 4], stride=[1, 1, 2],
            begin_mask=[True, False, False], end_mask=[True, False, False], squeeze_mask=[False, False, False])
    np.testing.assert_array_equal(y, x[:, 1:3, 0:4:2])
    y = run("slice_by_index", x=x, begin=[0, -1, 0], end=[0, 0, 0], begin_mask=[True, False, True],
            end_mask=[True, False, True], squeeze_mask=[False, True, False])
    np.testing.assert_array_equal(y, x[:, -1])
    np.testing.assert_array_equal(run("reshape", x=x, shape=[0, -1, 2]), x.reshape(2, 6, 2))
    np.testing.assert_array_equal(run("gather", x=x, indices=np.array([2, -1]), axis=1), x[:, [2, 2]])
    idx = np.array([[1], [0]])
    np.testing.assert_array_equal(run("gather", x=x, indices=idx, axis=1, batch_dims=1),
                                  np.stack([x[0, [1]], x[1, [0]]]))
    np.testing.assert_array_equal(run("gather_along_axis", x=x, indices=np.zeros((2, 1, 4), np.int32), axis=1),
                                  x[:, :1])
    a, b = np.ones((2, 2), np.float32), np.zeros((2, 2), np.float32)
    np.testing.assert_array_equal(run("concat", values=[a, b], axis=1, interleave=True),
                                  [[1, 0, 1, 0], [1, 0, 1, 0]])
    parts = run("split", out=[None, None], x=x, axis=2, split_sizes=[1, 3])
    assert [p.shape for p in parts] == [(2, 3, 1), (2, 3, 3)]
    assert run("reduce_argmax", x=np.array([[1, 5, 5], [7, 0, 1]], np.float32), axis=-1).tolist() == [1, 0]


def test_quantize_dequantize_per_channel():
    x = rnd(2, 3, 4) * 3
    scale, zp = np.array([0.05, 0.1, 0.02], np.float32), np.array([0, 3, -2], np.int8)
    q = run("quantize", input=x, scale=scale, zero_point=zp, axis=1, output_dtype="int8")
    assert q.dtype == np.int8
    ref = np.clip(np.rint(x / scale[None, :, None]) + zp[None, :, None], -128, 127)
    np.testing.assert_array_equal(q, ref)
    d = run("dequantize", input=q, scale=scale, zero_point=zp, axis=1)
    np.testing.assert_allclose(d, (ref - zp[None, :, None]) * scale[None, :, None], rtol=1e-6)


def test_lut_to_dense_ios18_documented_example():
    """Case 1 of coremltools' iOS18 constexpr_lut_to_dense docstring: 2 per-group 2-bit LUTs."""
    idx = np.array([2, 3, 3, 0, 1, 0, 3, 0, 2, 1, 0, 3], np.uint8).reshape(6, 2)
    lut = np.array([1, 5, 9, 13, 2, 10, 18, 26], np.float16).reshape(2, 1, 4, 1)
    y = run("constexpr_lut_to_dense", indices=idx, lut=lut)
    np.testing.assert_array_equal(y, [[9, 13], [13, 1], [5, 1], [26, 2], [18, 10], [2, 26]])
    # vector palettization: each index selects 2 values laid out along axis 0
    lut_v = np.arange(8, dtype=np.float32).reshape(1, 1, 4, 2)
    y = run("constexpr_lut_to_dense", indices=np.array([[0, 3]], np.uint8), lut=lut_v, vector_axis=0)
    np.testing.assert_array_equal(y, [[0, 6], [1, 7]])


def test_lut_to_dense_ios16_packed_indices():
    """iOS16 form: 2-bit indices i0..i3 packed LSB-first into one byte, flat LUT, explicit shape."""
    packed = np.array([0b00_11_10_01, 0b00000010], np.uint8)  # i0=1, i1=2, i2=3, i3=0, i4=2
    lut = np.array([10, 20, 30, 40], np.float32)
    y = run("constexpr_lut_to_dense", indices=packed, lut=lut, shape=np.array([5], np.uint32))
    np.testing.assert_array_equal(y, [20, 30, 40, 10, 30])


def test_blockwise_and_affine_dequantize():
    data = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], np.int8)
    scale = np.array([[0.5, 2.0]], np.float32)           # blocks of 2 columns, one row block
    offset = np.array([[1, 0]], np.int8)
    y = run("constexpr_blockwise_shift_scale", data=data, scale=scale, offset=offset)
    np.testing.assert_allclose(y, [[0, 0.5, 6, 8], [2, 2.5, 14, 16]])
    y = run("constexpr_affine_dequantize", quantized_data=data, zero_point=np.array([1, 2], np.int8),
            scale=np.array([0.5, 0.25], np.float32), axis=0)
    np.testing.assert_allclose(y, [[0, 0.5, 1, 1.5], [0.75, 1, 1.25, 1.5]])


def test_sparse_ops_restore_dense():
    mask = np.array([[1, 0, 1], [0, 1, 0]], np.uint8)
    dense = run("constexpr_sparse_to_dense", nonzero_data=np.array([1, 2, 3], np.float32), mask=mask)
    np.testing.assert_array_equal(dense, [[1, 0, 2], [0, 3, 0]])
    m, nz = run("constexpr_lut_to_sparse", indices_mask=mask, indices_nonzero_data=np.array([3, 0, 1], np.uint8),
                lut=np.array([5, 6, 7, 8], np.float32).reshape(1, 1, 4, 1))
    np.testing.assert_array_equal(nz, [8, 5, 6])
    np.testing.assert_array_equal(m, mask)


def test_interpreter_rounds_fp16_results():
    from edgeclip.verify.mil._interp import conform

    v = conform(np.array([1.0001, 70000.0], np.float32), Var("y", "fp16", (2,)), "test")
    assert v.dtype == np.float32 and v[0] == np.float32(np.float16(1.0001)) and np.isinf(v[1])
    assert conform(np.array([1.0001], np.float32), Var("y", "fp32", (1,)), "t")[0] == np.float32(1.0001)


def test_op_table_covers_every_op_our_towers_emit():
    """Op types seen when converting tiny-vit/tiny-mci/teacher-vit image+text in every CoreML quant
    mode (iOS17 and iOS18 targets, per-block and per-grouped-channel compression included)."""
    seen = {"add", "cast", "concat", "const", "constexpr_affine_dequantize", "constexpr_blockwise_shift_scale",
            "constexpr_lut_to_dense", "conv", "dequantize", "equal", "gather", "gather_along_axis", "gelu",
            "greater_equal", "layer_norm", "linear", "matmul", "maximum", "mul", "quantize", "reduce_argmax",
            "reduce_mean", "reduce_sum", "reshape", "rsqrt", "select", "slice_by_index", "softmax", "squeeze",
            "tile", "transpose"}
    assert seen <= set(supported_ops())
    assert {"constexpr_cast", "constexpr_sparse_to_dense", "constexpr_lut_to_sparse",
            "constexpr_sparse_blockwise_shift_scale"} <= set(supported_ops())


def test_bilinear_resizes_match_torch_and_documented_grids():
    from edgeclip.verify.mil._ops_tensor import _grid

    x = rnd(1, 3, 9, 12)
    for align in (False, True):
        y = run("upsample_bilinear", out=[Var("y", "fp32", (1, 3, 4, 20))], x=x, scale_factor_height=0.5,
                scale_factor_width=1.7, align_corners=align)
        ref = F.interpolate(torch.from_numpy(x), size=(4, 20), mode="bilinear", align_corners=align)
        np.testing.assert_allclose(y, ref.numpy(), rtol=1e-5, atol=1e-5)
    # grid points listed in coremltools' resize_bilinear notes (Xin = 2)
    expected = {"UNALIGN_CORNERS": [0, 0.1, 0.5, 0.9, 1], "STRICT_ALIGN_CORNERS": [0, 0.25, 0.5, 0.75, 1],
                "DEFAULT": [0, 0.4, 0.8, 1, 1], "OFFSET_CORNERS": [0.1, 0.3, 0.5, 0.7, 0.9]}
    for mode, pts in expected.items():
        np.testing.assert_allclose(_grid(2, 5, mode), pts, atol=1e-9, err_msg=mode)


def test_gather_nd_and_instance_norm():
    x = rnd(2, 3, 4, 5)
    np.testing.assert_array_equal(run("gather_nd", x=x, indices=np.array([[0, 1], [1, 2]])), x[[0, 1], [1, 2]])
    g, b = rnd(3, seed=1), rnd(3, seed=2)
    ref = F.instance_norm(torch.from_numpy(x), weight=torch.from_numpy(g), bias=torch.from_numpy(b), eps=1e-5)
    np.testing.assert_allclose(run("instance_norm", x=x, gamma=g, beta=b, epsilon=1e-5), ref.numpy(), atol=1e-5)
