"""Export-ready BERT / XLM-RoBERTa text encoder (the text towers of AltCLIP and Chinese-CLIP).

Written with the same explicit pieces as the CLIP towers (``_layers.Attention``), so every
backend converts it the same way. What differs from CLIP's text transformer:

- post-norm blocks (``x = LN(x + attn(x)); x = LN(x + mlp(x))``) after an embedding LayerNorm;
- padding is masked out of attention: the additive key mask ``(ids == pad_id) * -1e4`` is built
  inside the graph from the int32 ids (equality on ints is exact in every precision);
- the first token ([CLS] / <s>) is pooled, not the end-of-text token.

Position ids are static: edgeclip's tokenizers pad on the right, so the real tokens sit at
positions 0..n-1 and RoBERTa's ``cumsum(ids != pad) + padding_idx`` equals ``arange + offset``
on them (what it gives pad positions is never read: they are masked as keys and not pooled).
The token-type embedding of type 0, which every single-segment input adds, is folded into the
position table when the weights are copied, so ``pos_embed`` is ``[context_length, width]``.
"""
from __future__ import annotations

import torch
from torch import nn

from ._layers import MASK_VALUE, Attention, init_transformer_, make_act
from ._specs import BertTextSpec

__all__ = ["BertText", "PostNormBlock"]


class PostNormBlock(nn.Module):
    """BERT's block: attention, add, LayerNorm (ln_1); MLP, add, LayerNorm (ln_2)."""

    def __init__(self, width: int, heads: int, hidden: int, act: str, ln_eps: float):
        super().__init__()
        self.attn = Attention(width, heads)
        self.ln_1 = nn.LayerNorm(width, eps=ln_eps)
        self.mlp = nn.Sequential()
        self.mlp.add_module("fc", nn.Linear(width, hidden))
        self.mlp.add_module("act", make_act(act))
        self.mlp.add_module("proj", nn.Linear(hidden, width))
        self.ln_2 = nn.LayerNorm(width, eps=ln_eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.ln_1(x + self.attn(x, mask))
        return self.ln_2(x + self.mlp(x))


class BertText(nn.Module):
    """``int32[B,L] -> float32[B,embed_dim]`` (unnormalized); L must equal ``context_length``."""

    def __init__(self, spec: BertTextSpec):
        super().__init__()
        self.spec = spec
        w = spec.width
        self.token_embedding = nn.Embedding(spec.vocab_size, w)
        self.pos_embed = nn.Parameter(torch.zeros(spec.context_length, w))
        self.ln_embed = nn.LayerNorm(w, eps=spec.ln_eps)
        hidden = int(round(w * spec.mlp_ratio))
        self.blocks = nn.ModuleList(PostNormBlock(w, spec.heads, hidden, spec.act, spec.ln_eps)
                                    for _ in range(spec.layers))
        self.ln_pool = nn.LayerNorm(w, eps=spec.ln_eps) if spec.pool_ln else nn.Identity()
        self.pool_proj = nn.Linear(w, spec.pool_dim) if spec.pool_dim else nn.Identity()
        self.proj = nn.Linear(spec.pool_dim or w, spec.embed_dim, bias=False)
        self.pad_id = int(spec.pad_id)

    def init_weights(self) -> None:
        init_transformer_(self)
        nn.init.normal_(self.pos_embed, std=0.02)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.ln_embed(self.token_embedding(ids.long()) + self.pos_embed)
        # [B, 1, 1, L]: broadcasts over heads and query positions without a reshape in the graph
        mask = (ids == self.pad_id).to(torch.float32).unsqueeze(1).unsqueeze(1) * MASK_VALUE
        for blk in self.blocks:
            x = blk(x, mask)
        return self.proj(self.pool_proj(self.ln_pool(x[:, 0])))
