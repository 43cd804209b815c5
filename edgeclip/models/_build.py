"""Shared builder: a model config dict -> encoders -> towers -> ``ClipModel`` with facts.

The config is what ``save_model`` writes next to a checkpoint::

    {"format": "edgeclip.model/1", "arch": "builtin:tiny-vit",
     "image": {"kind": "vit", ...}, "text": {"kind": "transformer", ...},
     "preprocess": {"image_size": 64, "mean": [...], "std": [...], "resize_mode": "squash"},
     "tokenizer": {"kind": "openclip-bpe", "context_length": 32}, "logit_scale": 14.29}
"""
from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ._factored import Factored
from ._mci import MCi
from ._bert import BertText
from ._specs import (IMAGE_SPECS, TEXT_SPECS, BertTextSpec, FactoredSpec, MCiSpec, NativeSpec, TextSpec, ViTSpec,
                     spec_from_dict, spec_to_dict)
from ._text import TextTransformer
from ._vit import ViT
from .facts import ModelFacts, count_flops, count_params
from .tokenizers import OpenClipTokenizer, Tokenizer
from .towers import ClipModel, ImageTower, TextTower

__all__ = ["CONFIG_FORMAT", "build_image_encoder", "build_text_encoder", "assemble", "make_facts", "seeded"]

CONFIG_FORMAT = "edgeclip.model/1"
CONFIG_KEYS = ("format", "arch", "image", "text", "preprocess", "tokenizer", "logit_scale", "weights", "seed")


@contextlib.contextmanager
def seeded(seed: int | None):
    """Deterministic init without disturbing the caller's global RNG."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def build_image_encoder(spec, init: bool = True) -> nn.Module:
    if isinstance(spec, ViTSpec):
        enc = ViT(spec)
    elif isinstance(spec, MCiSpec):
        enc = MCi(spec)
    elif isinstance(spec, FactoredSpec):
        enc = Factored(spec)
    elif isinstance(spec, NativeSpec):
        from ._native import native_visual

        return native_visual(spec)
    else:
        raise ConfigError(f"no image encoder for spec {type(spec).__name__}")
    if init:
        enc.init_weights()
    if getattr(spec, "reparameterized", False):
        from .reparam import reparameterize

        reparameterize(enc.eval())
    return enc


def build_text_encoder(spec: TextSpec | BertTextSpec, init: bool = True) -> nn.Module:
    enc = BertText(spec) if isinstance(spec, BertTextSpec) else TextTransformer(spec)
    if init:
        enc.init_weights()
    return enc


def make_facts(image: ImageTower, text: TextTower, tokenizer: Tokenizer, weights: str) -> ModelFacts:
    return ModelFacts(
        image_size=image.image_size, mean=image.mean, std=image.std, resize_mode=image.resize_mode,
        embed_dim=image.embed_dim, context_length=text.context_length, vocab_size=text.vocab_size,
        params_image=count_params(image), params_text=count_params(text),
        flops_image=count_flops(image, image.example_inputs(1)),
        flops_text=count_flops(text, text.example_inputs(1)),
        weights=weights,
    )


def make_towers(image_enc: nn.Module, text_enc: nn.Module, image_spec, text_spec: TextSpec,
                preprocess: dict[str, Any]) -> tuple[ImageTower, TextTower]:
    if image_spec.embed_dim != text_spec.embed_dim:
        raise ConfigError(f"image embed_dim {image_spec.embed_dim} != text embed_dim {text_spec.embed_dim}; "
                          "both towers must map into the same space")
    image = ImageTower(image_enc, image_size=preprocess.get("image_size", image_spec.image_size),
                       embed_dim=image_spec.embed_dim, mean=preprocess["mean"], std=preprocess["std"],
                       resize_mode=preprocess.get("resize_mode", "squash"))
    text = TextTower(text_enc, context_length=text_spec.context_length, vocab_size=text_spec.vocab_size,
                     embed_dim=text_spec.embed_dim, eot_id=text_spec.eot_id, sot_id=text_spec.sot_id,
                     pad_id=text_spec.pad_id)
    return image, text


def finish(image: ImageTower, text: TextTower, tokenizer: Tokenizer, *, config: dict[str, Any],
           logit_scale: float, uri: str, weights: str) -> ClipModel:
    """Check the tokenizer fits the text tower, compute facts, return the model (eval mode)."""
    if tokenizer.context_length != text.context_length:
        raise ConfigError(f"tokenizer context length {tokenizer.context_length} != text tower "
                          f"context length {text.context_length}")
    if tokenizer.vocab_size > text.vocab_size:
        raise ConfigError(f"tokenizer vocab {tokenizer.vocab_size} exceeds the text embedding table "
                          f"({text.vocab_size} rows)")
    image.eval()
    text.eval()
    facts = make_facts(image, text, tokenizer, weights)
    return ClipModel(image=image, text=text, tokenizer=tokenizer, facts=facts,
                     logit_scale=float(logit_scale), uri=uri, config=config)


def assemble(config: dict[str, Any], *, uri: str, weights: str = "random-init", seed: int | None = None,
             tokenizer: Tokenizer | None = None, init: bool = True) -> ClipModel:
    """Build a ``ClipModel`` from a full model config (random weights from ``seed``)."""
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise ConfigError(f"model config has unknown keys {unknown}; valid keys: {list(CONFIG_KEYS)}")
    for key in ("image", "text", "preprocess"):
        if key not in config:
            raise ConfigError(f"model config lacks {key!r}; valid keys: {list(CONFIG_KEYS)}")
    ispec = spec_from_dict(config["image"], IMAGE_SPECS, "image tower")
    tspec = spec_from_dict(config["text"], TEXT_SPECS, "text tower")
    with seeded(seed):
        image_enc = build_image_encoder(ispec, init=init)
        text_enc = build_text_encoder(tspec, init=init)
    image, text = make_towers(image_enc, text_enc, ispec, tspec, config["preprocess"])
    if tokenizer is None:
        tcfg = config.get("tokenizer") or {"kind": "openclip-bpe", "context_length": tspec.context_length}
        if tcfg.get("kind") != "openclip-bpe":
            raise ConfigError(f"model config names tokenizer {tcfg.get('kind')!r} but no tokenizer files "
                              "were found; save the model with save_model to write them")
        tokenizer = OpenClipTokenizer(int(tcfg.get("context_length", tspec.context_length)))
    full = dict(config, format=CONFIG_FORMAT, image=spec_to_dict(ispec), text=spec_to_dict(tspec))
    full.setdefault("logit_scale", 1 / 0.07)
    return finish(image, text, tokenizer, config=full, logit_scale=full["logit_scale"], uri=uri, weights=weights)


def with_weights(model: ClipModel, weights: str) -> ClipModel:
    model.facts = replace(model.facts, weights=weights)
    return model
