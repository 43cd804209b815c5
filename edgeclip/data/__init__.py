"""Image-text data for edgeclip. Every source yields ``(image uint8[H,W,3], caption, meta)``.

Synthetic world (``synthetic``), the offline default for training and zero-shot evaluation:
    SyntheticWorld(seed=0, image_size=64, split="train"|"heldout", length=10_000, lang="en",
                   paraphrase=False)                      map-style dataset; .scene(i), .set_epoch(e)
    caption(scene, lang="en") -> str                      canonical caption ("en" or "zh")
    paraphrases(scene, n, lang="en", seed=0) -> list[str] parallel across languages by index
    render_scene(scene, image_size=64) -> uint8[S,S,3]
    class_labels(kind) -> LabelSet                        kind in LABEL_KINDS; .prompts(lang)
    labelled_eval_set(n, kind, split="heldout", seed=0, image_size=64) -> EvalSet
    HELDOUT_PAIRS                                         (shape, colour) never in "train"
Real pixels shipped in packages (``real``):
    real_eval_set(image_size=64, digits_per_class=10) -> RealEvalSet   digits, then photos
    digits_eval_set(image_size, per_class), photos_eval_set(image_size)
User data (``loaders``, ``webdataset``, ``shards``), all with on_bad_image="skip"|"fail",
rank/world_size, and ``.stats`` (LoaderStats) after a pass:
    CsvLoader(path, image_col=None, caption_col=None, sep=None, ...)
    FolderLoader(root, captions=None, ...)                captions.jsonl or captions.tsv
    WebDatasetLoader(shards, image_exts=..., caption_ext="txt", keep_extra=False, ...)
    open_dataset(source, **kw)                            picks one of the three
    ParallelCsvLoader(path, languages, captions=None, ...) (``parallel``) image + {lang: caption}
    expand_shards(spec) -> list[str]                      "shard-{000000..000009}.tar", globs, "::"
Preprocessing (``preprocess``):
    preprocess(image, size=224, mean=CLIP_MEAN, std=CLIP_STD, resize="bicubic", crop="center")
        -> torch.float32[3,H,W], contiguous
    resize_crop(image, size, resize, crop) -> uint8 HWC;  to_rgb_uint8(image)
    collate(batch) -> (uint8[B,H,W,3] | list, captions, metas)
    PreprocessCollate(size, mean, std, resize, crop)(batch) -> (float32[B,3,H,W], captions, metas)
    as_torch_dataset(source) -> torch Dataset / IterableDataset   (imports torch when called)
Reproducible augmentation (``augment``, MobileCLIP's layout; torchvision used when called):
    AugmentConfig(crop_scale, crop_ratio, rand_augment, num_ops, magnitude, num_magnitude_bins,
                  ops, hflip, interpolation); .to_dict(), AugmentConfig.from_dict(d)
    sample_params(rng, height, width, cfg=None, size=224) -> JSON dict
    apply_params(image, params, size, cfg=None) -> uint8[size,size,3]
Reinforced datasets (``reinforced``, MobileCLIP's shard layout plus index.json):
    ReinforcedSample(key, image, caption, syn_captions, param_aug, image_emb, text_emb, meta)
    write_shard(path, samples, dtype="fp32"|"bf16") -> index entry;  read_shard(path)
    write_index(root, index), read_index(root), shard_name(i)  (sha256: edgeclip._io.sha256_path)
    ReinforcedDataset(root, verify=False)                 map-style; .dims, .k, .syn

Importing this package does not import torch.
"""
from __future__ import annotations

from ._base import BAD_IMAGE_POLICIES, BadImage, LoaderStats, decode_image
from .augment import AugmentConfig, apply_params, sample_params
from .loaders import CsvLoader, FolderLoader, open_dataset
from .preprocess import (
    CLIP_MEAN, CLIP_STD, PreprocessCollate, collate, preprocess, resize_crop, to_rgb_uint8,
)
from .real import RealEvalSet, digits_eval_set, photos_eval_set, real_eval_set
from .reinforced import (
    ReinforcedDataset, ReinforcedSample, read_index, read_shard, shard_name, write_index,
    write_shard,
)
from .shards import expand_braces, expand_shards
from .synthetic import (
    HELDOUT_PAIRS, LABEL_KINDS, SPLITS, EvalSet, LabelSet, Scene, SyntheticWorld, caption,
    class_labels, labelled_eval_set, paraphrases, render_scene,
)
from .webdataset import WebDatasetLoader

__all__ = [
    "SyntheticWorld", "Scene", "LabelSet", "EvalSet", "HELDOUT_PAIRS", "LABEL_KINDS", "SPLITS",
    "caption", "paraphrases", "render_scene", "class_labels", "labelled_eval_set",
    "RealEvalSet", "real_eval_set", "digits_eval_set", "photos_eval_set",
    "CsvLoader", "FolderLoader", "WebDatasetLoader", "open_dataset", "LoaderStats",
    "BAD_IMAGE_POLICIES", "BadImage", "decode_image", "expand_shards", "expand_braces",
    "CLIP_MEAN", "CLIP_STD", "preprocess", "resize_crop", "to_rgb_uint8", "collate",
    "PreprocessCollate", "as_torch_dataset",
    "AugmentConfig", "sample_params", "apply_params",
    "ReinforcedSample", "ReinforcedDataset", "write_shard", "read_shard", "write_index",
    "read_index", "shard_name",
]


def __getattr__(name: str):
    # torch-backed names load on first use, keeping `import edgeclip.data` light.
    if name == "as_torch_dataset":
        from .torch_data import as_torch_dataset

        return as_torch_dataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
