"""Hugging Face CLIP-family checkpoints -> export-ready towers (weights copied).

``CLIPModel`` (OpenAI's and TinyCLIP's released format) maps onto this package's ``ViT`` /
``TextTransformer`` key for key. ``AltCLIPModel`` (XLM-R text, DC-CLIP's teacher) and
``ChineseCLIPModel`` (BERT text) share CLIP's vision tower; their text towers become a
``BertText`` (``_bert.py``). The tokenizer is the checkpoint's own (CLIP BPE, sentencepiece
Unigram or WordPiece), exported as tokenizer.json for apps.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, InputError
from ._build import finish, make_towers
from ._bert import BertText
from ._specs import BertTextSpec, TextSpec, ViTSpec, spec_to_dict
from ._text import TextTransformer
from ._vit import ViT
from .tokenizers import HFTokenizer, OpenClipTokenizer, Tokenizer

__all__ = ["load_hf", "from_hf", "HF_FAMILIES"]

_ACTS = {"quick_gelu": "quick_gelu", "gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}
# model_type -> the transformers class that loads it; all three share CLIP's vision tower
HF_FAMILIES = {"clip": "CLIPModel", "altclip": "AltCLIPModel", "chinese_clip": "ChineseCLIPModel"}
BERT_CONTEXT = 77
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
    """mean/std and resize mode from a local ``preprocessor_config.json`` when there is one, else
    CLIP's. HF's processors resize the shortest edge and center-crop (``shortest`` here, the same
    crop) unless ``do_center_crop`` is off, when they resize to the square (``squash``)."""
    cfg: dict[str, Any] = {}
    if source and (Path(source) / "preprocessor_config.json").is_file():
        cfg = json.loads((Path(source) / "preprocessor_config.json").read_text())
    mean, std = cfg.get("image_mean", _CLIP_MEAN), cfg.get("image_std", _CLIP_STD)
    mode = "shortest" if cfg.get("do_center_crop", True) else "squash"
    return {"image_size": image_size, "mean": [float(v) for v in mean], "std": [float(v) for v in std],
            "resize_mode": mode}


def _vision(model) -> tuple[ViTSpec, ViT]:
    """The CLIP ViT every supported family shares (``vision_model`` + ``visual_projection``)."""
    vc, vm = model.config.vision_config, model.vision_model
    spec = ViTSpec(image_size=vc.image_size, patch_size=vc.patch_size, width=vc.hidden_size,
                   layers=vc.num_hidden_layers, heads=vc.num_attention_heads,
                   mlp_ratio=vc.intermediate_size / vc.hidden_size, embed_dim=model.config.projection_dim,
                   act=_act(vc), ln_eps=vc.layer_norm_eps)
    emb = vm.embeddings
    sd = {"patch_embed.weight": emb.patch_embedding.weight, "class_embedding": emb.class_embedding,
          "pos_embed": emb.position_embedding.weight, "ln_pre.weight": vm.pre_layrnorm.weight,
          "ln_pre.bias": vm.pre_layrnorm.bias, "ln_post.weight": vm.post_layernorm.weight,
          "ln_post.bias": vm.post_layernorm.bias, "proj.weight": model.visual_projection.weight}
    _layers_state(vm.encoder.layers, sd)
    return spec, _load(ViT(spec), sd)


def _clip_text(model, tokenizer: Tokenizer) -> tuple[TextSpec, TextTransformer]:
    tc, tm = model.config.text_config, model.text_model
    # eos_token_id == 2 marks configs from before transformers PR #24773: HF then pools at the
    # largest id, which for CLIP's BPE is the tokenizer's end-of-text token.
    eot = tokenizer.eot_id if tc.eos_token_id in (None, 2) else int(tc.eos_token_id)
    spec = TextSpec(context_length=tc.max_position_embeddings, vocab_size=tc.vocab_size, width=tc.hidden_size,
                    layers=tc.num_hidden_layers, heads=tc.num_attention_heads,
                    mlp_ratio=tc.intermediate_size / tc.hidden_size, embed_dim=model.config.projection_dim,
                    act=_act(tc), ln_eps=tc.layer_norm_eps, causal=True, eot_id=eot, sot_id=tokenizer.sot_id,
                    pad_id=tokenizer.pad_id)
    temb = tm.embeddings
    sd = {"token_embedding.weight": temb.token_embedding.weight, "pos_embed": temb.position_embedding.weight,
          "ln_final.weight": tm.final_layer_norm.weight, "ln_final.bias": tm.final_layer_norm.bias,
          "proj.weight": model.text_projection.weight}
    _layers_state(tm.encoder.layers, sd)
    return spec, _load(TextTransformer(spec), sd)


def _bert_text(model, tokenizer: Tokenizer) -> tuple[BertTextSpec, BertText]:
    """AltCLIP's XLM-R (``text_model.roberta`` + pre_LN + transformation) or Chinese-CLIP's BERT."""
    tc = model.config.text_config
    alt = hasattr(model.text_model, "roberta")
    bert = model.text_model.roberta if alt else model.text_model
    # RoBERTa numbers positions from padding_idx + 1; BERT from 0 (see _bert.py)
    offset = int(tc.pad_token_id) + 1 if alt else 0
    ctx = tokenizer.context_length
    if offset + ctx > tc.max_position_embeddings:
        raise ConfigError(f"context length {ctx} needs {offset + ctx} positions; the text tower has "
                          f"{tc.max_position_embeddings}")
    spec = BertTextSpec(context_length=ctx, vocab_size=tc.vocab_size, width=tc.hidden_size,
                        layers=tc.num_hidden_layers, heads=tc.num_attention_heads,
                        mlp_ratio=tc.intermediate_size / tc.hidden_size, embed_dim=model.config.projection_dim,
                        act=_act(tc), ln_eps=tc.layer_norm_eps, pool_ln=alt,
                        pool_dim=int(tc.project_dim) if alt else None, eot_id=tokenizer.eot_id,
                        sot_id=tokenizer.sot_id, pad_id=tokenizer.pad_id)
    emb = bert.embeddings
    pos = emb.position_embeddings.weight[offset:offset + ctx] + emb.token_type_embeddings.weight[0]
    sd = {"token_embedding.weight": emb.word_embeddings.weight, "pos_embed": pos,
          "ln_embed.weight": emb.LayerNorm.weight, "ln_embed.bias": emb.LayerNorm.bias,
          "proj.weight": model.text_projection.weight}
    names = {"attention.self.query": "attn.q", "attention.self.key": "attn.k", "attention.self.value": "attn.v",
             "attention.output.dense": "attn.out", "attention.output.LayerNorm": "ln_1",
             "intermediate.dense": "mlp.fc", "output.dense": "mlp.proj", "output.LayerNorm": "ln_2"}
    layers = getattr(bert.encoder, "layer", None) or bert.encoder.layers
    for i, layer in enumerate(layers):
        for src, dst in names.items():
            mod = layer.get_submodule(src)
            sd[f"blocks.{i}.{dst}.weight"], sd[f"blocks.{i}.{dst}.bias"] = mod.weight, mod.bias
    if alt:
        tm = model.text_model
        sd.update({"ln_pool.weight": tm.pre_LN.weight, "ln_pool.bias": tm.pre_LN.bias,
                   "pool_proj.weight": tm.transformation.weight, "pool_proj.bias": tm.transformation.bias})
    return spec, _load(BertText(spec), sd)


def from_hf(model, tokenizer: Tokenizer, *, uri: str = "hf:custom", weights: str = "random-init",
            source: str | None = None):
    """Wrap a transformers ``CLIPModel``, ``AltCLIPModel`` or ``ChineseCLIPModel`` (weights copied)."""
    model = model.eval()
    kind = model.config.model_type
    if kind not in HF_FAMILIES:
        raise ConfigError(_unsupported(kind))
    ispec, image_enc = _vision(model)
    tspec, text_enc = (_clip_text if kind == "clip" else _bert_text)(model, tokenizer)
    preprocess = _read_preprocess(source, ispec.image_size)
    image, text = make_towers(image_enc, text_enc, ispec, tspec, preprocess)
    config = {"arch": uri, "image": spec_to_dict(ispec), "text": spec_to_dict(tspec), "preprocess": preprocess,
              "tokenizer": {"kind": tokenizer.kind, "context_length": tokenizer.context_length},
              "logit_scale": float(model.logit_scale.exp().item())}
    return finish(image, text, tokenizer, config=config, logit_scale=config["logit_scale"], uri=uri,
                  weights=weights)


def _unsupported(kind: str, archs=None) -> str:
    what = f"{kind!r}" + (f" ({', '.join(archs)})" if archs else "")
    return (f"Hugging Face model type {what} is not one edgeclip reads; it reads "
            f"{', '.join(f'{c} ({t})' for t, c in HF_FAMILIES.items())}; for open_clip weights use "
            "openclip:NAME//path/to/weights")


def _offline_hint(model_id: str) -> str:
    from huggingface_hub import constants

    return (f"place the files save_pretrained writes (config.json, model.safetensors, preprocessor_config.json "
            f"and the tokenizer files) in a folder DIR and use hf:DIR; or, where there is network, run "
            f"`hf download {model_id}` to fill the Hugging Face cache ({constants.HF_HUB_CACHE}), which "
            "HF_HUB_OFFLINE=1 then reads; or use a checkpoint saved with edgeclip as file:PATH")


def _context_length(model, kind: str) -> int:
    tc = model.config.text_config
    if kind == "clip":
        return int(tc.max_position_embeddings)
    offset = int(tc.pad_token_id) + 1 if kind == "altclip" else 0
    # BERT-family towers allow 512 tokens; captions need far fewer and the phone pays per token
    return min(BERT_CONTEXT, int(tc.max_position_embeddings) - offset)


def load_hf(model_id: str):
    """``hf:ID`` (a Hub repo id, or a local folder written by ``save_pretrained``)."""
    import transformers

    local = Path(model_id)
    if local.is_dir() and not (local / "config.json").is_file():
        raise InputError(f"hf:{model_id} is a folder without config.json; {_offline_hint(model_id)}")
    try:
        cfg = transformers.AutoConfig.from_pretrained(model_id)
    except Exception as e:  # offline, unknown repo, missing files: all land here
        raise InputError(f"could not load Hugging Face model {model_id!r} ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:120]}); {_offline_hint(model_id)}") from e
    if cfg.model_type not in HF_FAMILIES:
        raise InputError(f"hf:{model_id}: " + _unsupported(cfg.model_type, getattr(cfg, "architectures", None)))
    try:
        model = getattr(transformers, HF_FAMILIES[cfg.model_type]).from_pretrained(model_id)
    except Exception as e:
        raise InputError(f"could not load the weights of Hugging Face model {model_id!r} ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:120]}); {_offline_hint(model_id)}") from e
    ctx = _context_length(model, cfg.model_type)
    tokenizer: Tokenizer
    try:
        tokenizer = HFTokenizer.from_pretrained(model_id, ctx)
    except InputError:
        if cfg.model_type != "clip" or model.config.text_config.vocab_size != 49408:
            raise
        tokenizer = OpenClipTokenizer(ctx)  # no tokenizer files: CLIP's BPE is the one with this vocab
    if (local / "model.safetensors").is_file():  # a local folder: name the exact bytes loaded
        from .._io import sha256_path

        weights = f"file:sha256:{sha256_path(local / 'model.safetensors')}"
    else:
        weights = f"pretrained:hf:{model_id}"
    return from_hf(model, tokenizer, uri=f"hf:{model_id}", weights=weights,
                   source=model_id if local.is_dir() else None)
