"""Loaders for user image-text data. Each yields ``(image uint8 HWC, caption str, meta dict)``.

- ``CsvLoader``: a CSV/TSV with an image-path column (relative to the file) and a caption column.
- ``FolderLoader``: a folder of images with ``captions.jsonl`` or ``captions.tsv``.
- ``WebDatasetLoader`` (in ``webdataset.py``): tar shards as open_clip and MobileCLIP use them.
- ``open_dataset``: picks one of them from the shape of a path.

A missing or corrupt image is skipped and counted (``on_bad_image="skip"``; see
``loader.stats``, logged at the end of each pass) or raises InputError naming it ("fail").
"""
from __future__ import annotations

import csv
import json
import os
from functools import partial
from pathlib import Path
from typing import Iterator, Sequence

from ..errors import InputError
from ._base import BadImage, BaseLoader, decode_image
from .webdataset import WebDatasetLoader

__all__ = ["CsvLoader", "FolderLoader", "WebDatasetLoader", "open_dataset",
           "IMAGE_COLUMNS", "CAPTION_COLUMNS"]

# Tried in order when no column is named (open_clip's CSVs use "filepath" and "title").
IMAGE_COLUMNS = ("filepath", "image", "image_path", "file", "filename", "path")
CAPTION_COLUMNS = ("caption", "title", "text")


def _load(path: Path):
    if not path.name:
        raise BadImage("empty image path")
    return decode_image(path, str(path))


def _pick(found: Sequence[str], wanted: str | None, defaults: Sequence[str]) -> str | None:
    if wanted is not None:
        return wanted if wanted in found else None
    return next((c for c in defaults if c in found), None)


def csv_header(path: Path, sep: str | None = None) -> tuple[str, tuple[str, ...]]:
    """``(separator, column names)`` of a CSV/TSV; ``sep`` defaults to tab for ``.tsv``, comma otherwise."""
    if not path.is_file():
        raise InputError(f"CSV file {path} not found")
    sep = sep or ("\t" if path.suffix.lower() == ".tsv" else ",")
    with path.open(newline="", encoding="utf-8") as f:
        return sep, tuple(next(csv.reader(f, delimiter=sep), []))


class CsvLoader(BaseLoader):
    """Rows of ``image_col`` (path relative to the CSV, or absolute) and ``caption_col``; the
    other columns go into ``meta``. ``sep`` defaults to tab for ``.tsv``, comma otherwise."""

    def __init__(self, path: str | os.PathLike, image_col: str | None = None,
                 caption_col: str | None = None, sep: str | None = None,
                 on_bad_image: str = "skip", rank: int = 0, world_size: int = 1):
        super().__init__(on_bad_image, rank, world_size)
        self.path = Path(path)
        self.sep, header = csv_header(self.path, sep)
        self.image_col = _pick(header, image_col, IMAGE_COLUMNS)
        self.caption_col = _pick(header, caption_col, CAPTION_COLUMNS)
        missing = [f"{what} column {want!r}" if want else f"{what} column (tried {', '.join(tried)})"
                   for what, got, want, tried in (
                       ("image", self.image_col, image_col, IMAGE_COLUMNS),
                       ("caption", self.caption_col, caption_col, CAPTION_COLUMNS)) if got is None]
        if missing:
            raise InputError(
                f"{self.path} has no {' and no '.join(missing)}; columns found: "
                f"{', '.join(map(repr, header)) or '(none)'} (separator {self.sep!r}); "
                "name the right ones with image_col= and caption_col=")

    def _samples(self, index: int, count: int) -> Iterator[tuple]:
        root = self.path.parent
        with self.path.open(newline="", encoding="utf-8") as f:
            rows = csv.DictReader(f, delimiter=self.sep)
            for i, row in enumerate(rows):
                if i % count != index:
                    continue
                rel = (row.get(self.image_col) or "").strip()
                img = root / rel if rel else Path("")
                # (a row longer than the header puts its surplus under the key None: dropped)
                meta = {k: v for k, v in row.items()
                        if k is not None and k not in (self.image_col, self.caption_col)}
                meta.update(source="csv", path=str(img), row=i)
                yield (f"{self.path}:{rows.line_num} ({rel or 'empty'})", partial(_load, img),
                       row.get(self.caption_col) or "", meta)


_JSON_IMAGE_KEYS = ("file", "image", "path", "filename", "filepath")
_JSON_CAPTION_KEYS = ("caption", "text", "title")


class FolderLoader(BaseLoader):
    """A folder of images plus ``captions.jsonl`` (``{"file": ..., "caption": ...}`` per line,
    other keys into meta) or ``captions.tsv`` (``file<TAB>caption``, optional header line).
    Image paths are relative to the folder."""

    CAPTION_FILES = ("captions.jsonl", "captions.tsv")

    def __init__(self, root: str | os.PathLike, captions: str | os.PathLike | None = None,
                 on_bad_image: str = "skip", rank: int = 0, world_size: int = 1):
        super().__init__(on_bad_image, rank, world_size)
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"image folder {self.root} not found")
        if captions is None:
            found = [self.root / n for n in self.CAPTION_FILES if (self.root / n).is_file()]
            if not found:
                raise InputError(f"{self.root} has no {' or '.join(self.CAPTION_FILES)}; add one "
                                 "or pass captions=PATH")
            captions = found[0]
        self.captions = Path(captions) if Path(captions).is_absolute() else self.root / captions
        if not self.captions.is_file():
            raise InputError(f"captions file {self.captions} not found")

    def _entries(self) -> Iterator[tuple[int, str, str | None, dict]]:
        """(line number, image path or error, caption or None, extra) per non-empty line."""
        is_tsv = self.captions.suffix.lower() == ".tsv"
        with self.captions.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                line = line.rstrip("\n\r")
                if not line.strip():
                    continue
                if is_tsv:
                    file, tab, cap = line.partition("\t")
                    if n == 1 and file.strip().lower() in _JSON_IMAGE_KEYS:
                        continue  # header line
                    if tab:
                        yield n, file.strip(), cap.strip(), {}
                    else:
                        yield n, "", None, {"error": "no tab between file and caption"}
                    continue
                try:
                    obj = json.loads(line)
                    if not isinstance(obj, dict):
                        raise ValueError("not a JSON object")
                except ValueError as e:
                    yield n, "", None, {"error": f"invalid JSON ({e})"}
                    continue
                file = next((obj.pop(k) for k in _JSON_IMAGE_KEYS if k in obj), "")
                cap = next((obj.pop(k) for k in _JSON_CAPTION_KEYS if k in obj), None)
                yield n, str(file), None if cap is None else str(cap), obj

    def _samples(self, index: int, count: int) -> Iterator[tuple]:
        for i, (n, file, cap, extra) in enumerate(self._entries()):
            if i % count != index:
                continue
            where = f"{self.captions}:{n}"
            if cap is None or not file:
                why = extra.get("error") or ("no caption" if file else "no image file named")
                self.bad(where, f"{why}; expected keys {_JSON_IMAGE_KEYS[0]!r} and "
                                f"{_JSON_CAPTION_KEYS[0]!r}", what="captions line")
                continue
            img = self.root / file
            meta = {**extra, "source": "folder", "path": str(img), "line": n}
            yield f"{img} ({where})", partial(_load, img), cap, meta


def open_dataset(source: str | os.PathLike | Sequence[str], **kwargs) -> BaseLoader:
    """A loader chosen by the shape of ``source``: a folder, a ``.csv``/``.tsv`` file, or tar
    shards (a ``.tar`` path, a brace or glob pattern, ``::``-joined sources, or a list)."""
    if isinstance(source, (list, tuple)):
        return WebDatasetLoader(source, **kwargs)
    s = str(source)
    if os.path.isdir(s):
        return FolderLoader(s, **kwargs)
    if s.lower().endswith((".csv", ".tsv")):
        return CsvLoader(s, **kwargs)
    if ".tar" in s or "::" in s or any(c in s for c in "{*?["):
        return WebDatasetLoader(s, **kwargs)
    raise InputError(f"cannot tell what kind of dataset {s!r} is; give a folder with "
                     "captions.jsonl/.tsv, a .csv/.tsv file, or .tar shards")
