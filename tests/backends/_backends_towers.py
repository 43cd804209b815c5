"""Tiny export-ready towers for backend tests, following the edgeclip.models contract.

They exist so backend tests do not depend on ``edgeclip.models``; they deliberately use
the constructs that have broken converters before (ANCHORS.md): ``scaled_dot_product_attention``
over a packed qkv projection split with ``unflatten``, ``F.normalize`` (``linalg_vector_norm``),
conv + BatchNorm + depthwise conv, an int32 token input with a float-cast argmax EOT gather and
a -1e4 additive causal mask.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TinyViT", "TinyConv", "TinyText", "make_tower", "TOWER_KINDS"]


class _Block(nn.Module):
    """Pre-norm transformer block; ``sdpa`` picks fused SDPA or explicit softmax attention."""

    def __init__(self, width: int, heads: int, sdpa: bool):
        super().__init__()
        self.heads, self.head_dim, self.sdpa = heads, width // heads, sdpa
        self.scale = self.head_dim**-0.5  # a constant, not derived from traced shapes
        self.ln_1 = nn.LayerNorm(width)
        self.in_proj = nn.Linear(width, 3 * width)  # packed q, k, v like nn.MultiheadAttention
        self.out_proj = nn.Linear(width, width)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def attn(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.in_proj(x).unflatten(-1, (3, self.heads, self.head_dim))
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, N, Dh]
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            s = (q @ k.transpose(-1, -2)) * self.scale
            if mask is not None:
                s = s + mask
            y = s.softmax(dim=-1) @ v
        return self.out_proj(y.transpose(1, 2).reshape(b, n, c))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), mask)
        return x + self.mlp(self.ln_2(x))


class TinyViT(nn.Module):
    """float32[B,3,H,W] -> L2-normalized float32[B,D]; SDPA attention, class token."""

    def __init__(self, image_size=32, patch=8, width=64, layers=1, heads=4, dim=32):
        super().__init__()
        self.image_size = image_size
        n = (image_size // patch) ** 2
        self.conv1 = nn.Conv2d(3, width, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(width) * width**-0.5)
        self.positional_embedding = nn.Parameter(torch.randn(n + 1, width) * 0.02)
        self.ln_pre = nn.LayerNorm(width)
        self.blocks = nn.ModuleList(_Block(width, heads, sdpa=True) for _ in range(layers))
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Linear(width, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x).flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(x.shape[0], 1, -1)
        x = self.ln_pre(torch.cat([cls, x], dim=1) + self.positional_embedding)
        for blk in self.blocks:
            x = blk(x)
        return F.normalize(self.proj(self.ln_post(x[:, 0])), dim=-1)

    def example_inputs(self, batch: int = 1) -> tuple[torch.Tensor]:
        return (torch.randn(batch, 3, self.image_size, self.image_size),)


class TinyConv(nn.Module):
    """MobileCLIP-flavoured conv tower: conv/BN/GELU stem, depthwise-separable stages, GAP."""

    def __init__(self, image_size=32, width=32, dim=32):
        super().__init__()
        self.image_size = image_size

        def dw_sep(c_in, c_out, stride):
            return nn.Sequential(
                nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in, bias=False), nn.BatchNorm2d(c_in),
                nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.GELU(),
            )

        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.GELU())
        self.stages = nn.Sequential(dw_sep(width, width, 1), dw_sep(width, 2 * width, 2),
                                    dw_sep(2 * width, 2 * width, 1), dw_sep(2 * width, 4 * width, 2))
        self.head = nn.Linear(4 * width, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x)).mean(dim=(2, 3))
        return F.normalize(self.head(x), dim=-1)

    def example_inputs(self, batch: int = 1) -> tuple[torch.Tensor]:
        return (torch.randn(batch, 3, self.image_size, self.image_size),)


class TinyText(nn.Module):
    """int32[B,L] -> float32[B,D]; explicit attention, -1e4 causal mask, argmax EOT gather."""

    def __init__(self, vocab=64, context=16, width=64, layers=1, heads=4, dim=32):
        super().__init__()
        self.vocab_size, self.context_length = vocab, context
        self.token_embedding = nn.Embedding(vocab, width)
        self.positional_embedding = nn.Parameter(torch.randn(context, width) * 0.02)
        self.blocks = nn.ModuleList(_Block(width, heads, sdpa=False) for _ in range(layers))
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Linear(width, dim, bias=False)
        # fp16-safe additive mask: -1e4, never -inf or finfo.min
        self.register_buffer("attn_mask", torch.full((context, context), -1e4).triu(1), persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(ids.long()) + self.positional_embedding
        for blk in self.blocks:
            x = blk(x, self.attn_mask)
        x = self.ln_final(x)
        eot = ids.float().argmax(dim=-1)  # EOT has the largest id; float argmax converts everywhere
        x = x[torch.arange(x.shape[0]), eot]
        return F.normalize(self.text_projection(x), dim=-1)

    def example_inputs(self, batch: int = 1) -> tuple[torch.Tensor]:
        ids = torch.randint(1, self.vocab_size - 1, (batch, self.context_length), dtype=torch.int32)
        ids[:, -1] = self.vocab_size - 1
        return (ids,)


TOWER_KINDS = {"vit": TinyViT, "conv": TinyConv, "text": TinyText}


def make_tower(kind: str, seed: int = 0) -> nn.Module:
    """A seeded, eval-mode tiny tower; BN statistics are randomized so folding is exercised."""
    torch.manual_seed(seed)
    m = TOWER_KINDS[kind]()
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
    return m.eval()


def tiny_tokenize(captions, vocab: int = 64, context: int = 16):
    """Real captions -> int32 ids for TinyText: characters folded into the small vocab,
    0-padded, the EOT (largest id, ``vocab - 1``) after the last character."""
    import numpy as np

    out = np.zeros((len(captions), context), dtype=np.int32)
    for i, text in enumerate(captions):
        ids = [1 + ord(c) % (vocab - 2) for c in text.lower()][: context - 1]
        out[i, : len(ids)] = ids
        out[i, len(ids)] = vocab - 1
    return out
