"""What a model is: preprocessing, sizes, parameter counts and FLOPs, weights provenance.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on one input (batch 1), which
counts 2 FLOPs per multiply-add of matmuls and convolutions (the convention of published CLIP
figures: ViT-B/32 image tower 8.82 GFLOP). Elementwise ops, softmax and norms are not counted.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["ModelFacts", "count_params", "count_flops"]


@dataclass(frozen=True)
class ModelFacts:
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize_mode: str            # "squash" | "shortest" (center-crop to square, then resize)
    embed_dim: int
    context_length: int
    vocab_size: int
    params_image: int
    params_text: int
    flops_image: int            # per image, 2 x multiply-adds
    flops_text: int             # per caption of context_length tokens
    weights: str                # "random-init" | "pretrained:TAG" | "file:sha256:HEX"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def count_flops(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> int:
    """FLOPs of one forward pass (2 per multiply-add), counted by FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = module.training
    module.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            module(*inputs)
    finally:
        module.train(was_training)
    return int(counter.get_total_flops())
