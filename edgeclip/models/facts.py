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

__all__ = ["ModelFacts", "count_params", "count_flops", "describe", "format_facts"]


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


def describe(uri: str) -> dict[str, Any]:
    """Everything ``edgeclip info URI [--json]`` prints: facts, tokenizer, tower inputs/outputs."""
    from .zoo import load_model

    m = load_model(uri)
    img, txt = m.image.example_inputs(1)[0], m.text.example_inputs(1)[0]
    return {
        "uri": m.uri,
        "arch": m.config.get("arch", m.uri),
        **m.facts.to_dict(),
        "logit_scale": m.logit_scale,
        "tokenizer": m.tokenizer.describe(),
        "inputs": {
            "image": {"shape": list(img.shape), "dtype": str(img.dtype).replace("torch.", "")},
            "text": {"shape": list(txt.shape), "dtype": str(txt.dtype).replace("torch.", "")},
        },
        "output": {"shape": [1, m.facts.embed_dim], "dtype": "float32", "l2_normalized": True},
    }


def _fmt_count(n: int, unit: str) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.2f} {suffix}{unit}"
    return f"{n} {unit}"


def format_facts(d: dict[str, Any]) -> str:
    """A two-column human table of ``describe()``'s dict."""
    tok = d.get("tokenizer", {})
    rows = [
        ("model", d.get("uri", "?")),
        ("weights", d.get("weights", "?")),
        ("image input", f"{d['image_size']}x{d['image_size']} RGB, resize {d['resize_mode']}"),
        ("mean / std", f"{tuple(round(v, 4) for v in d['mean'])} / {tuple(round(v, 4) for v in d['std'])}"),
        ("embedding dim", str(d["embed_dim"])),
        ("text input", f"{d['context_length']} tokens, vocab {d['vocab_size']}"
                       + (f", tokenizer {tok['kind']}" if tok else "")),
        ("image params", _fmt_count(d["params_image"], "")),
        ("text params", _fmt_count(d["params_text"], "")),
        ("image FLOPs", _fmt_count(d["flops_image"], "FLOP") + " per image"),
        ("text FLOPs", _fmt_count(d["flops_text"], "FLOP") + " per caption"),
    ]
    if "logit_scale" in d:
        rows.append(("logit scale", f"{d['logit_scale']:.2f}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
