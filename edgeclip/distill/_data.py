"""Training batches for distillation methods from a recipe's ``data.train`` source.

``distill_batches(source, student, teacher, batch_size, seed)`` gives the ``Trainer`` either a
``StepBatches`` (map-style sources: the synthetic world; resumable, rank-sharded) or an endless
iterator of batches over a streaming user loader (CSV, folder, WebDataset shards; each rank reads
its own shard). A batch is ``(pixels, ids, teacher_pixels, teacher_ids)``: the teacher gets its
own preprocessing and tokenizer when they differ from the student's, the same tensors otherwise.
"""
from __future__ import annotations

from typing import Any, Iterator

import torch

from ..errors import ConfigError

__all__ = ["DistillCollate", "InterleavedPairs", "ParallelPairs", "training_pairs", "parallel_pairs",
           "distill_batches", "stream_batches"]


def _same_inputs(a, b) -> bool:
    fa, fb = a.facts, b.facts
    same_pre = (fa.image_size, fa.mean, fa.std, fa.resize_mode) == (fb.image_size, fb.mean, fb.std, fb.resize_mode)
    same_tok = (type(a.tokenizer) is type(b.tokenizer) and fa.context_length == fb.context_length
                and fa.vocab_size == fb.vocab_size)
    return same_pre and same_tok


class DistillCollate:
    """``[(image, caption, meta), ...]`` -> ``(pixels, ids, teacher_pixels, teacher_ids)``."""

    def __init__(self, student, teacher):
        from .pretrain import ClipCollate

        self.student = ClipCollate(student.facts, student.tokenizer)
        self.teacher = None if _same_inputs(student, teacher) else ClipCollate(teacher.facts, teacher.tokenizer)

    def __call__(self, items: list) -> tuple[torch.Tensor, ...]:
        pixels, ids = self.student(items)
        if self.teacher is None:
            return pixels, ids, pixels, ids
        t_pixels, t_ids = self.teacher(items)
        return pixels, ids, t_pixels, t_ids


class InterleavedPairs:
    """Several same-length pair datasets (one per caption language) taken in turn, group by group
    (a scene and its twin stay together): item ``i`` of unit ``u`` comes from dataset ``u % n``."""

    def __init__(self, datasets: list):
        if len({len(d) for d in datasets}) != 1 or len({getattr(d, "group", 1) for d in datasets}) != 1:
            raise ConfigError("interleaved datasets must have one length and one group size")
        self.datasets, self.group = datasets, getattr(datasets[0], "group", 1)

    def __len__(self) -> int:
        return len(self.datasets[0]) * len(self.datasets)

    def set_epoch(self, epoch: int) -> None:
        for d in self.datasets:
            if hasattr(d, "set_epoch"):
                d.set_epoch(epoch)

    def __getitem__(self, i: int):
        g, n = self.group, len(self.datasets)
        unit, off = divmod(int(i), g)
        return self.datasets[unit % n][(unit // n) * g + off]


def training_pairs(source, image_size: int, seed: int, rank: int = 0, world_size: int = 1):
    """A map-style dataset (synthetic) or a streaming loader (user data) of (image, caption, meta)."""
    if source.source == "synthetic":
        from .pretrain import default_pretrain_data

        pool = min(source.samples or 4096, 4096)
        renders: dict = {}   # every language's pool holds the same scenes: render each once
        sets = [default_pretrain_data(source.image_size or image_size, seed, pool=pool, lang=lang, renders=renders)
                for lang in source.languages]
        return sets[0] if len(sets) == 1 else InterleavedPairs(sets)
    if source.source in ("csv", "folder", "webdataset"):
        from ..data import open_dataset

        return open_dataset(source.path, on_bad_image=source.on_bad_image, rank=rank,
                            world_size=world_size, **source.options)
    raise ConfigError(f"data.train.source {source.source!r} cannot train a model; use synthetic, "
                      "csv, folder or webdataset")


def stream_batches(loader, collate, batch_size: int) -> Iterator[Any]:
    """Endless batches over passes of a streaming loader (fails if a pass yields nothing)."""
    while True:
        items, seen = [], 0
        for item in loader:
            seen += 1
            items.append(item)
            if len(items) == batch_size:
                yield collate(items)
                items = []
        if seen < batch_size:
            stats = getattr(loader, "stats", None)
            raise ConfigError(f"training data has {seen} usable samples, fewer than one batch of "
                              f"{batch_size}" + (f" ({stats.summary()})" if stats else ""))


def distill_batches(source, student, teacher, batch_size: int, seed: int):
    """Batches for the ``Trainer`` (see the module docstring)."""
    import os

    from .batches import StepBatches

    # torchrun's environment (the trainer joins the group later; streaming loaders shard now)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    pairs = training_pairs(source, student.facts.image_size, seed, rank, world)
    collate = DistillCollate(student, teacher)
    if hasattr(pairs, "__getitem__") and hasattr(pairs, "__len__"):
        return StepBatches(pairs, batch_size, seed=seed, collate=collate, group=getattr(pairs, "group", 1))
    return stream_batches(pairs, collate, max(1, batch_size // world))


class ParallelPairs:
    """The embedded world's scenes with parallel captions: item ``i`` is ``(image, {lang: caption})``
    where every language's caption is paraphrase ``epoch % variants`` of the same scene (the
    paraphraser is parallel across languages by index), renders cached."""

    def __init__(self, world, langs: tuple[str, ...], variants: int = 4):
        self.world, self.langs, self.variants, self.epoch = world, tuple(langs), max(1, int(variants)), 0
        self._items: dict[int, tuple] = {}

    def __len__(self) -> int:
        return len(self.world)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, i: int):
        from ..data import paraphrases, render_scene

        if i not in self._items:
            s = self.world.scene(int(i))
            caps = {lang: paraphrases(s, self.variants, lang, seed=self.world.seed) for lang in self.langs}
            self._items[i] = (render_scene(s, self.world.image_size), caps)
        image, caps = self._items[i]
        return image, {lang: c[self.epoch % len(c)] for lang, c in caps.items()}


def parallel_pairs(source, image_size: int, seed: int, pool: int = 4096, rank: int = 0, world_size: int = 1):
    """Parallel-caption training pairs ``(image, {lang: caption})``: the embedded world's scenes
    (map-style ``ParallelPairs``) or a user's CSV/TSV with a caption column per language (a
    streaming ``ParallelCsvLoader``, this rank's rows)."""
    if len(source.languages) < 2:
        raise ConfigError("dcclip is multilingual: give data.train.languages at least two languages, e.g. [en, zh]")
    if source.source == "csv":
        from ..data.parallel import ParallelCsvLoader

        return ParallelCsvLoader(source.path, source.languages, source.captions, on_bad_image=source.on_bad_image,
                                 rank=rank, world_size=world_size, **source.options)
    if source.source != "synthetic":
        raise ConfigError(f"dcclip needs parallel captions in {list(source.languages)}; data.train.source "
                          f"{source.source!r} has one caption per image: use source: csv (a caption_<lang> column "
                          "per language) or source: synthetic")
    from ..data import SyntheticWorld

    world = SyntheticWorld(seed=seed, image_size=source.image_size or image_size, split="train",
                           length=min(source.samples or pool, pool), lang=source.languages[0])
    return ParallelPairs(world, source.languages)
