"""Towards #20 item 1: CLIP-pretrained image towers whose shape path cannot see colour, one run.

    python benchmarks/shape_streams.py --out benchmarks/results/shape-streams.json

``shape_ceiling.py`` showed the held-out shape gap is colour leakage: a supervised CNN behind a
fixed hue-blind front (``EdgeMagnitude``) scores 96% held-out, the same CNN on RGB 70%. This
benchmark asks whether a *CLIP* teacher gets there, with the recipe's budget (300 steps of 64,
the world's paraphrased train captions with shape twins, AdamW 1e-3, 50 warm-up steps, cosine).
Image towers, each in place of ``builtin:teacher-vit``'s image encoder (the text tower is the
teacher's own):

- ``vit``: the teacher's ViT as shipped;
- ``vit+edge``: the ViT plus a hue-blind outline CNN (``EdgeMagnitude`` -> 4 conv-BN-ReLU ->
  global max pool -> linear), the two summed;
- ``streams``: no ViT: the outline CNN plus a bag of colours (1x1 convs, global max pool: which
  colours are present, not where or in what shape).
- ``factored``: ``builtin:teacher-factored``, the same two streams each in its own slice of the
  embedding (``edgeclip/models/_factored.py``).

``--slice-prompts`` scores a label kind's prompts against its own slice of image and prompt;
``--mask-prompts`` against the image's slice (the rest zeroed) and the whole prompt, as the
product's ``pretrain.prompt_loss`` does (``edgeclip/distill/prompt_loss.py``).

``--prompt-loss W`` adds a UniCL-style term (Yang et al., 2022: labels as text): for scenes whose
objects share one shape (one colour), cross-entropy of the image embedding against the text
embeddings of the 8 shape (9 colour) prompts the zero-shot evaluation uses, weight ``W``. The
scores are the teacher's own: held-out and train-split zero-shot top-1 (English prompts) and
held-out R@1, 200 scenes each, as ``edgeclip pretrain`` reports them. These towers are not
builtins, except ``factored``: nothing here changes the default teacher.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402
from shape_ceiling import EdgeMagnitude, cnn  # noqa: E402

TOWERS = ("vit", "vit+edge", "streams", "factored")


def _outline_cnn(out_dim: int) -> nn.Module:
    return cnn("max", EdgeMagnitude(), out_dim)


def _colour_bag(out_dim: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 32, 1), nn.ReLU(), nn.Conv2d(32, 64, 1), nn.ReLU(),
                         nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(64, out_dim))


class SummedStreams(nn.Module):
    """The sum of each stream's ``[B, D]`` features (the tower L2-normalizes the sum)."""

    def __init__(self, *streams: nn.Module):
        super().__init__()
        self.streams = nn.ModuleList(streams)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(s(x) for s in self.streams)


def teacher(tower: str, seed: int = 0):
    """``builtin:teacher-vit`` with its image encoder replaced as ``tower`` says, CLIP init."""
    from edgeclip.distill.pretrain import clip_init_
    from edgeclip.models.builtins import build_builtin

    if tower not in TOWERS:
        raise SystemExit(f"unknown tower {tower!r}; known: {', '.join(TOWERS)}")
    model = build_builtin("teacher-vit", seed=seed)
    d, vit = model.image.embed_dim, model.image.encoder
    if tower == "vit+edge":
        model.image.encoder = SummedStreams(vit, _outline_cnn(d))
    elif tower == "streams":
        model.image.encoder = SummedStreams(_outline_cnn(d), _colour_bag(d))
    elif tower == "factored":
        model = build_builtin("teacher-factored", seed=seed)
    clip_init_(model.image, seed)
    clip_init_(model.text, seed + 1)
    return model


def scene_label(scene, kind: str) -> int:
    """The class of ``scene`` for ``kind`` ("shape" or "colour") when all its objects share one, else -1
    (the product's ``scene_labels``, which ``pretrain.prompt_loss`` trains on)."""
    from edgeclip.distill.prompt_loss import PROMPT_KINDS, scene_labels

    return scene_labels(scene)[PROMPT_KINDS.index(kind)]


def _scores(model) -> dict:
    from edgeclip.distill.evaluate import evaluate_synthetic, retrieval_r1

    out = {}
    with torch.no_grad():
        for split in ("heldout", "train"):
            for kind, s in evaluate_synthetic(model, n=200, split=split, seed=0, lang="en").items():
                out[f"{split}_{kind}"] = round(s.accuracy, 3)
        r = retrieval_r1(model, n=200, split="heldout", seed=0, lang="en")
    out["heldout_r1_i2t"], out["heldout_r1_t2i"] = round(r["i2t_r1"], 3), round(r["t2i_r1"], 3)
    return out


def _only(x: torch.Tensor, keep: slice) -> torch.Tensor:
    """``x`` with every column outside ``keep`` zeroed, L2-normalized."""
    mask = torch.zeros(x.shape[1], dtype=x.dtype)
    mask[keep] = 1
    return F.normalize(x * mask, dim=-1)


def run(tower: str, steps: int, prompt_loss: float, slice_prompts: bool = False, mask_prompts: bool = False, batch: int = 64, lr: float = 1e-3, warmup: int = 50,
        pool: int = 1024, seed: int = 0) -> dict:
    """Pretrain one teacher with the CLIP loss (+ the prompt loss); its scores and wall seconds."""
    from edgeclip.data import class_labels
    from edgeclip.distill.losses import clip_loss
    from edgeclip.distill.pretrain import ClipCollate, ClipTrainModule, default_pretrain_data

    torch.manual_seed(seed)
    model = teacher(tower, seed)
    pairs = default_pretrain_data(model.facts.image_size, seed, pool=pool)   # scene 2k, its shape twin 2k+1
    collate = ClipCollate(model.facts, model.tokenizer)
    module = ClipTrainModule(model.image, model.text, model.logit_scale)
    labels = {k: class_labels(k) for k in ("shape", "colour")}
    prompt_ids = {k: collate.encode([p for per in s.prompts("en") for p in per]) for k, s in labels.items()}
    opt = torch.optim.AdamW(module.parameters(), lr, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    slice_prompts = slice_prompts or mask_prompts
    slices = getattr(model.image.encoder, "slices", {}) if slice_prompts else {}
    if slice_prompts and not slices:
        raise SystemExit(f"--slice-prompts needs a tower with named slices (factored), not {tower!r}")
    rng = np.random.default_rng(seed)
    module.train()
    t0 = time.perf_counter()
    for step in range(steps):
        pairs.set_epoch(step * batch // len(pairs))
        idx = [int(j) for b in rng.choice(len(pairs) // 2, batch // 2, replace=False) for j in (2 * b, 2 * b + 1)]
        image, text, scale = module(*collate([pairs[i] for i in idx]))
        loss = clip_loss(image, text, scale, gather=False)
        if prompt_loss > 0:
            scenes = [pairs.scene(i) for i in idx]
            for kind, ls in labels.items():
                y = torch.tensor([scene_label(s, kind) for s in scenes])
                if not (y >= 0).any():
                    continue
                k = len(ls.values)
                protos = module.text(prompt_ids[kind]).reshape(k, -1, text.shape[1]).mean(1)
                img = image[y >= 0]
                if kind in slices:
                    img = _only(img, slices[kind]) if mask_prompts else F.normalize(img[:, slices[kind]], dim=-1)
                    protos = protos if mask_prompts else protos[:, slices[kind]]
                protos = F.normalize(protos, dim=-1)
                loss = loss + prompt_loss * F.cross_entropy(scale * img @ protos.t(), y[y >= 0])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    wall = time.perf_counter() - t0
    model.logit_scale = float(module.scale().detach())
    model.eval()
    return {"tower": tower, "prompt_loss": prompt_loss, "slice_prompts": slice_prompts, "mask_prompts": mask_prompts, "steps": steps, "train_seconds": round(wall, 1),
            "final_loss": round(loss.item(), 4), **_scores(model)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--towers", default=",".join(TOWERS))
    ap.add_argument("--prompt-loss", type=float, default=1.0, help="weight of the UniCL-style label term (0: off)")
    ap.add_argument("--slice-prompts", action="store_true",
                    help="the prompt loss of a label kind sees only its stream's slice (factored)")
    ap.add_argument("--mask-prompts", action="store_true",
                    help="as --slice-prompts, but the image's other slices are zeroed and the prompt embedding "
                         "kept whole, which drives a prompt's other slices to zero")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="shape-streams.json")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.threads < 1 or args.prompt_loss < 0:
        ap.error(f"--steps and --threads must be >= 1 and --prompt-loss >= 0, got {args.steps}, "
                 f"{args.threads} and {args.prompt_loss}")
    torch.set_num_threads(args.threads)
    rows = []
    for t in args.towers.split(","):
        rows.append(run(t, args.steps, args.prompt_loss, args.slice_prompts, args.mask_prompts))
        r = rows[-1]
        print(f"{t:<9} held-out shape {r['heldout_shape']:6.1%}  train-split {r['train_shape']:6.1%}  "
              f"colour {r['heldout_colour']:6.1%}  pairs {r['heldout_shape-colour']:6.1%}  "
              f"R@1 i2t {r['heldout_r1_i2t']:6.1%}  {r['train_seconds']:.0f} s", flush=True)
    from edgeclip._io import write_json_atomic

    write_json_atomic(Path(args.out), {"machine": machine(args.threads), "steps": args.steps,
                                       "prompt_loss": args.prompt_loss, "rows": rows})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
