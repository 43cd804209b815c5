"""Structured pruning surgery: remove heads, MLP neurons and residual (hidden) dims from an
edgeclip ``ViT`` / ``TextTransformer`` and return a plain, smaller encoder of the same class.

``prune_encoder`` is pure model surgery: it slices every parameter by the kept indices and folds
optional per-structure scales (the fractional values of deterministic hard-concrete masks, see
``edgeclip.distill.hard_concrete``) into the weights that consume them:

- a head's scale multiplies its ``attn.out`` input columns (the head's output);
- a neuron's scale multiplies its ``mlp.proj`` input column;
- a hidden dim's scale multiplies every *write* into the residual stream: the embeddings
  (patch conv out-channel, class and position embedding / token embedding column) and the rows
  (and biases) of ``attn.out`` and ``mlp.proj``. LayerNorms and the final ``proj`` read the
  stream and are only sliced.

The pruned spec keeps the head dim and records per-layer shapes (``head_dim``, ``layer_heads``,
``layer_mlp``), so the result saves, loads and exports like any other encoder.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import torch
from torch import nn

from ..errors import ConfigError
from ._layers import Block, LayerScale
from ._text import TextTransformer
from ._vit import ViT

__all__ = ["prune_encoder", "with_encoders"]


def _index(keep, size: int, what: str, device) -> torch.Tensor:
    idx = torch.as_tensor(keep, dtype=torch.long, device=device).reshape(-1)
    if idx.numel() == 0:
        raise ConfigError(f"pruning would remove every {what}; keep at least one")
    if idx.min() < 0 or idx.max() >= size or idx.unique().numel() != idx.numel():
        raise ConfigError(f"{what} keep indices must be distinct and in [0, {size}), found {idx.tolist()}")
    return idx.sort().values  # keep the original order of the structures


def _scale(scale, size: int, idx: torch.Tensor, what: str, like: torch.Tensor) -> torch.Tensor:
    """The kept entries of a full-length scale vector (ones when there is none)."""
    if scale is None:
        return torch.ones(idx.numel(), dtype=like.dtype, device=like.device)
    s = torch.as_tensor(scale).detach().to(like)
    if s.shape != (size,):
        raise ConfigError(f"{what} scale must have shape ({size},), found {tuple(s.shape)}")
    return s[idx]


def _norm(dst: nn.Module, src: nn.Module, hk: torch.Tensor) -> None:
    if isinstance(src, nn.LayerNorm):
        dst.weight.copy_(src.weight[hk])
        dst.bias.copy_(src.bias[hk])


def _block(dst: Block, src: Block, hk, hs, head_idx, head_s, neuron_idx, neuron_s) -> None:
    a, na = src.attn, dst.attn
    hd = a.head_dim
    rows = (head_idx[:, None] * hd + torch.arange(hd, device=head_idx.device)).reshape(-1)
    for name in ("q", "k", "v"):
        s, d = getattr(a, name), getattr(na, name)
        d.weight.copy_(s.weight[rows][:, hk])
        d.bias.copy_(s.bias[rows])
    na.out.weight.copy_(a.out.weight[hk][:, rows] * head_s.repeat_interleave(hd)[None, :] * hs[:, None])
    na.out.bias.copy_(a.out.bias[hk] * hs)
    _norm(dst.ln_1, src.ln_1, hk)
    _norm(dst.ln_2, src.ln_2, hk)
    for name in ("ls_1", "ls_2"):
        if isinstance(getattr(src, name), LayerScale):
            getattr(dst, name).gamma.copy_(getattr(src, name).gamma[hk])
    fc, nfc, pj, npj = src.mlp.fc, dst.mlp.fc, src.mlp.proj, dst.mlp.proj
    nfc.weight.copy_(fc.weight[neuron_idx][:, hk])
    nfc.bias.copy_(fc.bias[neuron_idx])
    npj.weight.copy_(pj.weight[hk][:, neuron_idx] * neuron_s[None, :] * hs[:, None])
    npj.bias.copy_(pj.bias[hk] * hs)


@torch.no_grad()
def prune_encoder(encoder: nn.Module, head_keep: Sequence[torch.Tensor], neuron_keep: Sequence[torch.Tensor],
                  hidden_keep: torch.Tensor, head_scale: Sequence[torch.Tensor] | None = None,
                  neuron_scale: Sequence[torch.Tensor] | None = None,
                  hidden_scale: torch.Tensor | None = None) -> nn.Module:
    """A new, smaller encoder of ``encoder``'s class holding only the kept structures.

    ``head_keep[l]`` / ``neuron_keep[l]``: indices of the heads / MLP neurons block ``l`` keeps;
    ``hidden_keep``: the residual dims kept (everywhere). The optional scales are full-length
    vectors over the *original* structures (``head_scale[l]`` has one entry per head of block
    ``l``), e.g. mask values; they are folded into the weights (module docstring), so the pruned
    encoder computes what the scaled, masked one did. Device, dtype and train/eval mode are kept.
    """
    if not isinstance(encoder, (ViT, TextTransformer)):
        raise ConfigError(f"structured pruning covers edgeclip ViT and TextTransformer encoders, not "
                          f"{type(encoder).__name__}")
    spec, blocks = encoder.spec, list(encoder.blocks)
    if len(head_keep) != len(blocks) or len(neuron_keep) != len(blocks):
        raise ConfigError(f"need one head and one neuron keep list per block ({len(blocks)}), found "
                          f"{len(head_keep)} and {len(neuron_keep)}")
    ref = next(encoder.parameters())
    dev = ref.device
    hk = _index(hidden_keep, spec.width, "hidden dim", dev)
    hs = _scale(hidden_scale, spec.width, hk, "hidden", ref)
    heads, neurons = [], []
    for i, b in enumerate(blocks):
        h, n = b.attn.heads, b.mlp.fc.out_features
        hi, ni = _index(head_keep[i], h, f"head of block {i}", dev), _index(neuron_keep[i], n, f"neuron of block {i}", dev)
        heads.append((hi, _scale(None if head_scale is None else head_scale[i], h, hi, f"block {i} head", ref)))
        neurons.append((ni, _scale(None if neuron_scale is None else neuron_scale[i], n, ni, f"block {i} neuron", ref)))
    layer_heads = tuple(int(hi.numel()) for hi, _ in heads)
    new_spec = replace(spec, width=int(hk.numel()), heads=max(layer_heads), head_dim=blocks[0].attn.head_dim,
                       layer_heads=layer_heads, layer_mlp=tuple(int(ni.numel()) for ni, _ in neurons))
    new = type(encoder)(new_spec).to(device=dev, dtype=ref.dtype)

    if isinstance(encoder, ViT):
        new.patch_embed.weight.copy_(encoder.patch_embed.weight[hk] * hs.view(-1, 1, 1, 1))
        new.class_embedding.copy_(encoder.class_embedding[hk] * hs)
        _norm(new.ln_pre, encoder.ln_pre, hk)
        _norm(new.ln_post, encoder.ln_post, hk)
    else:
        new.token_embedding.weight.copy_(encoder.token_embedding.weight[:, hk] * hs)
        _norm(new.ln_final, encoder.ln_final, hk)
    new.pos_embed.copy_(encoder.pos_embed[:, hk] * hs)
    new.proj.weight.copy_(encoder.proj.weight[:, hk])
    if encoder.proj.bias is not None:
        new.proj.bias.copy_(encoder.proj.bias)
    for nb, b, (hi, hsc), (ni, nsc) in zip(new.blocks, blocks, heads, neurons):
        _block(nb, b, hk, hs, hi, hsc, ni, nsc)
    return new.train(encoder.training)


def with_encoders(model, image: nn.Module | None = None, text: nn.Module | None = None):
    """A new ``ClipModel`` like ``model`` whose towers wrap the given encoders (``None``: keep the
    tower's own), with the model config (tower specs) and facts (params, FLOPs) brought up to date.
    ``model`` itself is left as it was."""
    from ._build import make_facts
    from ._specs import spec_to_dict
    from .towers import ClipModel, ImageTower, TextTower

    it, tt = model.image, model.text
    image = it.encoder if image is None else image
    text = tt.encoder if text is None else text
    new_image = ImageTower(image, image_size=it.image_size, embed_dim=it.embed_dim, mean=it.mean, std=it.std,
                           resize_mode=it.resize_mode, preprocess=it.preprocess).eval()
    new_text = TextTower(text, context_length=tt.context_length, vocab_size=tt.vocab_size, embed_dim=tt.embed_dim,
                         eot_id=tt.eot_id, sot_id=tt.sot_id, pad_id=tt.pad_id).eval()
    config = dict(model.config)
    for key, enc in (("image", image), ("text", text)):
        if hasattr(enc, "spec") and key in config:
            config[key] = spec_to_dict(enc.spec)
    facts = make_facts(new_image, new_text, model.tokenizer, model.facts.weights)
    return ClipModel(image=new_image, text=new_text, tokenizer=model.tokenizer, facts=facts,
                     logit_scale=model.logit_scale, uri=model.uri, config=config)
