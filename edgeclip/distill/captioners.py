"""Synthetic captions for dataset reinforcement (MobileCLIP stores 5 CoCa captions per image).

``make_captioner(spec, source_world=None)`` -> ``captioner(images, captions, metas, n) -> list[list[str]]``:

- ``paraphrase``: the embedded world's truthful rewordings of each scene (the offline stand-in
  for a captioning model); needs samples of the synthetic source (their meta names the scene).
- ``coca:NAME/TAG``: open_clip CoCa's ``generate`` (e.g. ``coca:coca_ViT-L-14/mscoco_finetuned_laion2B-s13B-b90k``,
  the captioner MobileCLIP used); weights are downloaded by open_clip or read from
  ``coca:NAME//path/to/weights.bin``. Sampled with top-p so the n captions differ.
- ``none``: the ground-truth caption repeated (reinforcement with stored embeddings only).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import ConfigError, InputError

__all__ = ["make_captioner", "CAPTIONERS"]

CAPTIONERS = ("paraphrase", "coca:NAME/TAG", "none")
Captioner = Callable[[list, list, list, int], list]


def _paraphrase(world) -> Captioner:
    from ..data import paraphrases

    def caption(images, captions, metas, n):
        out = []
        for meta in metas:
            if meta.get("source", "synthetic") != "synthetic" or "index" not in meta:
                raise ConfigError("captioner paraphrase needs samples of the embedded world (data.train.source: "
                                  "synthetic); use coca:NAME/TAG or none for other data")
            scene = world.scene(int(meta["index"]))
            out.append(paraphrases(scene, n, world.lang, seed=world.seed + 1))
        return out

    return caption


def _none(images, captions, metas, n):
    return [[c] * n for c in captions]


def _coca(spec: str) -> Captioner:
    import open_clip
    import torch

    name, _, tag = spec.partition("/")
    kwargs = {}
    if tag.startswith("/"):
        kwargs["pretrained"] = tag[1:]
    elif tag:
        kwargs["pretrained"] = tag
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name, **kwargs)
    except Exception as e:  # offline, unknown name, missing file: one line that says how to fix it
        raise InputError(f"captioner coca:{spec}: cannot load ({type(e).__name__}: {e}); give a local "
                         f"weights file as coca:{name}//path/to/weights.bin or use captioner: none") from None
    model.eval()

    def caption(images, captions, metas, n):
        from PIL import Image

        out = []
        for img in images:
            x = preprocess(Image.fromarray(np.ascontiguousarray(img[..., :3]))).unsqueeze(0)
            texts = []
            with torch.no_grad():
                for _ in range(n):
                    ids = model.generate(x, generation_type="top_p", top_p=0.9, seq_len=30)
                    t = open_clip.decode(ids[0]).split("<end_of_text>")[0].replace("<start_of_text>", "")
                    texts.append(t.strip())
            out.append(texts)
        return out

    return caption


def make_captioner(spec: str, world=None) -> Captioner:
    if spec == "paraphrase":
        if world is None:
            raise ConfigError("captioner paraphrase needs data.train.source: synthetic (it rewords the "
                              "embedded world's scenes); use coca:NAME/TAG or none for other data")
        return _paraphrase(world)
    if spec == "none":
        return _none
    if spec.startswith("coca:") and len(spec) > 5:
        return _coca(spec[5:])
    raise ConfigError(f"captioner {spec!r} is unknown; use one of {', '.join(CAPTIONERS)}")
