"""A small MobileCLIP-style (MCi / FastViT) conv image encoder with reparameterizable blocks.

Training-time blocks carry parallel branches (kxk conv+BN x N, a small-kernel conv+BN "scale"
branch, an identity BN); ``reparameterize()`` folds them into one conv with bias, as in
MobileOne (Vasu et al. 2023) and timm's ``fastvit``. Layout: MobileOne stem (stride 4), RepMixer
stages separated by large-kernel stride-2 patch embeddings, a conv expansion head, average pool
and a linear projection.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._specs import MCiSpec

__all__ = ["MobileOneBlock", "RepMixer", "MCi"]


def _conv_bn(cin: int, cout: int, k: int, stride: int, groups: int) -> nn.Sequential:
    seq = nn.Sequential()
    seq.add_module("conv", nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False))
    seq.add_module("bn", nn.BatchNorm2d(cout))
    return seq


def _fuse(weight: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    t = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return weight * t.reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * t


class MobileOneBlock(nn.Module):
    """Sum of branches -> activation. ``reparameterize()`` leaves a single ``Conv2d``."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
                 branches: int = 1, scale_kernel: int | None = 1, skip: bool = True, act: bool = True):
        super().__init__()
        self.cin, self.cout, self.k, self.stride, self.groups = cin, cout, k, stride, groups
        self.skip = nn.BatchNorm2d(cin) if skip and cin == cout and stride == 1 else None
        use_scale = scale_kernel is not None and scale_kernel < k
        self.scale = _conv_bn(cin, cout, scale_kernel, stride, groups) if use_scale else None
        self.convs = nn.ModuleList(_conv_bn(cin, cout, k, stride, groups) for _ in range(branches))
        self.fused: nn.Conv2d | None = None
        self.act = nn.GELU() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return self.act(self.fused(x))
        out = self.skip(x) if self.skip is not None else 0
        if self.scale is not None:
            out = out + self.scale(x)
        for c in self.convs:
            out = out + c(x)
        return self.act(out)

    def fused_kernel(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The single (kernel, bias) equal to the sum of all branches (eval-mode BN stats)."""
        if self.fused is not None:
            return self.fused.weight, self.fused.bias
        k, per_group = self.k, self.cin // self.groups
        ref = next(self.parameters())
        weight = ref.new_zeros(self.cout, per_group, k, k)
        bias = ref.new_zeros(self.cout)
        if self.skip is not None:
            ident = ref.new_zeros(self.cin, per_group, k, k)
            rows = torch.arange(self.cin)
            ident[rows, rows % per_group, k // 2, k // 2] = 1.0
            w, b = _fuse(ident, self.skip)
            weight, bias = weight + w, bias + b
        if self.scale is not None:
            w, b = _fuse(self.scale.conv.weight, self.scale.bn)
            p = (k - w.shape[-1]) // 2
            weight, bias = weight + F.pad(w, [p, p, p, p]), bias + b
        for c in self.convs:
            w, b = _fuse(c.conv.weight, c.bn)
            weight, bias = weight + w, bias + b
        return weight, bias

    @torch.no_grad()
    def reparameterize(self) -> None:
        if self.fused is not None:
            return
        weight, bias = self.fused_kernel()
        conv = nn.Conv2d(self.cin, self.cout, self.k, self.stride, self.k // 2, groups=self.groups, bias=True)
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
        self.fused = conv
        self.skip, self.scale, self.convs = None, None, nn.ModuleList()


class RepMixer(nn.Module):
    """Token mixer ``x + ls * (mixer(x) - norm(x))`` with depthwise convs; folds to one dw conv."""

    def __init__(self, dim: int, k: int = 3, branches: int = 1, ls_init: float = 1e-1):
        super().__init__()
        self.dim, self.k = dim, k
        self.norm = MobileOneBlock(dim, dim, k, groups=dim, branches=0, scale_kernel=None, act=False)
        self.mixer = MobileOneBlock(dim, dim, k, groups=dim, branches=branches, act=False)
        self.layer_scale = nn.Parameter(torch.full((dim, 1, 1), ls_init))
        self.fused: nn.Conv2d | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return self.fused(x)
        return x + self.layer_scale * (self.mixer(x) - self.norm(x))

    @torch.no_grad()
    def reparameterize(self) -> None:
        if self.fused is not None:
            return
        wm, bm = self.mixer.fused_kernel()
        wn, bn = self.norm.fused_kernel()
        ident = torch.zeros_like(wm)
        ident[:, 0, self.k // 2, self.k // 2] = 1.0
        ls = self.layer_scale
        conv = nn.Conv2d(self.dim, self.dim, self.k, 1, self.k // 2, groups=self.dim, bias=True)
        conv.weight.copy_(ident + ls.unsqueeze(-1) * (wm - wn))
        conv.bias.copy_(ls.reshape(-1) * (bm - bn))
        self.fused = conv
        del self.mixer, self.norm, self.layer_scale


class ConvFFN(nn.Module):
    """Depthwise 7x7 conv+BN, then 1x1 expand, GELU, 1x1 project (FastViT ConvMlp)."""

    def __init__(self, dim: int, ratio: float):
        super().__init__()
        hidden = int(dim * ratio)
        self.dw = MobileOneBlock(dim, dim, 7, groups=dim, branches=1, scale_kernel=None, skip=False, act=False)
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.dw(x))))


class RepMixerBlock(nn.Module):
    def __init__(self, dim: int, mlp_ratio: float, branches: int, ls_init: float = 1e-1):
        super().__init__()
        self.mixer = RepMixer(dim, branches=branches, ls_init=ls_init)
        self.ffn = ConvFFN(dim, mlp_ratio)
        self.layer_scale = nn.Parameter(torch.full((dim, 1, 1), ls_init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mixer(x)
        return x + self.layer_scale * self.ffn(x)


def _patch_embed(cin: int, cout: int, branches: int) -> nn.Sequential:
    """Stride-2 large-kernel (7x7, 3x3 small branch) grouped conv, then a 1x1 MobileOne block."""
    return nn.Sequential(
        MobileOneBlock(cin, cout, 7, stride=2, groups=cin, branches=1, scale_kernel=3),
        MobileOneBlock(cout, cout, 1, branches=branches),
    )


class MCi(nn.Module):
    """``float32[B,3,S,S] -> float32[B,embed_dim]`` (unnormalized)."""

    def __init__(self, spec: MCiSpec):
        super().__init__()
        if len(spec.widths) != len(spec.depths):
            raise ValueError(f"widths {spec.widths} and depths {spec.depths} differ in length")
        self.spec = spec
        c0, nb = spec.widths[0], spec.branches
        self.stem = nn.Sequential(
            MobileOneBlock(3, c0, 3, stride=2, branches=nb),
            MobileOneBlock(c0, c0, 3, stride=2, groups=c0, branches=nb),
            MobileOneBlock(c0, c0, 1, branches=nb),
        )
        stages = []
        for i, (c, d) in enumerate(zip(spec.widths, spec.depths)):
            stage = nn.Sequential()
            if i > 0:
                stage.add_module("down", _patch_embed(spec.widths[i - 1], c, nb))
            for j in range(d):
                stage.add_module(f"block{j}", RepMixerBlock(c, spec.mlp_ratio, nb))
            stages.append(stage)
        self.stages = nn.Sequential(*stages)
        c = spec.widths[-1]
        self.head_conv = MobileOneBlock(c, 2 * c, 3, groups=c, branches=nb)
        self.proj = nn.Linear(2 * c, spec.embed_dim, bias=False)

    def init_weights(self) -> None:
        """Random but non-trivial BN statistics, so reparameterization is exercised for real."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.uniform_(m.weight, 0.5, 1.5)
                nn.init.normal_(m.bias, std=0.1)
                m.running_mean.normal_(std=0.1)
                m.running_var.uniform_(0.5, 2.0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=m.in_features ** -0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head_conv(self.stages(self.stem(x)))
        return self.proj(x.mean(dim=(2, 3)))
