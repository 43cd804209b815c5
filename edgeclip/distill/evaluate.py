"""Zero-shot accuracy on the synthetic world's labelled sets: how a trained CLIP is judged.

Class embeddings average the label set's prompt templates ("a photo of a {}.", ...), as CLIP's
zero-shot protocol does. Every class of the label set is a candidate, so chance is ``1/K``
(with ``restrict=True`` only the classes present in the set: the 8 held-out shape-colour
pairs instead of all 64).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["ZeroShotScore", "class_embeddings", "zero_shot_accuracy", "evaluate_synthetic", "retrieval_r1",
           "DEFAULT_KINDS"]

DEFAULT_KINDS = ("shape", "colour", "shape-colour")


@dataclass(frozen=True)
class ZeroShotScore:
    kind: str
    split: str
    accuracy: float
    chance: float
    n: int
    classes: int

    def __str__(self) -> str:
        return (f"{self.kind:<13} {self.split:<8} top-1 {self.accuracy:6.1%}  "
                f"(chance {self.chance:.1%}, {self.classes} classes, n={self.n})")


def class_embeddings(model, prompts: list[list[str]]) -> torch.Tensor:
    """Per class, the L2-normalized mean of its prompts' text embeddings: ``[K, D]``."""
    flat = [p for per in prompts for p in per]
    emb = model.encode_text(flat).reshape(len(prompts), len(prompts[0]), -1).mean(1)
    return emb / emb.norm(dim=-1, keepdim=True)


def zero_shot_accuracy(model, kind: str, n: int = 200, split: str = "heldout", seed: int = 0,
                       lang: str = "en", restrict: bool = False) -> ZeroShotScore:
    """Top-1 zero-shot accuracy of ``model`` (a ``ClipModel``) on ``labelled_eval_set(n, kind)``."""
    from ..data import labelled_eval_set

    ev = labelled_eval_set(n, kind, split=split, seed=seed, image_size=model.facts.image_size)
    prompts = ev.labels_set.prompts(lang)
    candidates = np.unique(ev.labels) if restrict else np.arange(len(prompts))
    cls = class_embeddings(model, [prompts[i] for i in candidates])
    img = model.encode_image(ev.images)
    pred = candidates[(img @ cls.to(img.device).t()).argmax(1).cpu().numpy()]
    return ZeroShotScore(kind, split, float((pred == ev.labels).mean()), 1.0 / len(candidates),
                         len(ev), len(candidates))


def evaluate_synthetic(model, kinds=DEFAULT_KINDS, n: int = 200, split: str = "heldout",
                       seed: int = 0, lang: str = "en") -> dict[str, ZeroShotScore]:
    return {k: zero_shot_accuracy(model, k, n=n, split=split, seed=seed, lang=lang) for k in kinds}


def retrieval_r1(model, n: int = 200, split: str = "heldout", seed: int = 0, lang: str = "en") -> dict[str, float]:
    """Image->text and text->image recall@1 over ``n`` scenes of the synthetic world with their
    canonical captions. A retrieved caption counts when its text equals the true one (two scenes
    can share a caption), a retrieved image when its caption does."""
    from ..data import SyntheticWorld

    world = SyntheticWorld(seed=seed, image_size=model.facts.image_size, split=split, length=n, lang=lang)
    items = [world[i] for i in range(n)]
    caps = [c for _, c, _ in items]
    img = model.encode_image(np.stack([im for im, _, _ in items]))
    txt = model.encode_text(caps).to(img.device)
    sims = (img @ txt.t()).cpu().numpy()
    same = np.array([[a == b for b in caps] for a in caps])
    rows = np.arange(n)
    i2t = same[rows, sims.argmax(1)].mean()
    t2i = same[sims.argmax(0), rows].mean()
    return {"i2t_r1": float(i2t), "t2i_r1": float(t2i), "chance": float(same.sum(1).mean() / n), "n": n}
