"""What every user-data loader shares: image decoding, the bad-image policy, statistics,
and splitting the work across DDP ranks and DataLoader workers."""
from __future__ import annotations

import io
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from ..errors import ConfigError, InputError
from .preprocess import to_rgb_uint8

__all__ = ["BAD_IMAGE_POLICIES", "LoaderStats", "BaseLoader", "decode_image", "BadImage"]

log = logging.getLogger("edgeclip.data")
BAD_IMAGE_POLICIES = ("skip", "fail")
_KEEP_BAD = 20  # how many bad names a LoaderStats remembers


class BadImage(Exception):
    """An image that is missing or does not decode (internal: becomes a skip or InputError)."""


def decode_image(src: bytes | str | os.PathLike, name: str | None = None) -> np.ndarray:
    """Encoded bytes or a path -> uint8 HxWx3, C-contiguous, EXIF rotation applied, alpha
    composited over white. Raises BadImage saying why."""
    from PIL import Image, ImageOps

    name = name or str(src)
    try:
        with Image.open(io.BytesIO(src) if isinstance(src, bytes) else src) as im:
            im.load()  # decode now: a truncated file fails here, not later
            im = ImageOps.exif_transpose(im)
            alpha = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
            arr = np.asarray(im.convert("RGBA" if alpha else "RGB"))
    except FileNotFoundError as e:
        raise BadImage("file not found") from e
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        raise BadImage(f"cannot decode ({type(e).__name__}: {e})") from e
    return to_rgb_uint8(arr)


@dataclass
class LoaderStats:
    """Counts of one pass over a loader (reset when a new pass starts)."""

    yielded: int = 0
    skipped: int = 0                              # bad images or samples left out
    bad: list[str] = field(default_factory=list)  # "name: reason", the first few

    def summary(self) -> str:
        s = f"{self.yielded} samples, {self.skipped} skipped"
        return s + (f" (first: {self.bad[0]})" if self.bad else "")


def _partition(rank: int, world_size: int) -> tuple[int, int]:
    """This process's slice, as (index, count): DDP rank x DataLoader worker. torch is
    consulted only if something else already imported it."""
    tud = sys.modules.get("torch.utils.data")
    info = tud.get_worker_info() if tud is not None else None
    if info is None:
        return rank, world_size
    return rank * info.num_workers + info.id, world_size * info.num_workers


class BaseLoader:
    """Iterable of ``(image uint8 HWC, caption, meta)``. Subclasses implement ``_samples``,
    yielding ``(name, load, caption, meta)`` where ``load()`` returns the image or raises
    BadImage; this class applies ``on_bad_image`` and keeps ``stats``."""

    def __init__(self, on_bad_image: str = "skip", rank: int = 0, world_size: int = 1):
        if on_bad_image not in BAD_IMAGE_POLICIES:
            raise ConfigError(f"on_bad_image must be one of {', '.join(BAD_IMAGE_POLICIES)}, "
                              f"got {on_bad_image!r}")
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} is outside world_size {world_size}")
        self.on_bad_image, self.rank, self.world_size = on_bad_image, rank, world_size
        self.stats = LoaderStats()
        self.completed: LoaderStats | None = None  # the last pass that ran to the end

    def _samples(self, index: int, count: int) -> Iterator[tuple]:
        raise NotImplementedError

    def bad(self, name: str, reason: str, cause: BaseException | None = None,
            what: str = "image") -> None:
        """Record a bad ``what`` (image, sample, shard), or raise InputError under "fail"."""
        if self.on_bad_image == "fail":
            raise InputError(f"bad {what} {name}: {reason}; fix or remove it, or skip bad {what}s "
                             "(on_bad_image: skip in the recipe's data source, on_bad_image='skip' in "
                             "Python)") from cause
        self.stats.skipped += 1
        if len(self.stats.bad) < _KEEP_BAD:
            self.stats.bad.append(f"{name}: {reason}")

    def __iter__(self) -> Iterator[tuple[np.ndarray, str, dict]]:
        self.stats = LoaderStats()
        for name, load, caption, meta in self._samples(*_partition(self.rank, self.world_size)):
            try:
                image = load()
            except BadImage as e:
                self.bad(name, str(e), e)
                continue
            self.stats.yielded += 1
            yield image, caption, meta
        self.completed = self.stats
        report = log.warning if self.stats.skipped else log.info
        report("%s: %s", type(self).__name__, self.stats.summary())
