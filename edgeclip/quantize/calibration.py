"""Turn real samples (numpy arrays the caller loaded) into calibration batches.

A calibration set is what ``ExportSpec.calibration`` holds: a list of tuples of numpy arrays,
one tuple per forward call, with the dtypes and shapes of the tower's example inputs. Images
arrive the way decoders give them (HWC, uint8 or float, possibly non-contiguous views), so
every array leaves here C-contiguous (ANCHORS.md: permuted/zero strides break torch.export).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from ..errors import InputError

__all__ = [
    "CLIP_MEAN", "CLIP_STD", "preprocess_image", "image_batches", "token_batches",
    "batches", "check_calibration", "canonical",
]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def canonical(a: np.ndarray, dtype=None) -> np.ndarray:
    """``a`` as a C-ordered array with canonical strides. ``np.ascontiguousarray`` is not
    enough: it keeps stride 0 on size-1 axes (``row[None]``), which ExecuTorch rejects."""
    a = np.asarray(a, dtype=dtype)
    want, step = [], a.itemsize
    for n in reversed(a.shape):
        want.append(step)
        step *= max(n, 1)
    if a.flags.c_contiguous and a.strides == tuple(reversed(want)):
        return a
    return np.array(a, order="C", copy=True)


def preprocess_image(img: np.ndarray, size: int, mean: Sequence[float] = CLIP_MEAN,
                     std: Sequence[float] = CLIP_STD) -> np.ndarray:
    """HWC (or HW grey) uint8/float image -> float32 [3,size,size], CLIP style.

    Resize the short side to ``size`` (bicubic, anti-aliased), center-crop, scale to [0,1]
    (uint8 / 255; float input is taken as already in [0,1]), normalize by mean/std.
    """
    from skimage.transform import resize  # lazy: scikit-image is slow to import

    a = np.asarray(img)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    if a.ndim != 3 or a.shape[-1] not in (3, 4):
        raise InputError(f"image of shape {a.shape} is not HxW, HxWx3 or HxWx4; pass decoded RGB pixels")
    a = a[..., :3]
    a = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
    h, w = a.shape[:2]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    a = resize(a, (nh, nw), order=3, anti_aliasing=True, preserve_range=True).astype(np.float32)
    top, left = (nh - size) // 2, (nw - size) // 2
    a = a[top:top + size, left:left + size]
    a = (a - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return canonical(a.transpose(2, 0, 1), np.float32)


def batches(samples: np.ndarray | Sequence[np.ndarray], batch: int = 1,
            dtype: np.dtype | type | None = None) -> list[tuple[np.ndarray]]:
    """Stack samples [N,...] into single-input tuples of ``batch`` rows (the tail is dropped
    only if it cannot form a full batch, because exported graphs have fixed shapes)."""
    arr = np.stack([np.asarray(s) for s in samples]) if not isinstance(samples, np.ndarray) else samples
    if batch <= 0:
        raise InputError(f"calibration batch size {batch} must be positive")
    if len(arr) < batch:
        raise InputError(f"{len(arr)} calibration sample(s) cannot fill one batch of {batch}; pass more samples")
    out = []
    for i in range(0, len(arr) - batch + 1, batch):
        x = arr[i:i + batch]
        out.append((canonical(x, dtype or x.dtype),))
    return out


def image_batches(images: Iterable[np.ndarray], size: int, batch: int = 1,
                  mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD) -> list[tuple[np.ndarray]]:
    """Decoded photos (HWC) -> list of (float32[batch,3,size,size],)."""
    return batches([preprocess_image(im, size, mean, std) for im in images], batch, np.float32)


def token_batches(ids: np.ndarray | Sequence[Sequence[int]], batch: int = 1) -> list[tuple[np.ndarray]]:
    """Token ids [N,L] (already tokenized and padded) -> list of (int32[batch,L],)."""
    arr = np.asarray(ids)
    if arr.ndim != 2:
        raise InputError(f"token ids must be [N, context_length], got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"token ids must be integers, got {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() > np.iinfo(np.int32).max):
        raise InputError("token ids must fit in int32 and be non-negative")
    return batches(arr, batch, np.int32)


def check_calibration(calibration: Sequence[tuple[np.ndarray, ...]] | None,
                      example: Sequence, minimum: int = 1) -> list[tuple[np.ndarray, ...]]:
    """Validate calibration tuples against the example inputs (count, shape, dtype) and
    return them C-contiguous. ``example`` items may be numpy arrays or torch tensors."""
    if not calibration or len(calibration) < minimum:
        n = 0 if not calibration else len(calibration)
        raise InputError(
            f"this quantization needs at least {minimum} calibration sample(s), got {n}; "
            "pass real images/captions via edgeclip.quantize.calibration.image_batches/token_batches"
        )
    ex = [np.asarray(e.detach().cpu().numpy() if hasattr(e, "detach") else e) for e in example]
    out = []
    for i, sample in enumerate(calibration):
        sample = tuple(sample) if isinstance(sample, (tuple, list)) else (sample,)
        if len(sample) != len(ex):
            raise InputError(f"calibration sample {i} has {len(sample)} input(s); the tower takes {len(ex)}")
        fixed = []
        for j, (s, e) in enumerate(zip(sample, ex)):
            s = np.asarray(s)
            if tuple(s.shape) != tuple(e.shape):
                raise InputError(
                    f"calibration sample {i} input {j} has shape {tuple(s.shape)}; the exported shape is {tuple(e.shape)}"
                )
            if s.dtype != e.dtype:
                if np.issubdtype(s.dtype, np.floating) != np.issubdtype(e.dtype, np.floating):
                    raise InputError(f"calibration sample {i} input {j} is {s.dtype}; the tower takes {e.dtype}")
            fixed.append(canonical(s, e.dtype))
        out.append(tuple(fixed))
    return out
