"""The fixed evaluation set of a build: real pixels and real captions plus the embedded world.

Each recipe ``data.eval`` source becomes a ``Group``: uint8 images at the model's resolution,
their captions (English, plus Chinese where asked), and — where the source has classes — the
labels and per-class prompt lists for zero-shot classification. The pipeline turns groups
into the reference bundle; the same groups drive every artifact's verification.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import DataSource
from ..errors import ConfigError

__all__ = ["Group", "load_eval_groups", "calibration_images", "label_domain", "labels_in_domain"]


@dataclass
class Group:
    name: str
    images: np.ndarray                  # uint8[N, S, S, 3], C-contiguous
    captions: dict[str, list[str]]      # lang -> one caption per image
    labels: np.ndarray | None = None    # int64[N] class index, or None
    class_names: tuple[str, ...] = ()
    class_prompts: dict[str, list[list[str]]] | None = None  # lang -> per class, templates
    skipped: int = 0                    # bad images left out under on_bad_image: skip
    bad: tuple[str, ...] = ()           # "name: reason" of the first few
    source: str = ""                    # the data source: synthetic, digits, photos, csv, folder, webdataset


def label_domain(recipe) -> str:
    """What the built model's weights learned: ``none`` (random init: a builtin without pretraining
    or distillation, an ``openclip:NAME`` without a tag), ``web`` (a pretrained ``openclip:NAME/TAG``,
    ``openclip:NAME//file`` or ``hf:`` checkpoint, and students distilled from one) or ``world``
    (edgeclip's own training on the embedded world: a pretrained builtin, a ``file:`` checkpoint,
    students distilled from those or from a random teacher)."""
    t = recipe.teacher
    if t.startswith("hf:") or (t.startswith("openclip:") and "/" in t[len("openclip:"):]):
        domain = "web"
    elif t.startswith("openclip:") or (t.startswith("builtin:") and not recipe.pretrain):
        domain = "none"
    else:
        domain = "world"
    return domain if not recipe.distill or domain == "web" else "world"


def labels_in_domain(source: str, domain: str) -> bool:
    """Does absolute zero-shot accuracy on a group from ``source`` mean something for weights of
    ``domain`` (``label_domain``)? Random weights: never; web-pretrained: every labelled source is a
    zero-shot task of theirs; the embedded world: its synthetic scenes, not digits or photos."""
    return domain == "web" or (domain == "world" and source == "synthetic")


def _synthetic(src: DataSource, size: int, seed: int) -> Group:
    from ..data.synthetic import labelled_eval_set
    kind = src.options.get("kind", "shape-colour")
    n = src.samples or 96
    ev = labelled_eval_set(n, kind, split=src.split, seed=seed, image_size=size)
    caps = {"en": list(ev.captions)}
    prompts = {"en": ev.labels_set.prompts("en")}
    if "zh" in src.languages:
        caps["zh"] = list(ev.captions_zh)
        prompts["zh"] = ev.labels_set.prompts("zh")
    return Group(f"synthetic-{src.split}-{kind}", np.ascontiguousarray(ev.images), caps,
                 ev.labels.astype(np.int64), tuple(ev.label_names), prompts, source="synthetic")


def _real(src: DataSource, size: int) -> Group:
    from ..data.real import digits_eval_set, photos_eval_set
    if src.source == "digits":
        per_class = max(1, (src.samples or 60) // 10)
        ev = digits_eval_set(size, per_class=per_class)
    else:
        ev = photos_eval_set(size)  # small and fixed: every photo that ships offline
    caps = {"en": list(ev.captions_en)}
    prompts = {"en": [[p] for p in ev.class_prompts_en]}
    if "zh" in src.languages:
        caps["zh"] = list(ev.captions_zh)
        prompts["zh"] = [[p] for p in ev.class_prompts_zh]
    return Group(src.source, np.ascontiguousarray(ev.images), caps, ev.labels.astype(np.int64),
                 tuple(ev.label_names), prompts, source=src.source)


def _user(src: DataSource, size: int) -> Group:
    from ..data import open_dataset, resize_crop
    try:
        ds = open_dataset(src.path, on_bad_image=src.on_bad_image, **src.options)
    except TypeError as e:  # make_plan checks option names; a hand-made DataSource lands here
        raise ConfigError(f"data source {src.source} at {src.path}: options {sorted(map(str, src.options))} "
                          f"not understood ({e})") from e
    images, caps = [], []
    for img, cap, _meta in ds:
        images.append(resize_crop(img, size, "bicubic", "center"))
        caps.append(cap)
        if src.samples and len(images) >= src.samples:
            break
    stats = getattr(ds, "stats", None)
    skipped, bad = (stats.skipped, tuple(stats.bad[:3])) if stats is not None else (0, ())
    if not images:
        raise ConfigError(f"data source {src.source} at {src.path} yielded no usable image-caption pairs"
                          + (f" ({skipped} bad images skipped, first: {bad[0]})" if bad else ""))
    return Group(f"{src.source}:{src.path}", np.ascontiguousarray(np.stack(images)), {"en": caps},
                 skipped=skipped, bad=bad, source=src.source)


def load_eval_groups(sources: tuple[DataSource, ...], image_size: int, seed: int = 0) -> list[Group]:
    groups = []
    for src in sources:
        if src.source == "synthetic":
            groups.append(_synthetic(src, image_size, seed))
        elif src.source in ("digits", "photos"):
            groups.append(_real(src, image_size))
        else:
            groups.append(_user(src, image_size))
    if not groups:
        raise ConfigError("data.eval is empty; verification needs at least one evaluation source")
    return groups


def calibration_images(n: int, image_size: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Calibration data disjoint from evaluation: embedded-world *train* scenes and captions."""
    from ..data.synthetic import SyntheticWorld
    world = SyntheticWorld(seed=seed + 7919, image_size=image_size, split="train", length=n)
    images, caps = [], []
    for i in range(n):
        img, cap, _ = world[i]
        images.append(img)
        caps.append(cap)
    return np.ascontiguousarray(np.stack(images)), caps
