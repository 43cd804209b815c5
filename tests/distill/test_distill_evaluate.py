"""retrieval_r1 on the synthetic world: a model that knows each caption scores 1, one that
confuses them scores near chance."""
from __future__ import annotations

import numpy as np
import torch

from edgeclip.distill.evaluate import retrieval_r1


class _CaptionOracle:
    """Embeds an image by its scene's caption (looked up from the pixels) and a text by itself:
    a perfect retriever. ``shuffle`` maps every text to another caption's code."""

    def __init__(self, world_items, shuffle: bool = False):
        caps = sorted({c for _, c, _ in world_items})
        self.code = {c: i for i, c in enumerate(caps)}
        self.by_pixels = {im.tobytes(): c for im, c, _ in world_items}
        self.dim, self.shuffle = len(caps), shuffle
        self.facts = type("F", (), {"image_size": world_items[0][0].shape[0]})()

    def _onehot(self, idx):
        return torch.nn.functional.one_hot(torch.tensor(idx), self.dim).float()

    def encode_image(self, images):
        return self._onehot([self.code[self.by_pixels[im.tobytes()]] for im in images])

    def encode_text(self, texts):
        idx = [self.code[t] for t in texts]
        return self._onehot([(i + 1) % self.dim for i in idx] if self.shuffle else idx)


def test_retrieval_r1_perfect_and_confused():
    from edgeclip.data import SyntheticWorld

    world = SyntheticWorld(seed=0, image_size=32, split="heldout", length=60)
    items = [world[i] for i in range(60)]
    perfect = retrieval_r1(_CaptionOracle(items), n=60)
    assert perfect["i2t_r1"] == 1.0 and perfect["t2i_r1"] == 1.0
    assert 1 / 60 <= perfect["chance"] < 0.1
    confused = retrieval_r1(_CaptionOracle(items, shuffle=True), n=60)
    assert confused["i2t_r1"] < 0.1 and confused["t2i_r1"] < 0.1
    assert np.isfinite(confused["chance"])
