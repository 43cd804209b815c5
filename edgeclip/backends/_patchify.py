"""Export-time rewrite of a ViT's patch embedding (an RGB ``Conv2d`` with kernel == stride,
no padding) into patch extraction + MatMul, for onnxruntime's int8 modes.

Why: onnxruntime quantizes a Conv into ConvInteger, whose x86 kernels are far slower than its
MatMulInteger. Measured side by side on ViT-B/32 (2 AVX2 cores), int8-dynamic went from 55.0 to
48.5 ms, and fp32 was unchanged (88.0 vs 88.1 ms). Other runtimes gained nothing: LiteRT
int8-dynamic 74.0 vs 73.4 ms. Rewriting a conv tower's 1x1 convs the same way made MobileCLIP2-S0
fp32 slower (66 to 86 ms), so only the patch embedding is rewritten. The module keeps its NCHW
output, so the graph around it is unchanged.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["PatchMatMul", "patchify_patch_embeddings"]


class PatchMatMul(nn.Module):
    """``Conv2d(3, cout, k, stride=k)`` as reshape -> MatMul; same output [B, cout, H/k, W/k]."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.k = conv.kernel_size[0]
        # rows ordered (cin, kh, kw) like the conv weight's flattening
        self.weight = nn.Parameter(conv.weight.detach().reshape(conv.out_channels, -1).t().contiguous(),
                                   requires_grad=False)
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        k = self.k
        gh, gw = h // k, w // k
        p = x.reshape(b, c, gh, k, gw, k).permute(0, 2, 4, 1, 3, 5).reshape(b, gh * gw, c * k * k)
        y = p @ self.weight
        if self.bias is not None:
            y = y + self.bias
        return y.transpose(1, 2).reshape(b, -1, gh, gw)


def _is_patch_embedding(m: nn.Module) -> bool:
    if type(m) is not nn.Conv2d or m.groups != 1 or m.in_channels != 3 or m.padding_mode != "zeros":
        return False
    k = m.kernel_size
    return (k[0] == k[1] > 1 and tuple(m.stride) == tuple(k) and not any(m.padding)
            and all(d == 1 for d in m.dilation))


def patchify_patch_embeddings(tower: nn.Module) -> tuple[nn.Module, list[str]]:
    """(copy of ``tower`` with each patch-embedding conv as a :class:`PatchMatMul`, their module
    paths); ``tower`` itself when it has none. The input module is never modified."""
    names = [n for n, m in tower.named_modules() if _is_patch_embedding(m)]
    if not names:
        return tower, []
    out = copy.deepcopy(tower)
    for name in names:
        parent_name, _, attr = name.rpartition(".")
        parent = out.get_submodule(parent_name) if parent_name else out
        setattr(parent, attr, PatchMatMul(getattr(parent, attr)))
    return out, names
