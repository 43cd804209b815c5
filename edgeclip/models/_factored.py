"""A factored conv image encoder: a hue-blind outline stream and a bag of colours, each in its
own slice of the embedding.

Why (``benchmarks/shape_ceiling.py``, ``benchmarks/shape_streams.py``): in the embedded world
every shape is seen in all colours but one, so any shape feature that can see colour learns
"never orange, so not a square" and fails on the held-out pairs. Here the shape stream sees only
``EdgeMagnitude`` (an outline looks the same in any colour), the colour stream sees 1x1 pixels
(which colours are present, not where or in what shape), and each writes its own slice:
``slices`` names them, so a label loss can train shape prompts against the shape slice alone
(``distill/prompt_loss.py``). The embedding is their concatenation, unnormalized (the tower
normalizes).

Layout, plain ops that every backend runs (conv, BN, ReLU, max pool, linear; the front is a
fixed grouped conv, square, sum, sqrt and a mean):

- outline: ``EdgeMagnitude`` -> conv-BN-ReLU x len(outline_widths) (stride 1, then 2) -> global
  max pool (``outline_pool: max+mean``: and the global mean beside it) -> linear to ``shape_dim``;
- colours: 1x1 conv-ReLU x len(colour_widths), the first with stride ``colour_stride`` (a colour
  covers many pixels, so every 2nd one names them all at a quarter of the cost: at full resolution
  this bag took half the teacher's pretraining time) -> global max pool -> linear to ``colour_dim``;
- context (``context_dim`` > 0): a CLIP ViT on the RGB image -> ``context_dim``, for what the two
  pooled streams cannot say (position, count, relations). It sees colour and shape together, but
  the label loss trains shape prompts to have nothing in its slice, so little of it reaches them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ._specs import FactoredSpec, ViTSpec
from ._vit import ViT

__all__ = ["EdgeMagnitude", "Factored", "MaxMeanPool", "OUTLINE_POOLS"]


class EdgeMagnitude(nn.Module):
    """Per-channel Sobel gradients, their magnitude over the three channels, divided by the
    image's mean magnitude: ``[B, 3, H, W] -> [B, 1, H, W]``, the same for an outline in any colour."""

    def __init__(self):
        super().__init__()
        gx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
        self.register_buffer("kernel", torch.stack([gx, gx.t()]).unsqueeze(1).repeat(3, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = F.conv2d(x, self.kernel, padding=1, groups=3)
        mag = (g * g).sum(1, keepdim=True).add(1e-6).sqrt()
        return mag / mag.mean((2, 3), keepdim=True)


OUTLINE_POOLS = {"max": 1, "max+mean": 2}   # name -> pooled features per channel


class MaxMeanPool(nn.Module):
    """``[B, C, k, k] -> [B, 2C, 1, 1]``: the global max (is an outline there) and the global mean
    (how much of it: max pooling alone cannot tell one cross from three), as plain pool ops."""

    def __init__(self, kernel: int):
        super().__init__()
        self.max, self.mean = nn.MaxPool2d(kernel), nn.AvgPool2d(kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.max(x), self.mean(x)], dim=1)


def _cbr(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class Factored(nn.Module):
    """``float32[B,3,S,S] -> float32[B, embed_dim]`` (unnormalized): shape, colour, context slices."""

    def __init__(self, spec: FactoredSpec):
        super().__init__()
        ow, cw = tuple(spec.outline_widths), tuple(spec.colour_widths)
        if not ow or not cw or min(ow + cw) < 1:
            raise ConfigError(f"factored tower: outline_widths {list(ow)} and colour_widths {list(cw)} need at "
                              "least one positive width each")
        down = 2 ** (len(ow) - 1)
        if spec.image_size % down:
            raise ConfigError(f"factored tower: image_size {spec.image_size} must be a multiple of {down} "
                              f"for {len(ow)} outline stages")
        if spec.colour_stride < 1 or spec.image_size % spec.colour_stride:
            raise ConfigError(f"factored tower: colour_stride {spec.colour_stride} must be >= 1 and divide "
                              f"image_size {spec.image_size}")
        if min(spec.shape_dim, spec.colour_dim) < 1 or spec.context_dim < 0 or \
                spec.shape_dim + spec.colour_dim + spec.context_dim != spec.embed_dim:
            raise ConfigError(f"factored tower: shape_dim {spec.shape_dim} + colour_dim {spec.colour_dim} + "
                              f"context_dim {spec.context_dim} must equal embed_dim {spec.embed_dim} (shape and "
                              "colour >= 1, context >= 0): each stream owns its slice of the embedding")
        self.spec = spec
        layers: list[nn.Module] = [EdgeMagnitude()]
        for i, w in enumerate(ow):
            layers += _cbr(ow[i - 1] if i else 1, w, 2 if i else 1)
        if spec.outline_pool not in OUTLINE_POOLS:
            raise ConfigError(f"factored tower: outline_pool {spec.outline_pool!r}; use one of "
                              f"{', '.join(OUTLINE_POOLS)}")
        pools = OUTLINE_POOLS[spec.outline_pool]
        pool = nn.MaxPool2d(spec.image_size // down) if pools == 1 else MaxMeanPool(spec.image_size // down)
        self.outline = nn.Sequential(*layers, pool, nn.Flatten(1), nn.Linear(pools * ow[-1], spec.shape_dim))
        bag: list[nn.Module] = []
        for i, w in enumerate(cw):
            bag += [nn.Conv2d(cw[i - 1] if i else 3, w, 1, spec.colour_stride if i == 0 else 1), nn.ReLU()]
        self.colours = nn.Sequential(*bag, nn.MaxPool2d(spec.image_size // spec.colour_stride), nn.Flatten(1),
                                     nn.Linear(cw[-1], spec.colour_dim))
        self.context = None
        if spec.context_dim:
            self.context = ViT(ViTSpec(image_size=spec.image_size, patch_size=spec.context_patch,
                                       width=spec.context_width, layers=spec.context_layers,
                                       heads=spec.context_heads, embed_dim=spec.context_dim))

    @property
    def slices(self) -> dict[str, slice]:
        """Which columns of the embedding each stream writes (shape, colour, and context with a ViT)."""
        s, c = self.spec.shape_dim, self.spec.colour_dim
        out = {"shape": slice(0, s), "colour": slice(s, s + c)}
        if self.context is not None:
            out["context"] = slice(s + c, self.spec.embed_dim)
        return out

    def init_weights(self) -> None:
        """PyTorch's default init for the conv streams (kaiming-uniform), the ViT's own for the context."""
        for m in [*self.outline.modules(), *self.colours.modules()]:
            if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
                m.reset_parameters()
        if self.context is not None:
            self.context.init_weights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [self.outline(x), self.colours(x)]
        if self.context is not None:
            parts.append(self.context(x))
        return torch.cat(parts, dim=1)
