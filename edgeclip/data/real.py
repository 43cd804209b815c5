"""Real pixels that ship inside installed packages, for evaluation without downloads.

scikit-learn's handwritten digits (8x8 grey, upscaled to RGB) and the scikit-image sample
photos that are stored in the wheel (those that need ``pooch`` downloads are left out), each
with a hand-written label and English + Chinese captions. The set is fixed and deterministic:
the same package versions give the same bytes, which is what reference outputs need.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .preprocess import resize_crop, to_rgb_uint8

__all__ = ["RealEvalSet", "PHOTOS", "DIGIT_WORDS", "digits_eval_set", "photos_eval_set",
           "real_eval_set"]

log = logging.getLogger("edgeclip.data")

DIGIT_WORDS = (
    ("zero", "零"), ("one", "一"), ("two", "二"), ("three", "三"), ("four", "四"),
    ("five", "五"), ("six", "六"), ("seven", "七"), ("eight", "八"), ("nine", "九"),
)


@dataclass(frozen=True)
class Photo:
    loader: str       # skimage.data function name
    label: str
    label_zh: str
    caption_en: str
    caption_zh: str


# Only images bundled in the scikit-image wheel (checked with 0.26: no pooch, no network).
PHOTOS = (
    Photo("astronaut", "astronaut", "宇航员", "a photo of an astronaut", "一张宇航员的照片"),
    Photo("chelsea", "cat", "猫", "a photo of a cat", "一张猫的照片"),
    Photo("coffee", "cup of coffee", "咖啡", "a photo of a cup of coffee", "一杯咖啡的照片"),
    Photo("rocket", "rocket", "火箭", "a photo of a rocket on a launch pad", "发射台上的火箭的照片"),
    Photo("hubble_deep_field", "galaxies", "星系", "a photo of distant galaxies in deep space",
          "深空中遥远星系的照片"),
    Photo("coins", "coins", "硬币", "a black and white photo of old coins", "一张旧硬币的黑白照片"),
    Photo("camera", "cameraman", "摄影师", "a black and white photo of a man with a camera",
          "一张拿着相机的男人的黑白照片"),
    Photo("horse", "horse", "马", "a black silhouette of a horse", "一匹马的黑色剪影"),
    Photo("moon", "moon surface", "月球表面", "a photo of the surface of the moon",
          "月球表面的照片"),
    Photo("page", "page of text", "文字页面", "a scanned page of printed text",
          "一页印刷文字的扫描图"),
    Photo("clock", "clock", "时钟", "a blurry photo of a clock", "一张模糊的时钟照片"),
    Photo("immunohistochemistry", "stained tissue", "染色组织",
          "a microscope image of stained tissue", "显微镜下染色组织的图像"),
    Photo("retina", "retina", "视网膜", "a photo of the retina of an eye", "眼睛视网膜的照片"),
    Photo("brick", "brick wall", "砖墙", "a photo of a brick wall", "一张砖墙的照片"),
    Photo("grass", "grass", "草地", "a close-up photo of grass", "草地的特写照片"),
    Photo("gravel", "gravel", "碎石", "a close-up photo of gravel", "碎石的特写照片"),
    Photo("cell", "cell", "细胞", "a microscope image of a cell", "显微镜下细胞的图像"),
    Photo("colorwheel", "colour wheel", "色轮", "a colour wheel", "一个色轮"),
    Photo("stereo_motorcycle", "motorcycle", "摩托车", "a photo of a motorcycle",
          "一辆摩托车的照片"),
    Photo("checkerboard", "checkerboard", "棋盘格", "a black and white checkerboard pattern",
          "黑白棋盘格图案"),
)


@dataclass(frozen=True)
class RealEvalSet:
    """Images with captions in both languages and class labels (one prompt per class)."""

    images: np.ndarray               # uint8[N, S, S, 3], C-contiguous
    captions_en: list[str]
    captions_zh: list[str]
    labels: np.ndarray               # int64[N], indices into label_names
    label_names: tuple[str, ...]
    label_names_zh: tuple[str, ...]
    class_prompts_en: tuple[str, ...]  # per class, the text to classify against
    class_prompts_zh: tuple[str, ...]
    sources: tuple[str, ...]         # where each image came from

    def __len__(self) -> int:
        return len(self.labels)


def _load_photo(name: str) -> np.ndarray:
    import skimage.data

    img = getattr(skimage.data, name)()
    if name == "stereo_motorcycle":
        img = img[0]  # (left, right, disparity): the left view
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255  # horse: True is the white background
    return to_rgb_uint8(img)


def photos_eval_set(image_size: int = 64) -> RealEvalSet:
    """scikit-image's bundled photos, shorter side resized (bicubic) and centre-cropped."""
    images, kept = [], []
    for p in PHOTOS:
        try:
            img = _load_photo(p.loader)
        except (ModuleNotFoundError, FileNotFoundError, AttributeError, OSError) as e:
            # An older/newer scikit-image may move a photo behind a download: skip it, loudly.
            log.warning("skimage.data.%s is not available offline (%s); skipped", p.loader, e)
            continue
        images.append(resize_crop(img, image_size, "bicubic", "center"))
        kept.append(p)
    return RealEvalSet(
        images=np.ascontiguousarray(np.stack(images)),
        captions_en=[p.caption_en for p in kept], captions_zh=[p.caption_zh for p in kept],
        labels=np.arange(len(kept), dtype=np.int64),
        label_names=tuple(p.label for p in kept), label_names_zh=tuple(p.label_zh for p in kept),
        class_prompts_en=tuple(p.caption_en for p in kept),
        class_prompts_zh=tuple(p.caption_zh for p in kept),
        sources=tuple(f"skimage.data.{p.loader}" for p in kept),
    )


def digits_eval_set(image_size: int = 64, per_class: int = 10) -> RealEvalSet:
    """The first ``per_class`` examples of each digit in scikit-learn's digits (dataset order),
    drawn dark on white like ink on paper, upscaled bilinearly to ``image_size``."""
    from sklearn.datasets import load_digits

    d = load_digits()
    idx = np.sort(np.concatenate([np.flatnonzero(d.target == k)[:per_class] for k in range(10)]))
    ink = np.rint(255 - d.images[idx] * (255 / 16)).astype(np.uint8)  # 0..16 -> white..black
    images = np.stack([resize_crop(i, image_size, "bilinear", "none") for i in ink])
    labels = d.target[idx].astype(np.int64)
    en = tuple(f"a photo of the digit {w}" for w, _ in DIGIT_WORDS)
    zh = tuple(f"数字{z}的照片" for _, z in DIGIT_WORDS)
    return RealEvalSet(
        images=np.ascontiguousarray(images),
        captions_en=[en[k] for k in labels], captions_zh=[zh[k] for k in labels],
        labels=labels,
        label_names=tuple(f"the digit {w}" for w, _ in DIGIT_WORDS),
        label_names_zh=tuple(f"数字{z}" for _, z in DIGIT_WORDS),
        class_prompts_en=en, class_prompts_zh=zh,
        sources=tuple(f"sklearn.digits[{i}]" for i in idx),
    )


def real_eval_set(image_size: int = 64, digits_per_class: int = 10) -> RealEvalSet:
    """Digits then photos, in one label space (digit classes first)."""
    d, p = digits_eval_set(image_size, digits_per_class), photos_eval_set(image_size)
    return RealEvalSet(
        images=np.ascontiguousarray(np.concatenate([d.images, p.images])),
        captions_en=d.captions_en + p.captions_en, captions_zh=d.captions_zh + p.captions_zh,
        labels=np.concatenate([d.labels, p.labels + len(d.label_names)]),
        label_names=d.label_names + p.label_names,
        label_names_zh=d.label_names_zh + p.label_names_zh,
        class_prompts_en=d.class_prompts_en + p.class_prompts_en,
        class_prompts_zh=d.class_prompts_zh + p.class_prompts_zh,
        sources=d.sources + p.sources,
    )
