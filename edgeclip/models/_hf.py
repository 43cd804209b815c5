"""Hugging Face ``transformers.CLIPModel`` -> export-ready towers (weights copied).

HF's CLIP layout is the OpenAI one with separate q/k/v projections, so both towers map onto
this package's ``ViT`` / ``TextTransformer`` key for key.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, InputError
from ._build import finish, make_towers
from ._specs import TextSpec, ViTSpec, spec_to_dict
from ._text import TextTransformer
from ._vit import ViT
from .tokenizers import HFTokenizer, OpenClipTokenizer, Tokenizer

__all__ = ["load_hf", "from_hf"]

_ACTS = {"quick_gelu": "quick_gelu", "gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _act(cfg) -> str:
    try:
        return _ACTS[cfg.hidden_act]
    except KeyError:
        raise ConfigError(f"HF CLIP activation {cfg.hidden_act!r} is not supported; known: {sorted(_ACTS)}") from None


def _layers_state(layers, out: dict[str, torch.Tensor]) -> None:
    names = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "self_attn.q_proj": "attn.q",
             "self_attn.k_proj": "attn.k", "self_attn.v_proj": "attn.v", "self_attn.out_proj": "attn.out",
             "mlp.fc1": "mlp.fc", "mlp.fc2": "mlp.proj"}
    for i, layer in enumerate(layers):
        for src, dst in names.items():
            mod = layer.get_submodule(src)
            out[f"blocks.{i}.{dst}.weight"] = mod.weight
            out[f"blocks.{i}.{dst}.bias"] = mod.bias


def _load(module, sd):
    module.load_state_dict({k: v.detach().clone().float() for k, v in sd.items()}, strict=True)
    return module


def _read_preprocess(source: str | None, image_size: int) -> dict[str, Any]:
    """mean/std from a local ``preprocessor_config.json`` when there is one, else CLIP's."""
    mean, std = _CLIP_MEAN, _CLIP_STD
    if source and (Path(source) / "preprocessor_config.json").is_file():
        cfg = json.loads((Path(source) / "preprocessor_config.json").read_text())
        mean, std = cfg.get("image_mean", mean), cfg.get("image_std", std)
    return {"image_size": image_size, "mean": list(mean), "std": list(std), "resize_mode": "shortest"}


def from_hf(model, tokenizer: Tokenizer, *, uri: str = "hf:custom", weights: str = "random-init",
            source: str | None = None):
    """Wrap a ``transformers.CLIPModel`` into a ``ClipModel`` (weights copied)."""
    model = model.eval()
    vc, tc = model.config.vision_config, model.config.text_config
    embed_dim = model.config.projection_dim
    vm, tm = model.vision_model, model.text_model
    ispec = ViTSpec(image_size=vc.image_size, patch_size=vc.patch_size, width=vc.hidden_size,
                    layers=vc.num_hidden_layers, heads=vc.num_attention_heads,
                    mlp_ratio=vc.intermediate_size / vc.hidden_size, embed_dim=embed_dim, act=_act(vc),
                    ln_eps=vc.layer_norm_eps)
    emb = vm.embeddings
    isd = {"patch_embed.weight": emb.patch_embedding.weight, "class_embedding": emb.class_embedding,
           "pos_embed": emb.position_embedding.weight, "ln_pre.weight": vm.pre_layrnorm.weight,
           "ln_pre.bias": vm.pre_layrnorm.bias, "ln_post.weight": vm.post_layernorm.weight,
           "ln_post.bias": vm.post_layernorm.bias, "proj.weight": model.visual_projection.weight}
    _layers_state(vm.encoder.layers, isd)
    # eos_token_id == 2 marks configs from before transformers PR #24773: HF then pools at the
    # largest id, which for CLIP's BPE is the tokenizer's end-of-text token.
    eot = tokenizer.eot_id if tc.eos_token_id in (None, 2) else int(tc.eos_token_id)
    tspec = TextSpec(context_length=tc.max_position_embeddings, vocab_size=tc.vocab_size, width=tc.hidden_size,
                     layers=tc.num_hidden_layers, heads=tc.num_attention_heads,
                     mlp_ratio=tc.intermediate_size / tc.hidden_size, embed_dim=embed_dim, act=_act(tc),
                     ln_eps=tc.layer_norm_eps, causal=True, eot_id=eot, sot_id=tokenizer.sot_id,
                     pad_id=tokenizer.pad_id)
    temb = tm.embeddings
    tsd = {"token_embedding.weight": temb.token_embedding.weight, "pos_embed": temb.position_embedding.weight,
           "ln_final.weight": tm.final_layer_norm.weight, "ln_final.bias": tm.final_layer_norm.bias,
           "proj.weight": model.text_projection.weight}
    _layers_state(tm.encoder.layers, tsd)
    image_enc, text_enc = _load(ViT(ispec), isd), _load(TextTransformer(tspec), tsd)
    preprocess = _read_preprocess(source, vc.image_size)
    image, text = make_towers(image_enc, text_enc, ispec, tspec, preprocess)
    config = {"arch": uri, "image": spec_to_dict(ispec), "text": spec_to_dict(tspec), "preprocess": preprocess,
              "tokenizer": {"kind": tokenizer.kind, "context_length": tokenizer.context_length},
              "logit_scale": float(model.logit_scale.exp().item())}
    return finish(image, text, tokenizer, config=config, logit_scale=config["logit_scale"], uri=uri,
                  weights=weights)


def load_hf(model_id: str):
    """``hf:ID`` (a Hub repo id, or a local folder written by ``save_pretrained``)."""
    from transformers import CLIPModel

    try:
        model = CLIPModel.from_pretrained(model_id)
    except Exception as e:  # offline, unknown repo, missing or foreign files: all land here
        raise InputError(
            f"could not load Hugging Face CLIP {model_id!r} ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
            "where there is network run `huggingface-cli download <id> --local-dir DIR` and use hf:DIR, "
            "or use a checkpoint saved with edgeclip as file:PATH") from e
    ctx = model.config.text_config.max_position_embeddings
    tokenizer: Tokenizer
    try:
        tokenizer = HFTokenizer.from_pretrained(model_id, ctx)
    except InputError:
        if model.config.text_config.vocab_size != 49408:
            raise
        tokenizer = OpenClipTokenizer(ctx)  # no tokenizer files: CLIP's BPE is the one with this vocab
    local = Path(model_id)
    if (local / "model.safetensors").is_file():  # a local folder: name the exact bytes loaded
        from .._io import sha256_path

        weights = f"file:sha256:{sha256_path(local / 'model.safetensors')}"
    else:
        weights = f"pretrained:hf:{model_id}"
    return from_hf(model, tokenizer, uri=f"hf:{model_id}", weights=weights,
                   source=model_id if local.is_dir() else None)
