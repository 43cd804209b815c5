"""torch ``Dataset`` views of edgeclip's data sources.

This module imports torch; ``edgeclip.data`` loads it only when ``as_torch_dataset`` is first
used. Map-style sources (``SyntheticWorld``) become a ``Dataset``; iterables (the user-data
loaders) an ``IterableDataset`` whose DataLoader workers each read their own share (the loaders
split by ``torch.utils.data.get_worker_info()`` themselves). The view classes live at module
level so worker processes can pickle them.
"""
from __future__ import annotations

from torch.utils.data import Dataset, IterableDataset

__all__ = ["as_torch_dataset", "MapView", "IterView"]


class MapView(Dataset):
    def __init__(self, source):
        self.source = source

    def __len__(self):
        return len(self.source)

    def __getitem__(self, i):
        return self.source[i]


class IterView(IterableDataset):
    def __init__(self, source):
        self.source = source

    def __iter__(self):
        return iter(self.source)


def as_torch_dataset(source):
    """Wrap ``source`` (items ``(image uint8 HWC, caption, meta)``) for a ``DataLoader``;
    pair it with ``collate`` or ``PreprocessCollate`` as ``collate_fn``."""
    if isinstance(source, (Dataset, IterableDataset)):
        return source
    if hasattr(source, "__getitem__") and hasattr(source, "__len__"):
        return MapView(source)
    return IterView(source)
