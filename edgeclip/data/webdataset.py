"""WebDataset tar shards, streamed with the standard library's ``tarfile``.

The format open_clip and MobileCLIP train on: consecutive tar members sharing a key form one
sample (``000123.jpg``, ``000123.txt``, ``000123.json``). The key is the member path up to the
first dot of its file name, the extension the rest, lowercased (as the ``webdataset`` package
splits them). Shards are read front to back, never seeked, so gzip'd shards work too.
"""
from __future__ import annotations

import json
import os
import re
import tarfile
import zlib
from functools import partial
from typing import Iterator, Sequence

from ._base import BadImage, BaseLoader, decode_image
from .shards import expand_shards

__all__ = ["WebDatasetLoader", "split_member_name"]

_NAME = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "bmp")


def split_member_name(name: str) -> tuple[str, str] | None:
    """``"dir/000123.seg.png"`` -> ``("dir/000123", "seg.png")``; None without an extension."""
    m = _NAME.match(name)
    return (m.group(1), m.group(2).lower()) if m else None


def _decode(data: bytes, name: str):
    if not data:
        raise BadImage("empty image member")
    return decode_image(data, name)


class WebDatasetLoader(BaseLoader):
    """Samples from tar shards given as a path, a brace/glob pattern
    (``shard-{000000..000009}.tar``), ``::``-joined patterns or a list.

    Caption: the ``caption_ext`` member (UTF-8), else the ``"caption"`` of the ``.json``
    member. meta: shard, key, parsed json, member extensions, and with ``keep_extra`` the raw
    bytes of every other member (e.g. stored teacher embeddings) under ``meta["extra"]``.
    With several workers or ranks, whole shards are split between them when there are enough
    shards, single samples otherwise."""

    def __init__(self, shards: str | os.PathLike | Sequence[str], image_exts: Sequence[str] = IMAGE_EXTS,
                 caption_ext: str = "txt", keep_extra: bool = False, on_bad_image: str = "skip",
                 rank: int = 0, world_size: int = 1):
        super().__init__(on_bad_image, rank, world_size)
        self.shards = expand_shards(shards)
        self.image_exts = tuple(e.lower().lstrip(".") for e in image_exts)
        self.caption_ext, self.keep_extra = caption_ext.lower().lstrip("."), keep_extra

    def _groups(self, shard: str) -> Iterator[tuple[str, dict[str, bytes]]]:
        key, files = None, {}
        try:
            with tarfile.open(shard, mode="r|*") as tf:
                for m in tf:
                    parts = split_member_name(m.name) if m.isfile() else None
                    if parts is None:
                        continue
                    if parts[0] != key and files:
                        yield key, files
                        files = {}
                    key = parts[0]
                    files[parts[1]] = tf.extractfile(m).read()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            # A truncated shard keeps the samples before the damage; the partial one is lost.
            self.bad(shard, f"unreadable tar ({type(e).__name__}: {e})", e, what="shard")
            return
        if files:
            yield key, files

    def _sample(self, shard: str, key: str, files: dict[str, bytes]) -> tuple | None:
        where = f"{shard}:{key}"
        meta: dict = {"source": "webdataset", "shard": shard, "key": key, "members": sorted(files)}
        if "json" in files:
            try:
                meta["json"] = json.loads(files["json"].decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as e:
                self.bad(where + ".json", f"invalid JSON ({e})", e, what="sample")
                return None
        if self.caption_ext in files:
            caption = files[self.caption_ext].decode("utf-8", errors="replace").strip()
        elif isinstance(meta.get("json"), dict) and isinstance(meta["json"].get("caption"), str):
            caption = meta["json"]["caption"]
        else:
            self.bad(where, f"no .{self.caption_ext} member and no \"caption\" in .json",
                     what="sample")
            return None
        ext = next((e for e in self.image_exts if e in files), None)
        if ext is None:
            self.bad(where, f"no image member (looked for .{', .'.join(self.image_exts)})",
                     what="sample")
            return None
        if self.keep_extra:
            used = {ext, self.caption_ext, "json"}
            meta["extra"] = {e: b for e, b in files.items() if e not in used}
        name = f"{where}.{ext}"
        return name, partial(_decode, files[ext], name), caption, meta

    def _samples(self, index: int, count: int) -> Iterator[tuple]:
        by_shard = len(self.shards) >= count
        shards = self.shards[index::count] if by_shard else self.shards
        n = 0
        for shard in shards:
            for key, files in self._groups(shard):
                n += 1
                if by_shard or (n - 1) % count == index:
                    sample = self._sample(shard, key, files)
                    if sample is not None:
                        yield sample
