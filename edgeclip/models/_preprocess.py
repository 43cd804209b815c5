"""Image preprocessing that runs the same ops in the graph (on device) and on the host.

``InGraphPreprocess`` turns decoded ``uint8[B,H,W,3]`` images into normalized
``float32[B,3,S,S]``: cast, optional static center crop, bilinear resize (antialias off:
converters lack antialiased resize), ``x * scale + bias`` (mean/std folded). The host path
(``preprocess_images``) calls the very same module per image, so reference outputs computed on
the host match what an app that uses in-graph preprocessing gets.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError

__all__ = ["InGraphPreprocess", "preprocess_images", "RESIZE_MODES"]

RESIZE_MODES = ("squash", "shortest")  # squash: resize to SxS; shortest: center-crop square, resize


class InGraphPreprocess(nn.Module):
    """``uint8[B,H,W,3]`` (NHWC, as decoders produce) -> normalized ``float32[B,3,size,size]``.

    ``input_dtype`` only sets what ``example_inputs`` (hence the exported input) uses: pixel values
    stay 0..255 in any dtype. CoreML rejects uint8 tensor inputs; export those with
    ``torch.int32`` or ``torch.float32`` raw pixels instead.
    """

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float],
                 input_hw: tuple[int, int] | None = None, resize_mode: str = "squash",
                 input_dtype: torch.dtype = torch.uint8):
        super().__init__()
        self.input_dtype = input_dtype
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode {resize_mode!r} is not one of {RESIZE_MODES}")
        self.size = int(size)
        self.input_hw = tuple(int(v) for v in (input_hw or (size, size)))
        self.resize_mode = resize_mode
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        h, w = self.input_hw
        side = min(h, w) if resize_mode == "shortest" else None
        # static crop box, fixed at construction because exported shapes are fixed; offsets rounded
        # like torchvision's center_crop so host references match torchvision pipelines
        self.crop = None if side is None or h == w else (
            int(round((h - side) / 2.0)), side, int(round((w - side) / 2.0)), side)
        m = torch.tensor(self.mean).reshape(1, 3, 1, 1)
        s = torch.tensor(self.std).reshape(1, 3, 1, 1)
        self.register_buffer("scale", 1.0 / (255.0 * s), persistent=False)
        self.register_buffer("bias", -m / s, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2).to(torch.float32)
        if self.crop is not None:
            top, hh, left, ww = self.crop
            x = x[:, :, top:top + hh, left:left + ww]
        if x.shape[-2] != self.size or x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear",
                              align_corners=False, antialias=False)
        return x * self.scale + self.bias

    def example_inputs(self, batch: int = 1) -> tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(0)
        h, w = self.input_hw
        x = torch.randint(0, 256, (batch, h, w, 3), generator=g, dtype=torch.uint8)
        return (x.to(self.input_dtype).contiguous(),)


def _as_uint8_hwc(img) -> np.ndarray:
    a = img.numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    if a.dtype != np.uint8:
        raise InputError(f"image has dtype {a.dtype}; pass decoded uint8 HxWx3 pixels "
                         "(or a float32 [B,3,H,W] tensor that is already preprocessed)")
    if a.ndim == 2:                       # grayscale -> RGB
        a = np.repeat(a[..., None], 3, axis=-1)
    if a.ndim != 3 or a.shape[-1] not in (3, 4):
        raise InputError(f"image has shape {a.shape}; expected HxWx3 (RGB) or HxWx4 (RGBA)")
    return np.ascontiguousarray(a[..., :3])  # decoded arrays may carry odd strides


def preprocess_images(images, size: int, mean, std, resize_mode: str = "squash") -> torch.Tensor:
    """uint8 image(s) (HxWx3 array, list of arrays, or NHWC batch) -> ``float32[B,3,size,size]``."""
    if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4:
        images = list(images)
    elif isinstance(images, (np.ndarray, torch.Tensor)):
        images = [images]
    out = []
    for img in images:
        a = _as_uint8_hwc(img)
        pre = InGraphPreprocess(size, mean, std, input_hw=a.shape[:2], resize_mode=resize_mode)
        out.append(pre(torch.from_numpy(a)[None]))
    if not out:
        raise InputError("no images given")
    return torch.cat(out).contiguous()
