"""A toy two-tower model and data for trainer tests: every parameter kind the no-decay rule
sorts (Linear, Conv, LayerNorm, Embedding, a free pos_embed, a logit scale), dropout so the RNG
state matters, and no open_clip import (so torchrun workers start fast)."""
from __future__ import annotations

import torch
from torch import nn

from edgeclip.distill.batches import StepBatches
from edgeclip.distill.losses import clip_loss

VOCAB, LEN, WIDTH = 40, 4, 16


class Toy(nn.Module):
    def __init__(self, seed: int = 0, dropout: float = 0.2):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.embed = nn.Embedding(VOCAB, WIDTH)
            self.pos_embed = nn.Parameter(torch.randn(LEN, WIDTH) * 0.02)
            self.norm = nn.LayerNorm(WIDTH)
            self.conv = nn.Conv1d(WIDTH, WIDTH, 1)
            self.drop = nn.Dropout(dropout)
            self.fc_a = nn.Linear(WIDTH, WIDTH)
            self.fc_b = nn.Linear(WIDTH, WIDTH, bias=False)
            self.logit_scale = nn.Parameter(torch.tensor(2.0))

    def _enc(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.embed(ids) + self.pos_embed)
        x = self.conv(x.transpose(1, 2)).transpose(1, 2)
        return self.drop(x).mean(1)

    def forward(self, a: torch.Tensor, b: torch.Tensor):
        ea, eb = self.fc_a(self._enc(a)), self.fc_b(self._enc(b))
        return ea / ea.norm(dim=-1, keepdim=True), eb / eb.norm(dim=-1, keepdim=True), self.logit_scale.exp()


def toy_loss(model: nn.Module, batch) -> dict[str, torch.Tensor]:
    ea, eb, s = model(*batch)
    loss = clip_loss(ea, eb, s)
    return {"loss": loss, "scale": s.detach()}


def toy_items(n: int = 48, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Pairs whose second view is a fixed token shift of the first: learnable, not trivial."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, VOCAB, (n, LEN), generator=g)
    return [(a[i], (a[i] + 7) % VOCAB) for i in range(n)]


def stack(items):
    return torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])


def toy_batches(batch_size: int = 8, seed: int = 0, n: int = 48) -> StepBatches:
    return StepBatches(toy_items(n, seed), batch_size, seed=seed, collate=stack)
