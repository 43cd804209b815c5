"""Run under ``torchrun --nproc_per_node=2``: checks gather semantics, then trains the toy with DDP.

Writes ``OUT/rank{r}.pt`` with: the gathered clip loss and this rank's feature gradients on a
fixed global batch, and the final toy weights after a few DDP steps."""
from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from _distill_toy import Toy, toy_batches, toy_loss  # noqa: E402

from edgeclip.distill.losses import affinity_loss, clip_loss  # noqa: E402
from edgeclip.distill.trainer import TrainConfig, Trainer  # noqa: E402


def main(out: str, steps: int) -> None:
    torch.set_num_threads(1)
    cfg = TrainConfig(steps=steps, lr=3e-2, warmup_steps=1, seed=0, device="cpu", progress=False,
                      grad_clip=None, checkpoint_dir=os.path.join(out, "ckpt"))
    trainer = Trainer(Toy(seed=0, dropout=0.0), toy_loss, toy_batches(batch_size=8), cfg)  # joins the group
    rank, world = trainer.dist.rank, trainer.dist.world_size

    # gather semantics on a fixed global batch of 6 pairs, 3 per rank
    g = torch.Generator().manual_seed(0)
    img_all = torch.nn.functional.normalize(torch.randn(6, 5, generator=g, dtype=torch.float64), dim=-1)
    txt_all = torch.nn.functional.normalize(torch.randn(6, 5, generator=g, dtype=torch.float64), dim=-1)
    mine = slice(rank * 3, rank * 3 + 3)
    img, txt = img_all[mine].clone().requires_grad_(), txt_all[mine].clone().requires_grad_()
    loss = clip_loss(img, txt, 4.0)
    loss.backward()
    # TinyCLIP's affinity loss, teacher features gathered too
    t_img = torch.nn.functional.normalize(torch.randn(6, 7, generator=g, dtype=torch.float64), dim=-1)
    t_txt = torch.nn.functional.normalize(torch.randn(6, 7, generator=g, dtype=torch.float64), dim=-1)
    a_img = img_all[mine].clone().requires_grad_()
    aff = affinity_loss(a_img, txt_all[mine], 4.0, t_img[mine], t_txt[mine], 50.0)
    aff.backward()

    result = trainer.fit()
    trainer.close()
    torch.save({"rank": rank, "world": world, "loss": loss.detach(), "img_grad": img.grad,
                "txt_grad": txt.grad, "aff": aff.detach(), "aff_img_grad": a_img.grad, "weights": trainer.module.state_dict(),
                "losses": torch.tensor(result.losses)}, os.path.join(out, f"rank{rank}.pt"))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
