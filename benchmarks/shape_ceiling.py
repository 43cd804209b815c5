"""How much shape can the teacher's pretraining budget teach at all? Supervised ceilings, in one run.

    python benchmarks/shape_ceiling.py --out benchmarks/results/shape-ceiling.json

#20 asks the builtin teacher, CLIP-pretrained in at most 4 minutes on 2 cores, for >= 85%
zero-shot top-1 on held-out shape. This benchmark bounds that from above: it trains a plain
*supervised* shape classifier (cross-entropy on the true shape label, which CLIP never gets)
for ``--steps`` batches of 64 on single-object train-split scenes, then scores the same 200
held-out scenes the teacher is judged on (every one shows a shape-colour pair never seen in
training) and 200 fresh train-split scenes. A CLIP tower that learns shape only through captions
naming eight other attributes as well is not expected to beat its supervised twin.

Classifiers, side by side:
- ``vit``: the teacher's own image tower (``builtin:teacher-vit``, CLIP init) + a linear head;
- ``cnn-avg``: four 3x3 conv-BN-ReLU layers (stride 1, 2, 2, 2), global average pool, linear;
- ``cnn-max``: the same with global max pooling (the objects are small: averaging over the
  whole map dilutes them);
- ``cnn-max-gray``: ``cnn-max`` with half of each batch turned to grayscale, so the shape
  features cannot lean on colour (colour jitter would forge held-out pairs: grayscale cannot);
- ``cnn-max-edge``: ``cnn-max`` behind a fixed hue-blind front (``EdgeMagnitude``: Sobel
  gradient magnitude over the three channels), so it sees outlines, never colours.

The default ``--steps 700`` is what ``cnn-max`` fitted into 240 s at 2 threads on the 2-core
AVX2-only AMD EPYC VM of 2026-12-03: the issue's budget, counted in steps so the rows of one run
compare whatever else the machine is doing. Scene rendering is outside the timed loop.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402
from edgeclip.models._factored import EdgeMagnitude  # noqa: E402  (the builtin teacher-factored's front)

VARIANTS = ("vit", "cnn-avg", "cnn-max", "cnn-max-gray", "cnn-max-edge")
_LUMA = (0.299, 0.587, 0.114)


def cnn(pool: str, front: nn.Module | None = None, out_dim: int = 8) -> nn.Module:
    """4 conv-BN-ReLU (stride 1, 2, 2, 2), a global ``pool`` ("max" or "avg"), a linear to
    ``out_dim``; behind ``front`` (a 1-channel map such as ``EdgeMagnitude``) when given."""
    def cbr(i, o, s):
        return [nn.Conv2d(i, o, 3, s, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]

    glob = nn.AdaptiveMaxPool2d(1) if pool == "max" else nn.AdaptiveAvgPool2d(1)
    head = [front, *cbr(1, 32, 1)] if front is not None else cbr(3, 32, 1)
    return nn.Sequential(*head, *cbr(32, 64, 2), *cbr(64, 128, 2), *cbr(128, 128, 2), glob,
                         nn.Flatten(), nn.Linear(128, out_dim))


def _vit() -> nn.Module:
    from edgeclip.distill.pretrain import clip_init_
    from edgeclip.models.builtins import build_builtin

    tower = build_builtin("teacher-vit", seed=0).image
    clip_init_(tower, 0)
    return nn.Sequential(tower.encoder, nn.Linear(tower.embed_dim, 8))   # unnormalized features


def classifier(variant: str) -> nn.Module:
    if variant not in VARIANTS:
        raise SystemExit(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
    if variant == "vit":
        return _vit()
    return cnn("max" if "max" in variant else "avg", EdgeMagnitude() if variant.endswith("edge") else None)


def _pixels(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> the builtin models' normalized NCHW float (CLIP mean/std)."""
    from edgeclip.models.builtins import CLIP_MEAN, CLIP_STD

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)


def grayscale_half(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each image, with probability 1/2, replaced by its luma in all three channels."""
    luma = (x * torch.tensor(_LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True).expand_as(x)
    pick = (torch.rand(x.shape[0], 1, 1, 1, generator=gen) < 0.5).to(x.dtype)
    return pick * luma + (1 - pick) * x


def _accuracy(net: nn.Module, ev) -> float:
    with torch.no_grad():
        return float((net(_pixels(ev.images)).argmax(1).numpy() == ev.labels).mean())


def run(variant: str, steps: int, n_train: int = 2048, n_eval: int = 200, batch: int = 64,
        lr: float = 2e-3, seed: int = 0) -> dict:
    """Train one classifier; its held-out and train-split shape accuracy, steps, wall seconds."""
    from edgeclip.data import labelled_eval_set

    torch.manual_seed(seed)
    train = labelled_eval_set(n_train, "shape", "train", seed=5)   # eval sets use seed 0
    x_all, y_all = _pixels(train.images), torch.from_numpy(train.labels)
    net = classifier(variant)
    opt = torch.optim.AdamW(net.parameters(), lr, weight_decay=0.05)
    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    net.train()
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = torch.from_numpy(rng.integers(0, len(y_all), batch))
        x = x_all[idx]
        if variant.endswith("gray"):
            x = grayscale_half(x, gen)
        loss = F.cross_entropy(net(x), y_all[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    wall = time.perf_counter() - t0
    net.eval()
    return {"variant": variant, "steps": steps, "train_seconds": round(wall, 1),
            "final_loss": round(loss.item(), 4),
            "heldout_shape": _accuracy(net, labelled_eval_set(n_eval, "shape", "heldout", seed=0)),
            "train_split_shape": _accuracy(net, labelled_eval_set(n_eval, "shape", "train", seed=0)),
            "chance": 1 / 8, "n_eval": n_eval}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=700)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--out", default="shape-ceiling.json")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.threads < 1:
        ap.error(f"--steps and --threads must be >= 1, got {args.steps} and {args.threads}")
    torch.set_num_threads(args.threads)
    rows = []
    for v in args.variants.split(","):
        rows.append(run(v, args.steps))
        r = rows[-1]
        print(f"{v:<13} held-out shape {r['heldout_shape']:6.1%}  train-split {r['train_split_shape']:6.1%}  "
              f"loss {r['final_loss']:.3f}  {r['train_seconds']:.0f} s", flush=True)
    from edgeclip._io import write_json_atomic

    write_json_atomic(Path(args.out), {"machine": machine(args.threads), "steps": args.steps, "batch": 64,
                                       "rows": rows})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
