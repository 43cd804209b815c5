"""Export-ready CLIP ViT image encoder (no preprocessing, no final L2 norm: the tower adds those)."""
from __future__ import annotations

import torch
from torch import nn

from ._layers import Block, init_transformer_
from ._specs import ViTSpec, block_dims

__all__ = ["ViT"]


class ViT(nn.Module):
    """``float32[B,3,S,S] -> float32[B,embed_dim]`` (unnormalized), the open_clip/OpenAI layout."""

    def __init__(self, spec: ViTSpec):
        super().__init__()
        if spec.image_size % spec.patch_size:
            raise ValueError(f"image_size {spec.image_size} is not a multiple of patch_size {spec.patch_size}")
        self.spec = spec
        w = spec.width
        grid = spec.image_size // spec.patch_size
        self.patch_embed = nn.Conv2d(3, w, spec.patch_size, stride=spec.patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(w))
        self.pos_embed = nn.Parameter(torch.zeros(grid * grid + 1, w))
        self.ln_pre = nn.LayerNorm(w, eps=spec.ln_eps) if spec.ln_pre else nn.Identity()
        self.blocks = nn.ModuleList(
            Block(w, h, spec.mlp_ratio, spec.act, spec.ln_eps, spec.layer_scale, head_dim=hd, mlp_hidden=m)
            for h, hd, m in block_dims(spec)
        )
        self.ln_post = nn.LayerNorm(w, eps=spec.ln_eps)
        self.proj = nn.Linear(w, spec.embed_dim, bias=False)

    def init_weights(self) -> None:
        init_transformer_(self)
        scale = self.spec.width ** -0.5
        nn.init.normal_(self.patch_embed.weight, std=0.02)
        nn.init.normal_(self.class_embedding, std=scale)
        nn.init.normal_(self.pos_embed, std=scale)
        nn.init.normal_(self.proj.weight, std=scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)                      # [B, W, g, g]
        b, w = x.shape[0], x.shape[1]
        x = x.reshape(b, w, -1).transpose(1, 2)      # [B, g*g, W]
        cls = self.class_embedding.reshape(1, 1, w).expand(b, 1, w)
        x = torch.cat([cls, x], dim=1) + self.pos_embed
        x = self.ln_pre(x)
        for blk in self.blocks:
            x = blk(x)
        return self.proj(self.ln_post(x[:, 0]))
