"""Export-ready CLIP text encoder.

Converter-friendly by construction: int32 ids in, ``token_embedding(ids.long())`` inside the
graph, an fp16-safe additive causal mask stored as a constant buffer, and the end-of-text
position found with an argmax over a float 0/1 vector (``ids == eot_id``) then gathered.

Why not argmax over ``ids.float()`` as open_clip does: in fp16 (CoreML's default compute
precision) 49406 (start-of-text) and 49407 (end-of-text) both round to 49408, so the argmax
would pick position 0. Equality on int32 is exact in every precision and picks the first EOT,
which is also what Hugging Face CLIP does when pad == eos.
"""
from __future__ import annotations

import torch
from torch import nn

from ._layers import MASK_VALUE, Block, init_transformer_
from ._specs import TextSpec, block_dims

__all__ = ["TextTransformer", "causal_mask"]


def causal_mask(n: int) -> torch.Tensor:
    """``[n, n]`` additive mask: 0 on and below the diagonal, -1e4 above (no -inf, no finfo.min)."""
    return torch.full((n, n), MASK_VALUE).triu(1)


class TextTransformer(nn.Module):
    """``int32[B,L] -> float32[B,embed_dim]`` (unnormalized); L must equal ``context_length``. On a
    causal tower (``trims``) nothing after a row's end-of-text token reaches it, so
    ``forward_prefix`` embeds rows cut after their last end-of-text the same (training packs short
    captions this way)."""

    def __init__(self, spec: TextSpec):
        super().__init__()
        self.spec = spec
        w = spec.width
        self.token_embedding = nn.Embedding(spec.vocab_size, w)
        self.pos_embed = nn.Parameter(torch.zeros(spec.context_length, w))
        self.blocks = nn.ModuleList(
            Block(w, h, spec.mlp_ratio, spec.act, spec.ln_eps, spec.layer_scale, head_dim=hd, mlp_hidden=m)
            for h, hd, m in block_dims(spec)
        )
        self.ln_final = nn.LayerNorm(w, eps=spec.ln_eps)
        self.proj = nn.Linear(w, spec.embed_dim, bias=spec.proj_bias)
        # shaped [1, 1, L, L] so it broadcasts over batch and heads without a reshape in the graph
        mask = causal_mask(spec.context_length)[None, None] if spec.causal else None
        self.register_buffer("mask", mask, persistent=False)
        self.eot_id = int(spec.eot_id)

    @property
    def trims(self) -> bool:
        return bool(self.spec.causal)

    def init_weights(self) -> None:
        init_transformer_(self)
        nn.init.normal_(self.pos_embed, std=0.01)
        nn.init.normal_(self.proj.weight, std=self.spec.width ** -0.5)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # no branch on the input's shape: torch.fx (coremltools' compression) traces this symbolically
        return self._encode(ids, self.pos_embed, self.mask)

    def forward_prefix(self, ids: torch.Tensor) -> torch.Tensor:
        """``forward`` on rows cut after their last end-of-text token (``L <= context_length``);
        causal towers only (``trims``)."""
        n, full = ids.shape[1], self.pos_embed.shape[0]
        if not self.trims or n > full:
            raise ValueError(f"text ids of length {n}: this tower takes {full} tokens"
                             + ("" if self.trims else " (not causal: no trimmed rows)"))
        return self._encode(ids, self.pos_embed[:n], self.mask[..., :n, :n])

    def _encode(self, ids: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self.token_embedding(ids.long()) + pos
        for blk in self.blocks:
            x = blk(x, mask)
        x = self.ln_final(x)
        eot = torch.argmax((ids == self.eot_id).to(torch.float32), dim=-1)  # first EOT per row
        idx = eot.reshape(-1, 1, 1).expand(-1, 1, x.shape[-1])
        return self.proj(torch.gather(x, 1, idx).squeeze(1))
