"""Rewrite the ops XNNPACK has no kernel for into ops it has, so ExecuTorch lowers whole towers.

ExecuTorch 1.5's XNNPACK partitioner takes neither ``layer_norm`` nor a ``sum`` over the last
dim (the L2 normalization at the end of every tower): left outside, each one splits the graph
into another delegate call and runs on a portable (reference-loop) kernel. Both become means over
the last dim, lowered as a Linear with a constant 1/C row (one XNNPACK FC kernel) or, with
``mean="reduce"``, as XNNPACK's rank-4 ``mean`` over the two inner dims. The maths is the same
(fp32 throughout); the partitioner then sees one region per tower. A rank-4 attention
``matmul`` becomes a rank-3 ``bmm`` (the stock decomposition goes through ``expand_copy``),
an ``expand`` to the shape a tensor already has becomes a view, and two transposes in a row become
one.
"""
from __future__ import annotations

import functools
import math

__all__ = ["xnnpack_friendly"]


def _mean_last(x, mean_as: str):
    """Mean over the last dim, keepdim. ``fc``: a Linear with a constant 1/C row, one XNNPACK
    fully-connected kernel. ``reduce``: a rank-4 mean over dims (2, 3), XNNPACK's ``Mean (ND)``
    plus the NCHW/NHWC transposes its channels-last pass puts around every rank-4 tensor.
    Profiled on four LayerNorm+Linear pairs at ViT-B's [1, 50, 768] (ETDump, 1 thread): the 8
    means took 0.27 ms as Reduce2 kernels against 1.08 ms for the four 768x768 GEMMs; as FC
    kernels 0.06-0.13 ms, and the 16 transposes were gone."""
    import torch

    lead, c = x.shape[:-1], x.shape[-1]
    if mean_as == "fc":  # constant_prop_pass in xnnpack_friendly makes the row a static weight
        return torch.nn.functional.linear(x, torch.full((1, c), 1.0 / c, dtype=x.dtype))
    n = math.prod(lead) if lead else 1
    return x.reshape(n, 1, 1, c).mean(dim=(2, 3), keepdim=True).reshape(*lead, 1)


def _layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5, cudnn_enable=True, *, mean_as="fc"):
    import torch

    if len(normalized_shape) != 1:  # not a transformer LN: keep the stock decomposition
        return NotImplemented
    d = x - _mean_last(x, mean_as)
    y = d * torch.rsqrt(_mean_last(d * d, mean_as) + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def _sum_dim(x, dim, keepdim=False, *, dtype=None, mean_as="fc"):
    dims = [d % x.dim() for d in (dim if isinstance(dim, (list, tuple)) else [dim])]
    if dims != [x.dim() - 1] or dtype is not None or x.dim() < 1 or not x.dtype.is_floating_point:
        return NotImplemented
    y = _mean_last(x, mean_as) * x.shape[-1]
    return y if keepdim else y.squeeze(-1)


def _mean_dim(x, dim, keepdim=False, *, dtype=None, mean_as="fc"):
    """Means XNNPACK lacks: a rank-4 pool without ``keepdim`` (conv towers' global pooling)
    and a mean over the last dim of any rank (token pooling)."""
    dims = sorted(d % x.dim() for d in (dim if isinstance(dim, (list, tuple)) else [dim]))
    if dtype is not None or not x.dtype.is_floating_point:
        return NotImplemented
    if x.dim() == 4 and dims == [2, 3] and not keepdim:
        return x.mean(dim=(2, 3), keepdim=True).reshape(x.shape[0], x.shape[1])
    if dims == [x.dim() - 1] and x.dim() != 4:
        y = _mean_last(x, mean_as)
        return y if keepdim else y.squeeze(-1)
    return NotImplemented


def _vector_norm(x, ord=2, dim=None, keepdim=False, *, dtype=None, mean_as="fc"):
    """``F.normalize``'s L2 norm over the last dim without ``pow``/``sum``."""
    import torch

    last = dim is not None and [d % x.dim() for d in (dim if isinstance(dim, (list, tuple)) else [dim])] == [x.dim() - 1]
    if ord != 2 or not last or dtype is not None:
        return NotImplemented
    y = torch.sqrt(_mean_last(x * x, mean_as) * x.shape[-1])
    return y if keepdim else y.squeeze(-1)


def _expand(x, size, *, implicit=False):
    """An ``expand`` that changes nothing (a class token for batch 1) as a view."""
    want = [x.shape[i - (len(size) - x.dim())] if s == -1 else s for i, s in enumerate(size)]
    if len(size) != x.dim() or list(x.shape) != want:
        return NotImplemented
    return x.view(x.shape)


def _matmul(a, b):
    """Rank-4 ``matmul`` with equal batch dims (attention) as a rank-3 ``bmm``: the stock
    decomposition broadcasts through ``expand_copy``, which XNNPACK does not take."""
    if a.dim() != 4 or b.dim() != 4 or a.shape[:2] != b.shape[:2]:
        return NotImplemented
    n0, n1 = a.shape[:2]
    y = a.reshape(n0 * n1, a.shape[2], a.shape[3]).bmm(b.reshape(n0 * n1, b.shape[2], b.shape[3]))
    return y.reshape(n0, n1, y.shape[1], y.shape[2])


def _sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    """Fused attention as explicit bmm/softmax: the stock decomposition guards fully masked
    rows with ``any``/``where``/``full_like`` and scales by ``mul.Scalar``, none delegable."""
    import torch

    if dropout_p or is_causal or enable_gqa or q.dim() != 4 or (attn_mask is not None and attn_mask.dtype == torch.bool):
        return NotImplemented
    s = _matmul(q * (scale if scale is not None else q.shape[-1] ** -0.5), k.transpose(-1, -2))
    if attn_mask is not None:
        s = s + attn_mask
    return _matmul(torch.softmax(s, dim=-1), v)


def xnnpack_friendly(ep, mean: str = "fc"):
    """``ExportedProgram`` -> the same program with the ops above rewritten; a decomposition
    that returns ``NotImplemented`` (a case it does not cover) leaves the op to the stock path.
    ``mean``: how a mean over the last dim is lowered (``_mean_last``)."""
    import torch

    if mean not in ("fc", "reduce"):
        from ..errors import ConfigError
        raise ConfigError(f"executorch option xnnpack_mean: {mean!r} is not one of 'fc', 'reduce'")
    aten = torch.ops.aten
    means = {op: functools.partial(fn, mean_as=mean) for op, fn in (
        (aten.layer_norm.default, _layer_norm), (aten.sum.dim_IntList, _sum_dim), (aten.mean.dim, _mean_dim),
        (aten.linalg_vector_norm.default, _vector_norm))}
    table = {**means, aten.expand.default: _expand, aten.matmul.default: _matmul,
             aten.scaled_dot_product_attention.default: _sdpa}
    ep = _fold_permutes(ep.run_decompositions(table))
    return _fold_constants(ep) if mean == "fc" else ep


def _permutation(node, aten):
    """The dim order a ``transpose``/``permute`` node applies, or None for any other node."""
    if getattr(node, "op", None) != "call_function" or node.target not in (aten.permute.default, aten.transpose.int):
        return None
    rank = len(node.meta["val"].shape)
    if node.target == aten.permute.default:
        return [d % rank for d in node.args[1]]
    p = list(range(rank))
    a, b = node.args[1] % rank, node.args[2] % rank
    p[a], p[b] = p[b], p[a]
    return p


def _op_name(node) -> str:
    """``quantize_per_tensor`` for ``quantized_decomposed.quantize_per_tensor.default``."""
    parts = str(node.target).split(".") if getattr(node, "op", None) == "call_function" else []
    return parts[-2] if len(parts) > 1 else ""  # "" for python callables (operator.getitem)


def _per_tensor_qdq(node):
    """``node`` is a per-tensor dequantize of a per-tensor quantize, each used once: elementwise,
    so the pair commutes with a permute. Returns the quantize node, else None."""
    if _op_name(node) != "dequantize_per_tensor" or len(node.users) != 1:
        return None
    q = node.args[0]
    return q if _op_name(q) == "quantize_per_tensor" and len(q.users) == 1 else None


def _fold_permutes(ep):
    """A transpose of a transpose (attention's ``k.transpose(1, 2)`` then ``.transpose(-1, -2)``)
    as one permute, also across the per-tensor quantize/dequantize pair static int8 puts between
    them: XNNPACK runs each permute as its own Transpose kernel, one pass over the data each."""
    import torch

    aten = torch.ops.aten
    g = ep.graph_module.graph
    folded = moved = 0
    for n in list(g.nodes):
        outer = _permutation(n, aten)
        if outer is None:
            continue
        mid, q = n.args[0], _per_tensor_qdq(n.args[0])
        src = q.args[0] if q is not None else mid
        inner = _permutation(src, aten)
        if inner is None or len(src.users) != 1:
            continue
        order = [inner[i] for i in outer]  # permute(permute(x, p1), p2) == permute(x, p1[p2])
        if q is not None:  # x -> q -> dq -> permute(order): the pair now sees x's layout
            q.args = (src.args[0], *q.args[1:])
            base, moved = mid, moved + 1
        else:
            base = src.args[0]
        if order == sorted(order):
            n.replace_all_uses_with(base)
        else:
            with g.inserting_before(n):
                new = g.call_function(aten.permute.default, (base, order))
            new.meta = dict(n.meta)
            n.replace_all_uses_with(new)
        g.erase_node(n)
        g.erase_node(src)
        folded += 1
    if not folded:
        return ep
    g.lint()
    ep.graph_module.recompile()
    # a moved quantize pair's metadata still has the permuted shape: re-trace to refresh it
    return ep.run_decompositions({}) if moved else ep


def _fold_constants(ep):
    """Fold the 1/C rows (``full``) into constants, so XNNPACK takes their Linear as a static-weight
    FC. Quantization primitives are never folded: a weight's int8 -> float dequantize must stay
    the pattern the XNNPACK partitioner quantizes on."""
    from executorch.exir.operator.util import _QUANT_PRIMITIVES
    from executorch.exir.passes.constant_prop_pass import constant_prop_pass

    quant = {n.target for n in ep.graph.nodes if n.op == "call_function" and "quant" in str(n.target).lower()}
    return constant_prop_pass(ep, custom_skip_targets=quant | set(_QUANT_PRIMITIVES))
