"""open_clip models -> export-ready towers (weights copied, outputs unchanged).

ViT image towers and CLIP text transformers are rebuilt as this package's ``ViT`` /
``TextTransformer`` (explicit attention, fp16-safe mask, int32 EOT gather). Image towers the
converter does not cover (timm trunks such as MobileCLIP's ``fastvit_mci*``, ResNets,
attention-pooled ViTs) are kept as open_clip's own module (``NativeSpec``), with timm's fused
attention switched off so ``torch.export`` sees plain matmuls.
"""
from __future__ import annotations

import difflib
import os
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, InputError
from ._build import finish, make_towers
from ._native import export_friendly
from ._specs import NativeSpec, TextSpec, ViTSpec, spec_to_dict
from ._text import TextTransformer
from ._vit import ViT
from .tokenizers import HFTokenizer, OpenClipTokenizer, Tokenizer

__all__ = ["load_openclip", "from_openclip"]


def _act_name(mlp: nn.Module) -> str:
    act = getattr(mlp, "gelu", None)
    if type(act).__name__ == "QuickGELU":
        return "quick_gelu"
    if isinstance(act, nn.GELU):
        return "gelu_tanh" if act.approximate == "tanh" else "gelu"
    raise ConfigError(f"open_clip block activation {type(act).__name__} is not supported by the converter")


def _plain_blocks(blocks) -> bool:
    return all(isinstance(getattr(b, "attn", None), nn.MultiheadAttention) and not hasattr(b, "ln_1_kv")
               for b in blocks)


def _blocks_state(blocks) -> dict[str, torch.Tensor]:
    """open_clip ``ResidualAttentionBlock``s -> this package's ``Block`` keys (split packed qkv)."""
    sd: dict[str, torch.Tensor] = {}
    for i, b in enumerate(blocks):
        p = f"blocks.{i}."
        w, bias = b.attn.in_proj_weight, b.attn.in_proj_bias
        for j, name in enumerate("qkv"):
            d = w.shape[0] // 3
            sd[p + f"attn.{name}.weight"] = w[j * d:(j + 1) * d]
            sd[p + f"attn.{name}.bias"] = bias[j * d:(j + 1) * d]
        sd[p + "attn.out.weight"] = b.attn.out_proj.weight
        sd[p + "attn.out.bias"] = b.attn.out_proj.bias
        for src, dst in (("ln_1", "ln_1"), ("ln_2", "ln_2"), ("mlp.c_fc", "mlp.fc"), ("mlp.c_proj", "mlp.proj")):
            mod = b.get_submodule(src)
            sd[p + dst + ".weight"], sd[p + dst + ".bias"] = mod.weight, mod.bias
        for ls in ("ls_1", "ls_2"):
            if hasattr(getattr(b, ls), "gamma"):
                sd[p + ls + ".gamma"] = getattr(b, ls).gamma
    return sd


def _load(module: nn.Module, sd: dict[str, torch.Tensor]) -> nn.Module:
    module.load_state_dict({k: v.detach().clone().float() for k, v in sd.items()}, strict=True)
    return module


def _vit_from(visual, embed_dim: int) -> tuple[ViTSpec, ViT] | None:
    """open_clip ``VisionTransformer`` -> ``ViT``; None where its options are not covered."""
    from open_clip.transformer import VisionTransformer

    if not isinstance(visual, VisionTransformer):
        return None
    blocks = visual.transformer.resblocks
    h, w = visual.image_size
    if (visual.attn_pool is not None or visual.pool_type != "tok" or visual.final_ln_after_pool
            or visual.proj is None or h != w or not _plain_blocks(blocks)):
        return None
    b0 = blocks[0]
    spec = ViTSpec(
        image_size=h, patch_size=visual.patch_size[0], width=visual.conv1.out_channels,
        layers=len(blocks), heads=b0.attn.num_heads,
        mlp_ratio=b0.mlp.c_fc.out_features / b0.mlp.c_fc.in_features, embed_dim=embed_dim,
        act=_act_name(b0.mlp), ln_eps=b0.ln_1.eps, ln_pre=isinstance(visual.ln_pre, nn.LayerNorm),
        layer_scale=hasattr(b0.ls_1, "gamma"),
    )
    sd = {"patch_embed.weight": visual.conv1.weight, "class_embedding": visual.class_embedding,
          "pos_embed": visual.positional_embedding, "ln_post.weight": visual.ln_post.weight,
          "ln_post.bias": visual.ln_post.bias, "proj.weight": visual.proj.t()}
    if spec.ln_pre:
        sd.update({"ln_pre.weight": visual.ln_pre.weight, "ln_pre.bias": visual.ln_pre.bias})
    sd.update(_blocks_state(blocks))
    return spec, _load(ViT(spec), sd)


def _text_from(model, tokenizer: Tokenizer, embed_dim: int) -> tuple[TextSpec, TextTransformer]:
    """open_clip text transformer (``CLIP`` or ``CustomTextCLIP.text``) -> ``TextTransformer``."""
    src = getattr(model, "text", model)
    if not hasattr(src, "token_embedding") or getattr(src, "cls_emb", None) is not None:
        raise ConfigError(f"open_clip text tower {type(src).__name__} is not supported by the converter "
                          "(Hugging Face text encoders and CoCa-style cls tokens are not)")
    blocks = src.transformer.resblocks
    pool = getattr(src, "pool_type", getattr(model, "text_pool_type", "argmax"))
    if pool not in ("argmax", "eos") or not _plain_blocks(blocks):
        raise ConfigError(f"open_clip text pooling {pool!r} / block type is not supported by the converter")
    eot = tokenizer.eot_id if pool == "argmax" else int(getattr(src, "eos_id", getattr(model, "text_eos_id", 2)))
    proj = src.text_projection
    b0 = blocks[0]
    spec = TextSpec(
        context_length=src.positional_embedding.shape[0], vocab_size=src.token_embedding.num_embeddings,
        width=src.token_embedding.embedding_dim, layers=len(blocks), heads=b0.attn.num_heads,
        mlp_ratio=b0.mlp.c_fc.out_features / b0.mlp.c_fc.in_features, embed_dim=embed_dim,
        act=_act_name(b0.mlp), ln_eps=b0.ln_1.eps, causal=src.attn_mask is not None,
        eot_id=eot, sot_id=tokenizer.sot_id, pad_id=tokenizer.pad_id,
        proj_bias=isinstance(proj, nn.Linear) and proj.bias is not None, layer_scale=hasattr(b0.ls_1, "gamma"),
    )
    if proj is None:
        raise ConfigError("open_clip text tower without a projection is not supported by the converter")
    sd = {"token_embedding.weight": src.token_embedding.weight, "pos_embed": src.positional_embedding,
          "ln_final.weight": src.ln_final.weight, "ln_final.bias": src.ln_final.bias,
          "proj.weight": proj.weight if isinstance(proj, nn.Linear) else proj.t()}
    if spec.proj_bias:
        sd["proj.bias"] = proj.bias
    sd.update(_blocks_state(blocks))
    return spec, _load(TextTransformer(spec), sd)


def _embed_dim(model) -> int:
    proj = getattr(getattr(model, "text", model), "text_projection", None)
    if isinstance(proj, nn.Linear):
        return proj.out_features
    if isinstance(proj, torch.Tensor):
        return int(proj.shape[1])
    raise ConfigError(f"open_clip model {type(model).__name__} has no text projection to read the embedding dim from")


def from_openclip(model, *, tokenizer: Tokenizer | None = None, uri: str = "openclip:custom",
                  weights: str = "random-init", name: str | None = None):
    """Wrap an open_clip ``CLIP`` / ``CustomTextCLIP`` into a ``ClipModel`` (weights copied)."""
    import open_clip

    model = model.eval()
    embed_dim = _embed_dim(model)
    if tokenizer is None:
        tokenizer = OpenClipTokenizer(int(model.context_length))
    pre = open_clip.get_model_preprocess_cfg(model)
    size = pre.get("size", 224)
    size = size[0] if isinstance(size, (tuple, list)) else size
    preprocess = {"image_size": int(size), "mean": list(pre.get("mean", open_clip.OPENAI_DATASET_MEAN)),
                  "std": list(pre.get("std", open_clip.OPENAI_DATASET_STD)),
                  "resize_mode": "squash" if pre.get("resize_mode") == "squash" else "shortest"}
    converted = _vit_from(model.visual, embed_dim)
    if converted is not None:
        ispec, image_enc = converted
    elif name is not None:
        ispec = NativeSpec(model=name, image_size=int(size), embed_dim=embed_dim)
        image_enc = export_friendly(model.visual)
    else:
        raise ConfigError(f"open_clip image tower {type(model.visual).__name__} is not convertible and the "
                          "model has no open_clip name to rebuild it from; pass name=")
    tspec, text_enc = _text_from(model, tokenizer, embed_dim)
    image, text = make_towers(image_enc, text_enc, ispec, tspec, preprocess)
    config: dict[str, Any] = {
        "arch": f"openclip:{name}" if name else uri, "image": spec_to_dict(ispec), "text": spec_to_dict(tspec),
        "preprocess": preprocess, "tokenizer": {"kind": tokenizer.kind, "context_length": tokenizer.context_length},
        "logit_scale": float(model.logit_scale.exp().item()),
    }
    return finish(image, text, tokenizer, config=config, logit_scale=config["logit_scale"], uri=uri,
                  weights=weights)


def _tokenizer_for(name: str, context_length: int) -> Tokenizer:
    import json

    import open_clip

    cfg = open_clip.get_model_config(name) or {}
    local = os.path.join(name[len("local-dir:"):], "open_clip_config.json") if name.startswith("local-dir:") else ""
    if local and os.path.isfile(local):  # a folder written by open_clip's save_for_hf
        with open(local, encoding="utf-8") as f:
            cfg = json.load(f).get("model_cfg") or {}
    text_cfg = cfg.get("text_cfg", {})
    hf_name = text_cfg.get("hf_tokenizer_name")
    if hf_name:
        return HFTokenizer.from_pretrained(hf_name, context_length)
    return OpenClipTokenizer(context_length)


def _file_preprocess(model, name: str, path: str) -> None:
    """Preprocessing for weights given as a file, where open_clip only knows its defaults: the
    ``open_clip_config.json`` beside the file (what ``save_for_hf`` and the Hub repos hold), else
    the pretrained configs of ``name`` when they all agree (MobileCLIP2 normalizes with mean 0,
    std 1, not OpenAI's statistics)."""
    import json

    import open_clip

    beside = os.path.join(os.path.dirname(os.path.abspath(path)), "open_clip_config.json")
    if os.path.isfile(beside):
        with open(beside, encoding="utf-8") as f:
            found = json.load(f).get("preprocess_cfg") or {}
    else:
        cfgs = [open_clip.get_pretrained_cfg(name, t) for t in open_clip.list_pretrained_tags_by_model(name)]
        keys = ("mean", "std", "resize_mode", "interpolation")
        views = {tuple((k, tuple(c[k]) if isinstance(c.get(k), (list, tuple)) else c.get(k)) for k in keys if k in c)
                 for c in cfgs}
        found = dict(cfgs[0]) if len(views) == 1 else {}
    pp = dict(open_clip.get_model_preprocess_cfg(model))
    pp.update({k: found[k] for k in ("mean", "std", "resize_mode", "interpolation") if k in found})
    open_clip.model.set_model_preprocess_cfg(model, pp)


def _dir_weights(folder: str) -> str | None:
    """The weights file open_clip's ``local-dir:`` loads from ``folder`` (safetensors first)."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    for fname in (HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME):
        if os.path.isfile(os.path.join(folder, fname)):
            return os.path.join(folder, fname)
    return None


def _fetch_hint(name: str, tag: str | None) -> str:
    """Which file to place where when a download fails (offline, no network, unknown repo)."""
    import open_clip
    from huggingface_hub import constants

    repo = name[len("hf-hub:"):] if name.startswith("hf-hub:") else \
        (open_clip.get_pretrained_cfg(name, tag).get("hf_hub") or "").strip("/") if tag else ""
    files = "open_clip_model.safetensors (or open_clip_pytorch_model.bin) with open_clip_config.json"
    where = (f"where there is network, `hf download {repo}` fills the Hugging Face cache "
             f"({constants.HF_HUB_CACHE}), which HF_HUB_OFFLINE=1 then reads; or " if repo else "")
    return (f"{where}put {files}" + (f" from huggingface.co/{repo}" if repo else "") +
            f" in a folder DIR and use openclip:local-dir:DIR, or give the weights file as "
            f"openclip:{'NAME' if name.startswith(('hf-hub:', 'local-dir:')) else name}"
            "//path/to/open_clip_model.safetensors; "
            "or a checkpoint saved with edgeclip as file:PATH")


def load_openclip(name: str, tag: str | None):
    """``openclip:NAME[/TAG]``: TAG is a pretrained tag or a local weights file; none = random init."""
    import open_clip

    if not name.startswith(("hf-hub:", "local-dir:")) and name not in open_clip.list_models():
        close = difflib.get_close_matches(name, open_clip.list_models(), n=5)
        raise ConfigError(f"open_clip has no model {name!r}" + (f"; did you mean {close}?" if close else
                          "; see open_clip.list_models()"))
    if tag and not os.path.isfile(tag) and tag not in open_clip.list_pretrained_tags_by_model(name):
        known = open_clip.list_pretrained_tags_by_model(name)
        raise ConfigError(f"open_clip model {name!r} has no pretrained tag {tag!r} and no file of that "
                          f"name exists; known tags: {known or '(none)'}")
    try:
        model = open_clip.create_model(name, pretrained=tag or None)
    except Exception as e:  # open_clip raises RuntimeError for every download/cache failure
        raise InputError(f"could not load open_clip {name}" + (f"/{tag}" if tag else "") +
                         f" ({str(e).splitlines()[0][:160]}); {_fetch_hint(name, tag)}") from e
    tokenizer = _tokenizer_for(name, int(model.context_length))
    if tag and os.path.isfile(tag):
        _file_preprocess(model, name, tag)
        from .._io import sha256_path

        weights = f"file:sha256:{sha256_path(tag)}"
    elif name.startswith("local-dir:") and _dir_weights(name[len("local-dir:"):]):
        from .._io import sha256_path

        weights = f"file:sha256:{sha256_path(_dir_weights(name[len('local-dir:'):]))}"
    elif name.startswith("hf-hub:"):  # the hub repo carries its weights
        weights = f"pretrained:{name}"
    else:
        weights = f"pretrained:{tag}" if tag else "random-init"
    return from_openclip(model, tokenizer=tokenizer, uri=f"openclip:{name}" + (f"/{tag}" if tag else ""),
                         weights=weights, name=name)
