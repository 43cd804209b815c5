"""Image preprocessing shared by every tower: uint8 HWC in, normalized float32 CHW out.

Resizing goes through Pillow exactly as open_clip's torchvision transform does on PIL images
(shorter side to ``size``, bicubic, centre crop, /255, normalize), so our inputs match the
reference model's bit for bit. torch is imported only inside the functions that return tensors.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import ConfigError, InputError

__all__ = [
    "CLIP_MEAN", "CLIP_STD", "RESIZE_MODES", "CROP_MODES", "to_rgb_uint8", "resize_crop",
    "preprocess", "collate", "PreprocessCollate",
]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
RESIZE_MODES = ("bicubic", "bilinear", "nearest")
CROP_MODES = ("center", "none")


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """uint8 HxW, HxWx1, HxWx3 or HxWx4 (alpha over white) -> C-contiguous uint8 HxWx3."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise InputError(f"expected a uint8 image, got dtype {a.dtype}; convert with "
                         "(x * 255).round().astype(np.uint8) for floats in [0, 1]")
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise InputError(f"expected an image of shape HxW, HxWx1, HxWx3 or HxWx4, got {a.shape}")
    if a.shape[2] == 4:
        alpha = a[..., 3:].astype(np.float32) / 255
        a = np.rint(a[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    elif a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(a)


def _target_hw(h: int, w: int, size: int | Sequence[int]) -> tuple[int, int]:
    """torchvision Resize(int): shorter side to ``size``, longer scaled and truncated."""
    if isinstance(size, int):
        short, long_ = (h, w) if h <= w else (w, h)
        new_long = int(size * long_ / short)
        return (size, new_long) if h <= w else (new_long, size)
    th, tw = size
    scale = max(th / h, tw / w)  # cover the target box, then crop it out
    return max(th, round(h * scale)), max(tw, round(w * scale))


def resize_crop(image: np.ndarray, size: int | Sequence[int], resize: str = "bicubic",
                crop: str = "center") -> np.ndarray:
    """uint8 HWC -> uint8 [H', W', 3]. ``crop="center"``: shorter side to ``size`` then centre
    crop (CLIP's eval transform); ``crop="none"``: squash the whole image to ``size``."""
    from PIL import Image

    if resize not in RESIZE_MODES:
        raise ConfigError(f"unknown resize mode {resize!r}; known: {', '.join(RESIZE_MODES)}")
    if crop not in CROP_MODES:
        raise ConfigError(f"unknown crop mode {crop!r}; known: {', '.join(CROP_MODES)}")
    a = to_rgb_uint8(image)
    th, tw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    h, w = a.shape[:2]
    rh, rw = (th, tw) if crop == "none" else _target_hw(h, w, size)
    pil = Image.fromarray(a)
    if (rh, rw) != (h, w):
        pil = pil.resize((rw, rh), getattr(Image.Resampling, resize.upper()))
    if (rh, rw) != (th, tw):  # torchvision CenterCrop's rounding
        top, left = int(round((rh - th) / 2.0)), int(round((rw - tw) / 2.0))
        pil = pil.crop((left, top, left + tw, top + th))
    return np.ascontiguousarray(np.asarray(pil, dtype=np.uint8))


def _normalize(a: np.ndarray, mean, std) -> np.ndarray:
    x = a.astype(np.float32) / np.float32(255)
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))  # HWC -> CHW, fresh strides


def preprocess(image: np.ndarray, size: int | Sequence[int] = 224,
               mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD,
               resize: str = "bicubic", crop: str = "center"):
    """uint8 HWC image -> contiguous ``torch.float32[3, H, W]``, normalized."""
    import torch

    return torch.from_numpy(_normalize(resize_crop(image, size, resize, crop), mean, std))


def _unzip(batch):
    if not batch:
        raise InputError("cannot collate an empty batch")
    return zip(*batch)


def collate(batch):
    """``[(image, caption, meta), ...]`` -> ``(uint8[B,H,W,3] or list, captions, metas)``.

    Images are stacked when they share a shape (the synthetic world), else left as a list."""
    images, captions, metas = _unzip(batch)
    same = len({np.shape(i) for i in images}) == 1
    imgs = np.ascontiguousarray(np.stack(images)) if same else list(images)
    return imgs, list(captions), list(metas)


class PreprocessCollate:
    """A picklable ``collate_fn``: ``[(image, caption, meta), ...]`` ->
    ``(float32[B,3,H,W] contiguous tensor, captions, metas)``."""

    def __init__(self, size: int | Sequence[int] = 224, mean: Sequence[float] = CLIP_MEAN,
                 std: Sequence[float] = CLIP_STD, resize: str = "bicubic", crop: str = "center"):
        resize_crop(np.zeros((2, 2, 3), np.uint8), size, resize, crop)  # fail now, not mid-epoch
        self.size, self.mean, self.std, self.resize, self.crop = size, mean, std, resize, crop

    def __call__(self, batch):
        import torch

        images, captions, metas = _unzip(batch)
        x = np.stack([_normalize(resize_crop(i, self.size, self.resize, self.crop),
                                 self.mean, self.std) for i in images])
        return torch.from_numpy(x), list(captions), list(metas)
