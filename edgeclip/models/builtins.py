"""The builtin architectures (``builtin:NAME``), random-init from a seed.

They follow timm's pattern: each is a short function over one shared builder, registered in
``MODELS``; their text towers use open_clip's BPE tokenizer with a short context (32 tokens;
teacher-factored's is 112, since a Chinese caption takes up to 105 byte-level tokens), unless a
recipe's ``pretrain.tokenizer`` gives the teacher one trained on its captions.
"""
from __future__ import annotations

import copy
from typing import Any

from ..registry import Registry
from ._build import assemble
from .towers import ClipModel

__all__ = ["MODELS", "builtin_config", "build_builtin", "CLIP_MEAN", "CLIP_STD"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

MODELS: Registry = Registry("model")


def _text(width: int, layers: int, heads: int, embed_dim: int, context_length: int = 32) -> dict[str, Any]:
    return {"kind": "transformer", "context_length": context_length, "width": width, "layers": layers,
            "heads": heads, "embed_dim": embed_dim}


def _merge(base: dict[str, Any], over: dict[str, Any] | None) -> dict[str, Any]:
    out = dict(base)
    out.update(over or {})
    return out


def _builtin(name: str, image: dict[str, Any], text: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Shared builder: defaults + overrides -> a full model config (what save_model writes)."""
    over = dict(overrides)
    image, text = _merge(image, over.pop("image", None)), _merge(text, over.pop("text", None))
    embed_dim = over.pop("embed_dim", None)
    if embed_dim is not None:
        image["embed_dim"] = text["embed_dim"] = int(embed_dim)
    cfg: dict[str, Any] = {
        "arch": f"builtin:{name}", "image": image, "text": text,
        "preprocess": {"image_size": image["image_size"], "mean": list(CLIP_MEAN), "std": list(CLIP_STD),
                       "resize_mode": "squash"},
        "tokenizer": {"kind": "openclip-bpe", "context_length": text["context_length"]},
        "logit_scale": 1 / 0.07, "seed": 0,
    }
    for key, value in over.items():
        cfg[key] = _merge(cfg[key], value) if isinstance(cfg.get(key), dict) and isinstance(value, dict) else value
    cfg["preprocess"]["image_size"] = image["image_size"]
    cfg["tokenizer"]["context_length"] = text["context_length"]
    return cfg


@MODELS.register("tiny-vit")
def tiny_vit(**overrides) -> dict[str, Any]:
    """ViT 64px patch 8, width 64 x 3 layers; text width 64 x 2 layers, context 32; embed 64."""
    image = {"kind": "vit", "image_size": 64, "patch_size": 8, "width": 64, "layers": 3, "heads": 4,
             "embed_dim": 64}
    return _builtin("tiny-vit", image, _text(64, 2, 4, 64), overrides)


@MODELS.register("tiny-mci")
def tiny_mci(**overrides) -> dict[str, Any]:
    """MobileCLIP-style conv tower (MobileOne stem, RepMixer stages), 64px; text width 64 x 2; embed 64."""
    image = {"kind": "mci", "image_size": 64, "widths": [32, 64, 128], "depths": [1, 1, 2], "branches": 2,
             "embed_dim": 64}
    return _builtin("tiny-mci", image, _text(64, 2, 4, 64), overrides)


@MODELS.register("teacher-vit")
def teacher_vit(**overrides) -> dict[str, Any]:
    """Default teacher: ViT 64px patch 8, width 128 x 4 layers; text width 128 x 4 layers; embed 128."""
    image = {"kind": "vit", "image_size": 64, "patch_size": 8, "width": 128, "layers": 4, "heads": 4,
             "embed_dim": 128}
    return _builtin("teacher-vit", image, _text(128, 4, 4, 128), overrides)


@MODELS.register("teacher-factored")
def teacher_factored(**overrides) -> dict[str, Any]:
    """Teacher whose image tower is factored (``_factored.py``): a hue-blind outline CNN (global max and
    mean) -> shape slice (64), a bag of colours -> colour slice (64); the teacher-vit text tower
    (width 128 x 4 layers); embed 128. Pretrained with the label prompt loss, it learns held-out shape."""
    # the outline's global mean beside its max: max pooling alone cannot tell one cross from three,
    # and a single-vs-count mix-up was the teacher's commonest retrieval error
    image = {"kind": "factored", "image_size": 64, "outline_widths": [16, 32, 64, 128], "colour_widths": [32, 64],
             "colour_stride": 2, "outline_pool": "max+mean",
             "shape_dim": 64, "colour_dim": 64, "embed_dim": 128}
    # 112 tokens: with CLIP's BPE the world's Chinese captions take 60 (median) to 105 byte-level
    # tokens, so at 32 every one was cut short; training packs rows by length, so English pays
    # nothing for it. The default recipe trains its own tokenizer instead (pretrain.tokenizer: 48)
    return _builtin("teacher-factored", image, _text(128, 4, 4, 128, context_length=112), overrides)


def builtin_config(name: str, **overrides) -> dict[str, Any]:
    """The full model config of builtin ``name`` with ``overrides`` (``image={...}``, ``text={...}``,
    ``embed_dim=``, ``seed=``, ``logit_scale=`` ...) merged in."""
    return MODELS.get(name)(**copy.deepcopy(overrides))


def build_builtin(name: str, *, seed: int = 0, device: str = "cpu", **overrides) -> ClipModel:
    """A random-init builtin model, deterministic for a seed (e.g. a student of custom width)."""
    cfg = builtin_config(name, seed=seed, **overrides)
    return assemble(cfg, uri=f"builtin:{name}", seed=seed).to(device)
