"""Export-friendly transformer pieces shared by the image and text encoders.

Written out by hand (separate q/k/v linears, matmul, softmax) instead of
``nn.MultiheadAttention`` / ``scaled_dot_product_attention`` because converters
(litert-torch, coremltools) break on those (ANCHORS.md "Pitfalls").
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "l2_normalize", "QuickGELU", "make_act", "LayerScale", "Attention", "Block", "MASK_VALUE",
    "init_transformer_",
]

# Additive mask value that stays finite in fp16 (max 65504) yet underflows exp() to 0 in fp32.
MASK_VALUE = -1e4


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """L2-normalize the last dim with rsqrt: ``F.normalize``/``linalg_vector_norm`` break converters."""
    return x * torch.rsqrt((x * x).sum(-1, keepdim=True).clamp_min(1e-12))


class QuickGELU(nn.Module):
    """OpenAI CLIP's sigmoid approximation of GELU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


_ACTS = {
    "gelu": lambda: nn.GELU(),
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "quick_gelu": QuickGELU,
}


def make_act(name: str) -> nn.Module:
    try:
        return _ACTS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(sorted(_ACTS))}") from None


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float = 1e-5):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Attention(nn.Module):
    """Multi-head self-attention with explicit ops and an optional additive mask.

    ``head_dim`` defaults to ``width // heads``; a pruned block keeps its teacher's head dim, so
    ``heads * head_dim`` may differ from ``width``."""

    def __init__(self, width: int, heads: int, head_dim: int | None = None):
        super().__init__()
        if head_dim is None:
            if width % heads:
                raise ValueError(f"width {width} is not divisible by heads {heads}")
            head_dim = width // heads
        self.heads, self.head_dim = heads, head_dim
        self.scale = head_dim ** -0.5
        inner = heads * head_dim
        self.q = nn.Linear(width, inner)
        self.k = nn.Linear(width, inner)
        self.v = nn.Linear(width, inner)
        self.out = nn.Linear(inner, width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, _ = x.shape
        h, hd = self.heads, self.head_dim
        q = self.q(x).reshape(b, n, h, hd).transpose(1, 2)  # [B, H, N, hd]
        k = self.k(x).reshape(b, n, h, hd).transpose(1, 2)
        v = self.v(x).reshape(b, n, h, hd).transpose(1, 2)
        s = torch.matmul(q * self.scale, k.transpose(-1, -2))
        if mask is not None:
            s = s + mask
        a = torch.softmax(s, dim=-1)
        o = torch.matmul(a, v).transpose(1, 2).reshape(b, n, h * hd)
        return self.out(o)


class Block(nn.Module):
    """Pre-norm transformer block (CLIP layout: ln_1, attn, ln_2, mlp; optional layer scale)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, act: str = "gelu",
                 ln_eps: float = 1e-5, layer_scale: bool = False, head_dim: int | None = None,
                 mlp_hidden: int | None = None):
        super().__init__()
        hidden = int(round(width * mlp_ratio)) if mlp_hidden is None else int(mlp_hidden)
        self.ln_1 = nn.LayerNorm(width, eps=ln_eps)
        self.attn = Attention(width, heads, head_dim)
        self.ls_1 = LayerScale(width) if layer_scale else nn.Identity()
        self.ln_2 = nn.LayerNorm(width, eps=ln_eps)
        self.mlp = nn.Sequential()
        self.mlp.add_module("fc", nn.Linear(width, hidden))
        self.mlp.add_module("act", make_act(act))
        self.mlp.add_module("proj", nn.Linear(hidden, width))
        self.ls_2 = LayerScale(width) if layer_scale else nn.Identity()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.ls_1(self.attn(self.ln_1(x), mask))
        return x + self.ls_2(self.mlp(self.ln_2(x)))


def init_transformer_(module: nn.Module, std: float = 0.02) -> None:
    """Deterministic CLIP-like init (the caller seeds the RNG)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=std)
