"""Parallel captions from a user's CSV/TSV: one image per row and one caption column per language
(DC-CLIP's training pairs). Columns default to ``caption_<lang>`` and can be named per language::

    data:
      train: {source: csv, path: pairs.csv, languages: [en, zh]}              # caption_en, caption_zh
      train: {source: csv, path: pairs.tsv, languages: [en, zh], captions: {en: english, zh: chinese}}

A row with an empty caption in any language is a bad sample (skipped and counted, or an error under
``on_bad_image: fail``), found before its image is decoded.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from ..errors import ConfigError, InputError
from .loaders import CsvLoader, csv_header

__all__ = ["ParallelCsvLoader", "parallel_columns"]


def parallel_columns(languages: Sequence[str], columns: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caption column of each language: ``columns[lang]`` where given, else ``caption_<lang>``."""
    columns = dict(columns or {})
    extra = sorted(set(columns) - set(languages))
    if extra:
        raise ConfigError(f"captions: names columns for {', '.join(map(repr, extra))}, which are not among "
                          f"languages {list(languages)}; add them to languages or drop them")
    return {lang: str(columns.get(lang, f"caption_{lang}")) for lang in languages}


class ParallelCsvLoader(CsvLoader):
    """Iterable of ``(image uint8 HWC, {lang: caption})``; ``stats`` as for every loader."""

    def __init__(self, path: str | os.PathLike, languages: Sequence[str],
                 captions: Mapping[str, str] | None = None, image_col: str | None = None,
                 sep: str | None = None, on_bad_image: str = "skip", rank: int = 0, world_size: int = 1):
        self.langs = tuple(languages)
        if len(self.langs) < 2:
            raise ConfigError(f"parallel captions need at least two languages, got {list(self.langs)}")
        self.columns = parallel_columns(self.langs, captions)
        _, header = csv_header(Path(path), sep)
        missing = [c for c in self.columns.values() if c not in header]
        if missing:
            raise InputError(
                f"{path} has no caption column {', '.join(map(repr, missing))} for parallel captions in "
                f"{list(self.langs)}; columns found: {', '.join(map(repr, header)) or '(none)'}; name each "
                "language's column with captions: {" + ", ".join(f"{lang}: COLUMN" for lang in self.langs)
                + "} in data.train")
        super().__init__(path, image_col=image_col, caption_col=self.columns[self.langs[0]], sep=sep,
                         on_bad_image=on_bad_image, rank=rank, world_size=world_size)

    def _samples(self, index: int, count: int) -> Iterator[tuple]:
        first = self.langs[0]
        for name, load, caption, meta in super()._samples(index, count):
            caps = {lang: (caption if lang == first else meta.get(col) or "").strip()
                    for lang, col in self.columns.items()}
            empty = [self.columns[lang] for lang, c in caps.items() if not c]
            if empty:  # before the image is decoded
                self.bad(name, f"empty caption column {', '.join(map(repr, empty))}", what="row")
                continue
            yield name, load, caps, meta

    def captions(self) -> Iterator[dict[str, str]]:
        """``{lang: caption}`` of every usable row of the whole file (all ranks), images not decoded:
        what a tokenizer trains on."""
        for _, _, caps, _ in self._samples(0, 1):
            yield caps

    def __iter__(self) -> Iterator[tuple]:
        for image, caps, _ in super().__iter__():
            yield image, caps
