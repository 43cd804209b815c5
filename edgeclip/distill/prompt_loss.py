"""The label prompt loss: the synthetic world's labels as text (UniCL, Yang et al. 2022), added to
the CLIP loss when a teacher pretrains.

For every scene whose objects share one shape (one colour), the image embedding is scored against
the text embeddings of the 8 shape (8 colour) classes -- each class the mean of its zero-shot
prompt templates, in every pretraining language -- and the cross-entropy added with ``weight``.
In-batch captions differ in easier attributes long before shape, so the CLIP loss alone learns
shape slowly; this term asks for it directly.

On a factored image tower (one that names ``slices``, ``models/_factored.py``) a kind's term sees
the image's own stream only, the other slices zeroed, against the *whole* prompt embedding. So
the term is best when a shape prompt has nothing in the colour slice: at evaluation, an orange
square's colour then barely pulls a shape prompt, although no square is ever orange in training
(``benchmarks/shape_streams.py``, ``--mask-prompts``: held-out shape 84% against 65% unmasked).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["PROMPT_KINDS", "scene_labels", "PromptLoss"]

PROMPT_KINDS = ("shape", "colour")


def scene_labels(scene) -> tuple[int, ...]:
    """Per ``PROMPT_KINDS``: the class all of ``scene``'s objects share, or -1 when they differ."""
    from ..data import class_labels

    out = []
    for kind in PROMPT_KINDS:
        vals = {getattr(o, kind) for o in scene.objects}
        out.append(list(class_labels(kind).values).index(vals.pop()) if len(vals) == 1 else -1)
    return tuple(out)


class PromptLoss:
    """``loss(image_emb, prompt_emb, labels, scale)``; ``prompts`` are the texts to embed each step
    (``prompt_emb`` is the text tower's output for them, in this order)."""

    def __init__(self, langs: tuple[str, ...], weight: float, slices: dict[str, slice] | None = None):
        from ..data import class_labels

        self.weight, self.slices, self.langs = float(weight), dict(slices or {}), tuple(langs)
        self.prompts: list[str] = []
        self._groups: list[tuple[int, int, int, int]] = []   # (kind index, start, classes, templates)
        for ki, kind in enumerate(PROMPT_KINDS):
            labels = class_labels(kind)
            for lang in langs:
                per_class = labels.prompts(lang)
                self._groups.append((ki, len(self.prompts), len(per_class), len(per_class[0])))
                self.prompts += [p for per in per_class for p in per]

    def _view(self, image: torch.Tensor, kind: str) -> torch.Tensor:
        keep = self.slices.get(kind)
        if keep is None:
            return image
        mask = torch.zeros(image.shape[1], dtype=image.dtype, device=image.device)
        mask[keep] = 1
        return F.normalize(image * mask, dim=-1)

    def __call__(self, image: torch.Tensor, prompt_emb: torch.Tensor, labels: torch.Tensor,
                 scale: torch.Tensor) -> torch.Tensor:
        total = image.new_zeros(())
        for ki, start, k, t in self._groups:
            y = labels[:, ki]
            rows = y >= 0
            if not bool(rows.any()):
                continue
            protos = F.normalize(prompt_emb[start:start + k * t].reshape(k, t, -1).mean(1), dim=-1)
            logits = scale * self._view(image[rows], PROMPT_KINDS[ki]) @ protos.t()
            total = total + F.cross_entropy(logits, y[rows])
        return self.weight * total / len(self.langs)   # each language's prompts, on average
