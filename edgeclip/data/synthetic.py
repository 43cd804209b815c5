"""The embedded synthetic image-caption world: the offline default for training and evaluation.

Scenes hold 1-3 objects (shape, colour, size, texture, position), counts ("two red circles")
or a relation between two objects ("a small red square left of a large blue circle"), on a
coloured, textured background. Each scene has parallel English and Chinese captions and
several paraphrases per language. Some shape-colour pairs (``HELDOUT_PAIRS``) never appear in
the train split: the "heldout" split is made of scenes containing them, for zero-shot tests.

Everything is a pure function of ``(seed, split, index)``, so item ``i`` is the same in every
process, worker and run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..errors import ConfigError
from ._captions import CANONICAL, LANGS, describe, paraphrase_styles
from ._render import render
from ._scene import SCENE_KINDS, TRAIN_PAIRS, Scene, sample_scene
from ._vocab import (
    COLOURS, COUNTS, HELDOUT_PAIRS, POSITIONS, SHAPES, SIZES, TEXTURES, WORDS,
)

__all__ = [
    "SyntheticWorld", "Scene", "LabelSet", "EvalSet", "SPLITS", "LABEL_KINDS",
    "SHAPES", "COLOURS", "SIZES", "TEXTURES", "POSITIONS", "HELDOUT_PAIRS", "TRAIN_PAIRS",
    "SCENE_KINDS", "caption", "paraphrases", "render_scene", "class_labels", "labelled_eval_set",
]

SPLITS = ("train", "heldout")
LABEL_KINDS = ("shape", "colour", "shape-colour", "size", "texture", "count", "position")


def _split_code(split: str) -> int:
    if split not in SPLITS:
        raise ConfigError(f"unknown synthetic split {split!r}; known: {', '.join(SPLITS)}")
    return SPLITS.index(split)


def _check_lang(lang: str) -> None:
    if lang not in LANGS:
        raise ConfigError(f"unknown caption language {lang!r}; known: {', '.join(LANGS)}")


def caption(scene: Scene, lang: str = "en") -> str:
    """The canonical caption: every attribute of the scene, background included."""
    return describe(scene, lang, CANONICAL)


def paraphrases(scene: Scene, n: int, lang: str = "en", seed: int = 0) -> list[str]:
    """``n`` distinct, truthful rewordings of ``scene`` (the offline stand-in for synthetic
    captions). Index ``k`` of the English and Chinese lists describes the same content."""
    _check_lang(lang)
    return [describe(scene, lang, st) for st in paraphrase_styles(scene, n, seed)]


def render_scene(scene: Scene, image_size: int = 64) -> np.ndarray:
    """uint8[image_size, image_size, 3], C-contiguous."""
    return render(scene, int(image_size))


class SyntheticWorld:
    """Map-style dataset of ``length`` scenes; item ``i`` is ``(image uint8 HWC, caption, meta)``.

    ``lang`` picks the caption language (meta holds both); ``paraphrase=True`` returns a
    paraphrase that changes with ``set_epoch`` instead of the canonical caption. Works as is
    with ``torch.utils.data.DataLoader`` (or wrap it with ``as_torch_dataset``)."""

    def __init__(self, seed: int = 0, image_size: int = 64, split: str = "train",
                 length: int = 10_000, lang: str = "en", paraphrase: bool = False):
        if image_size < 8:
            raise ConfigError(f"synthetic image_size must be >= 8, got {image_size}")
        _check_lang(lang)
        self.seed, self.image_size, self.split = int(seed), int(image_size), split
        self.length, self.lang, self.paraphrase = int(length), lang, paraphrase
        self._code = _split_code(split)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def scene(self, index: int) -> Scene:
        rng = np.random.default_rng([self.seed, self._code, int(index)])
        return sample_scene(rng, heldout=self._code == 1)

    def __getitem__(self, index: int) -> tuple[np.ndarray, str, dict]:
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} scenes")
        index %= self.length
        s = self.scene(index)
        en, zh = caption(s, "en"), caption(s, "zh")
        text = en if self.lang == "en" else zh
        if self.paraphrase:
            text = paraphrases(s, 1, self.lang, seed=self.epoch)[0]
        meta = {"index": index, "split": self.split, "caption_en": en, "caption_zh": zh,
                **s.to_meta()}
        return render(s, self.image_size), text, meta

    def __iter__(self) -> Iterator[tuple[np.ndarray, str, dict]]:
        return (self[i] for i in range(self.length))


@dataclass(frozen=True)
class LabelSet:
    """Zero-shot classes of one attribute kind, with prompt templates in both languages."""

    kind: str
    values: tuple            # attribute value per class: "square", ("square", "red"), 2, ...
    names: tuple[str, ...]   # English class names, e.g. "red square"
    names_zh: tuple[str, ...]
    templates: tuple[str, ...]     # "a photo of a {}."
    templates_zh: tuple[str, ...]  # "一张{}的照片"

    def __len__(self) -> int:
        return len(self.values)

    def prompts(self, lang: str = "en") -> list[list[str]]:
        """Per class, every template filled with its name (average their embeddings)."""
        _check_lang(lang)
        names, tmpl = (self.names, self.templates) if lang == "en" else (self.names_zh, self.templates_zh)
        return [[t.format(n) for t in tmpl] for n in names]


def _zh(kind: str, v) -> str:
    return WORDS[kind][v][1][0]


_OBJ_T = (("a photo of a {}.", "a rendering of a {}.", "a drawing of a {}."),
          ("一张{}的照片", "一个{}的渲染图", "一幅{}的画"))
_ATTR_T = (("a photo of a {} shape.", "a rendering of a {} shape.", "a {} object."),
           ("一张{}图形的照片", "一个{}图形的渲染图", "一个{}的物体"))


def class_labels(kind: str) -> LabelSet:
    """Classes for ``kind`` in LABEL_KINDS: shape, colour, shape-colour, size, texture, count,
    position. Label ``i`` of ``labelled_eval_set`` is class ``i`` here."""
    if kind in ("shape", "shape-colour"):
        values = SHAPES if kind == "shape" else tuple((s, c) for s in SHAPES for c in COLOURS)
        en = values if kind == "shape" else tuple(f"{c} {s}" for s, c in values)
        zh = tuple(_zh("shape", v) for v in values) if kind == "shape" else tuple(
            _zh("colour", c) + _zh("shape", s) for s, c in values)
        return LabelSet(kind, values, en, zh, *_OBJ_T)
    if kind in ("colour", "size", "texture"):
        values = {"colour": COLOURS, "size": SIZES, "texture": TEXTURES}[kind]
        return LabelSet(kind, values, values, tuple(_zh(kind, v) for v in values), *_ATTR_T)
    if kind == "count":
        en = tuple(f"{WORDS['count'][n][0][0]} shape{'s' if n > 1 else ''}" for n in COUNTS)
        zh = tuple(f"{_zh('count', n)}个图形" for n in COUNTS)
        return LabelSet(kind, COUNTS, en, zh, ("a photo of {}.", "a rendering of {}.",
                        "an image with {}."), ("一张有{}的照片", "有{}的渲染图", "图中有{}"))
    if kind == "position":
        en = tuple(WORDS["position"][p][0][0] for p in POSITIONS)
        zh = tuple(_zh("position", p) for p in POSITIONS)
        return LabelSet(kind, POSITIONS, en, zh,
                        ("a photo of a shape {}.", "a rendering of a shape {}.", "an object {}."),
                        ("一张图形在画面{}的照片", "图形位于画面{}的渲染图", "一个物体在{}"))
    raise ConfigError(f"unknown label kind {kind!r}; known: {', '.join(LABEL_KINDS)}")


@dataclass(frozen=True)
class EvalSet:
    """A labelled zero-shot evaluation set."""

    images: np.ndarray        # uint8[N, H, W, 3], C-contiguous
    labels: np.ndarray        # int64[N], indices into label_names
    label_names: tuple[str, ...]
    captions: list[str]       # canonical English caption of each image
    captions_zh: list[str]
    labels_set: LabelSet

    def __len__(self) -> int:
        return len(self.labels)


def _allowed(kind: str, split: str, values: tuple) -> list[int]:
    """Class indices that can occur in ``split`` (held-out pairs only in "heldout")."""
    if kind != "shape-colour":
        return list(range(len(values)))
    pool = HELDOUT_PAIRS if split == "heldout" else set(TRAIN_PAIRS)
    return [i for i, v in enumerate(values) if v in pool]


def labelled_eval_set(n: int, kind: str, split: str = "heldout", seed: int = 0,
                      image_size: int = 64) -> EvalSet:
    """``n`` labelled images, classes balanced (cycled in order). Held-out images always show a
    held-out shape-colour pair, so "heldout" measures compositional zero-shot transfer."""
    code, labels_set = _split_code(split), class_labels(kind)
    classes = _allowed(kind, split, labels_set.values)
    kind_code = LABEL_KINDS.index(kind)
    images = np.empty((n, image_size, image_size, 3), np.uint8)
    labels, en, zh = np.empty(n, np.int64), [], []
    for i in range(n):
        label = classes[i % len(classes)]
        v = labels_set.values[label]
        scene_kind = "count" if kind == "count" and v > 1 else "single"
        if kind == "shape-colour":
            force = {"shape": v[0], "colour": v[1]}
        elif kind == "count":
            force = {"count": v} if v > 1 else {}
        else:
            force = {kind: v}
        rng = np.random.default_rng([seed, 1000 + code, kind_code, i])
        s = sample_scene(rng, heldout=code == 1, kind=scene_kind, **force)
        images[i], labels[i] = render(s, image_size), label
        en.append(caption(s, "en"))
        zh.append(caption(s, "zh"))
    return EvalSet(images, labels, labels_set.names, en, zh, labels_set)
