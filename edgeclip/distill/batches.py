"""Batches as a pure function of the step: resumable without loader state, sharded by rank.

Step ``i``'s global batch is items ``[i*B, (i+1)*B)`` of an endless stream that walks the
dataset in a fresh permutation per epoch (``default_rng([seed, epoch])``); rank ``r`` of ``W``
takes the ``r``-th contiguous ``B/W`` slice. So a resumed run, a different number of ranks or a
second process all see exactly the same global batches.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ConfigError

__all__ = ["StepBatches"]


class StepBatches:
    """``batch(step, rank, world_size)`` over a map-style dataset (``__len__``/``__getitem__``).

    ``collate(items)`` turns the rank's items into a batch; a dataset with ``set_epoch(e)`` (the
    synthetic world's paraphrases) is told the epoch of each item before it is read. ``group=g``
    shuffles runs of ``g`` consecutive items as units, so they always share a batch (and a rank):
    how hard negatives (a scene and its counterfactual twin) meet."""

    def __init__(self, dataset: Any, batch_size: int, *, seed: int = 0,
                 collate: Callable[[list], Any] | None = None, group: int = 1):
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise ConfigError(f"StepBatches needs a map-style dataset (len and indexing), got "
                              f"{type(dataset).__name__}; iterate streaming sources directly instead")
        if len(dataset) < 1 or batch_size < 1:
            raise ConfigError(f"need a non-empty dataset and batch_size >= 1, got {len(dataset)} items, "
                              f"batch_size {batch_size}")
        if group < 1 or len(dataset) % group or batch_size % group:
            raise ConfigError(f"group {group} must divide the dataset ({len(dataset)} items) and "
                              f"batch_size ({batch_size})")
        self.dataset, self.batch_size, self.seed, self.group = dataset, int(batch_size), int(seed), int(group)
        self.collate = collate
        self.global_batch_size = self.batch_size
        self._perms: dict[int, np.ndarray] = {}
        self._epoch: int | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            if len(self._perms) > 2:  # a batch spans at most two epochs: keep the recent ones
                self._perms.pop(min(self._perms))
            g = self.group
            units = np.random.default_rng([self.seed, epoch]).permutation(len(self.dataset) // g)
            self._perms[epoch] = (units[:, None] * g + np.arange(g)).reshape(-1)
        return self._perms[epoch]

    def indices(self, step: int) -> list[tuple[int, int]]:
        """``[(epoch, index), ...]`` of the global batch of ``step``."""
        n, out, pos = len(self.dataset), [], int(step) * self.batch_size
        while len(out) < self.batch_size:
            epoch, off = divmod(pos, n)
            take = min(self.batch_size - len(out), n - off)
            out.extend((epoch, int(i)) for i in self._perm(epoch)[off:off + take])
            pos += take
        return out

    def shard(self, items: Sequence, rank: int, world_size: int) -> Sequence:
        if self.batch_size % (world_size * self.group):
            raise ConfigError(f"batch_size {self.batch_size} is not divisible by the {world_size} ranks"
                              + (f" x group {self.group}" if self.group > 1 else "")
                              + "; pick a multiple of the world size")
        per = self.batch_size // world_size
        return items[rank * per:(rank + 1) * per]

    def batch(self, step: int, rank: int = 0, world_size: int = 1) -> Any:
        items = []
        for epoch, i in self.shard(self.indices(step), rank, world_size):
            if epoch != self._epoch and hasattr(self.dataset, "set_epoch"):
                self.dataset.set_epoch(epoch)
                self._epoch = epoch
            items.append(self.dataset[i])
        return self.collate(items) if self.collate is not None else items
