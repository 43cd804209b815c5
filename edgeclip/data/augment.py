"""Reproducible image augmentation in MobileCLIP's layout (apple/ml-mobileclip-dr transforms).

``sample_params`` draws one augmentation from a numpy Generator and returns it as small JSON:
``{"random_resized_crop": [i, j, h, w], "rand_augment": [[op_index, magnitude], ...],
"size": size, "hflip": bool}`` -- ``op_index`` indexes the fixed ``OP_NAMES`` (MobileCLIP's
``RandAugment.op_names``), magnitudes are torchvision RandAugment's at ``cfg.magnitude`` with
the sign already drawn. ``apply_params`` replays it: crop the original, resize to ``size``,
optional horizontal flip, then the ops in order through torchvision's ``_apply_op``.

Replay runs on PIL images, as MobileCLIP's training loader does (its reinforcement code used
uint8 tensors; PIL's integer ops are bit-exact across machines and thread counts, which is
what teacher embeddings computed once and replayed later need). The same function serves
reinforcement and training here, so the two always agree.

Replaying at another resolution: TranslateX/Y magnitudes are pixels at the sampled size
(``params["size"]``), so they are scaled by ``size / params["size"]`` (then truncated by
``int`` inside ``_apply_op``, as torchvision does). Every other op is resolution-free.

Only numpy at import time; torch/torchvision are imported inside the functions.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from functools import lru_cache

import numpy as np

from ..errors import ConfigError, InputError
from .preprocess import to_rgb_uint8

__all__ = ["OP_NAMES", "INTERPOLATIONS", "AugmentConfig", "sample_params", "apply_params"]

# MobileCLIP's RandAugment.op_names == the key order of torchvision's RandAugment space.
OP_NAMES = (
    "Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness",
    "Color", "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize",
)
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
_TRANSLATE = (OP_NAMES.index("TranslateX"), OP_NAMES.index("TranslateY"))


@dataclass(frozen=True)
class AugmentConfig:
    """MobileCLIP's reinforcement augmentation: RandomResizedCrop + RandAugment(2, 9, 31).

    ``ops`` restricts which RandAugment ops are drawn (indices stay those of ``OP_NAMES``).
    ``hflip`` is off by default: a flipped "dog left of a cat" makes its caption false.
    ``interpolation`` is the crop resize's; RandAugment's geometric ops use nearest, as
    torchvision's RandAugment does by default."""

    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    rand_augment: bool = True
    num_ops: int = 2
    magnitude: int = 9
    num_magnitude_bins: int = 31
    ops: tuple[str, ...] = OP_NAMES
    hflip: bool = False
    interpolation: str = "bicubic"

    def __post_init__(self):
        for name in ("crop_scale", "crop_ratio", "ops"):  # lists from JSON/YAML -> tuples
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ConfigError(f"augment crop_scale must satisfy 0 < lo <= hi <= 1, got "
                              f"{self.crop_scale}")
        lo, hi = self.crop_ratio
        if not 0 < lo <= hi:
            raise ConfigError(f"augment crop_ratio must satisfy 0 < lo <= hi, got "
                              f"{self.crop_ratio}")
        if not (isinstance(self.num_ops, int) and self.num_ops >= 0):
            raise ConfigError(f"augment num_ops must be an integer >= 0, got {self.num_ops!r}")
        if not (isinstance(self.num_magnitude_bins, int) and self.num_magnitude_bins >= 2):
            raise ConfigError("augment num_magnitude_bins must be an integer >= 2, got "
                              f"{self.num_magnitude_bins!r}")
        if not (isinstance(self.magnitude, int) and 0 <= self.magnitude < self.num_magnitude_bins):
            raise ConfigError(f"augment magnitude must be an integer in [0, "
                              f"{self.num_magnitude_bins - 1}], got {self.magnitude!r}")
        bad = [o for o in self.ops if o not in OP_NAMES]
        if bad:
            raise ConfigError(f"unknown augment op(s) {', '.join(map(repr, bad))}; valid: "
                              f"{', '.join(OP_NAMES)}")
        if not self.ops or len(set(self.ops)) != len(self.ops):
            raise ConfigError(f"augment ops must be a non-empty list without repeats, got "
                              f"{list(self.ops)}")
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(f"unknown augment interpolation {self.interpolation!r}; valid: "
                              f"{', '.join(INTERPOLATIONS)}")

    def to_dict(self) -> dict:
        """JSON-ready (tuples as lists); ``from_dict(to_dict())`` is the identity."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "AugmentConfig":
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ConfigError(f"unknown augment key(s) {', '.join(unknown)}; valid: "
                              f"{', '.join(names)}")
        try:
            return cls(**d)
        except (TypeError, ValueError) as e:  # e.g. crop_scale given as a number
            raise ConfigError(f"invalid augment config {d}: {e}") from e


@lru_cache(maxsize=64)
def _magnitudes(num_bins: int, magnitude: int, size: int) -> tuple[tuple[float, bool], ...]:
    """(magnitude, signed) per OP_NAMES entry, exactly as torchvision's RandAugment computes
    them for a ``size`` x ``size`` image (float32 tensors, then ``.item()``)."""
    from torchvision.transforms import RandAugment

    space = RandAugment(magnitude=magnitude, num_magnitude_bins=num_bins)._augmentation_space(
        num_bins, (size, size))
    if tuple(space) != OP_NAMES:  # would silently change what stored op indices mean
        raise RuntimeError(f"torchvision RandAugment ops changed: {list(space)}")
    return tuple((float(m[magnitude].item()) if m.ndim > 0 else 0.0, bool(s))
                 for m, s in space.values())


def _crop_params(rng: np.random.Generator, height: int, width: int,
                 scale: tuple[float, float], ratio: tuple[float, float]) -> list[int]:
    """torchvision ``RandomResizedCrop.get_params`` with numpy's generator."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            i = int(rng.integers(0, height - h + 1))
            j = int(rng.integers(0, width - w + 1))
            return [i, j, h, w]
    in_ratio = width / height  # fallback: the central crop closest to the allowed ratios
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return [(height - h) // 2, (width - w) // 2, h, w]


def sample_params(rng: np.random.Generator, height: int, width: int,
                  cfg: AugmentConfig | None = None, size: int = 224) -> dict:
    """Draw one augmentation for an ``height`` x ``width`` image trained at ``size``.

    Fully determined by the generator's state: crop, then flip, then ops and signs."""
    cfg = cfg or AugmentConfig()
    if height < 1 or width < 1 or size < 1:
        raise InputError(f"cannot augment a {height}x{width} image to size {size}")
    crop = _crop_params(rng, int(height), int(width), cfg.crop_scale, cfg.crop_ratio)
    flip = bool(rng.random() < 0.5) if cfg.hflip else False
    ops = []
    if cfg.rand_augment:
        mags = _magnitudes(cfg.num_magnitude_bins, cfg.magnitude, int(size))
        for _ in range(cfg.num_ops):
            idx = OP_NAMES.index(cfg.ops[int(rng.integers(len(cfg.ops)))])
            mag, signed = mags[idx]
            if signed and rng.integers(2):
                mag = -mag
            ops.append([idx, mag])
    return {"random_resized_crop": crop, "rand_augment": ops, "size": int(size), "hflip": flip}


def _check_params(params: dict, height: int, width: int) -> tuple[list[int], list, int]:
    try:
        i, j, h, w = (int(v) for v in params["random_resized_crop"])
        ops = [(int(o), float(m)) for o, m in params.get("rand_augment") or []]
        at = int(params["size"])
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"malformed augmentation params {params!r} ({type(e).__name__}: {e}); "
                         "expected sample_params' layout") from e
    if not (0 <= i and 0 <= j and h > 0 and w > 0 and i + h <= height and j + w <= width):
        raise InputError(f"augmentation crop {[i, j, h, w]} lies outside the {height}x{width} "
                         "image; params belong to another image")
    bad = [o for o, _ in ops if not 0 <= o < len(OP_NAMES)]
    if bad or at < 1:
        raise InputError(f"augmentation params {params!r} have an unknown op index or size")
    return [i, j, h, w], ops, at


def apply_params(image: np.ndarray, params: dict, size: int,
                 cfg: AugmentConfig | None = None) -> np.ndarray:
    """Replay ``params`` on uint8 ``image`` [H, W, 3] -> uint8 [size, size, 3], C-contiguous.
    ``cfg`` supplies the resize interpolation: pass the one the params were drawn with.

    Deterministic: the same image, params and size give byte-identical output."""
    from PIL import Image
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.autoaugment import _apply_op

    cfg = cfg or AugmentConfig()
    a = to_rgb_uint8(image)  # gray / RGBA -> RGB; InputError for non-uint8
    (i, j, h, w), ops, at = _check_params(params, *a.shape[:2])
    # Crop first, then resize (torchvision's resized_crop): PIL's resize(box=...) would
    # pull in pixels from outside the crop through the filter support.
    pil = Image.fromarray(np.ascontiguousarray(a[i:i + h, j:j + w]))
    pil = pil.resize((size, size), getattr(Image.Resampling, cfg.interpolation.upper()))
    if params.get("hflip"):
        pil = pil.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    for idx, mag in ops:
        if idx in _TRANSLATE:
            mag *= size / at  # pixels at the sampled size -> pixels at this size
        pil = _apply_op(pil, OP_NAMES[idx], mag, interpolation=InterpolationMode.NEAREST,
                        fill=None)
    return np.ascontiguousarray(np.asarray(pil, dtype=np.uint8))
