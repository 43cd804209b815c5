"""What static quantization calibrates on: the recipe's own data, never an evaluation split.

``quantization.calibration`` is any data source the recipe can read (``synthetic`` train scenes,
``digits``, ``photos``, or your ``csv`` / ``folder`` / ``webdataset``), ``samples`` of it
(default ``quantization.calibration_samples``). Without it the recipe's ``data.train`` is used
(calibration_samples of it), and without that the embedded world's train scenes. A user source
with fewer readable image-caption pairs than asked is a plan-time error. The set's digest goes
into the export key of every calibrated artifact (other data: another artifact), and its
description into the report.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np

from ..config import DataSource
from ..errors import ConfigError

__all__ = ["Calibration", "calibration_source", "calibration_set", "check_calibration_source"]


@dataclass
class Calibration:
    images: np.ndarray      # uint8[N, S, S, 3] at the model's resolution
    captions: list[str]     # one per image (the text tower calibrates on them)
    info: dict              # what the report says: source, path, split, samples, chosen by, digest


def calibration_source(recipe) -> tuple[DataSource | None, str, int]:
    """(source or None for the embedded default, which recipe key chose it, how many samples)."""
    q = recipe.quantization
    if q.calibration is not None:
        return q.calibration, "quantization.calibration", q.calibration.samples or q.calibration_samples
    if recipe.data.train is not None:
        return recipe.data.train, "data.train", q.calibration_samples
    return None, "default", q.calibration_samples


def _pairs(src: DataSource | None, n: int, size: int, seed: int) -> tuple[np.ndarray, list[str], int]:
    """(images, captions, skipped bad images) of up to ``n`` pairs."""
    from .evalset import _real, _user, calibration_images
    if src is None or src.source == "synthetic":
        images, caps = calibration_images(n, size, seed)  # train split, disjoint from evaluation
        return images, caps, 0
    g = _real(src, size) if src.source in ("digits", "photos") else _user(replace(src, samples=n), size)
    return g.images[:n], list(g.captions["en"][:n]), g.skipped


def _describe(src: DataSource | None) -> str:
    if src is None or src.source == "synthetic":
        return "synthetic (the embedded world's train scenes)"
    return f"{src.source}:{src.path}" if src.path else src.source


def _too_few(src, chosen: str, got: int, n: int, skipped: int) -> ConfigError:
    return ConfigError(f"{chosen}: {_describe(src)} has {got} readable image-caption pairs"
                       + (f" ({skipped} bad images skipped)" if skipped else "")
                       + f", static quantization asks for {n}; add images or lower the samples "
                       f"(quantization.calibration.samples or calibration_samples)")


def calibration_set(recipe, image_size: int) -> Calibration:
    src, chosen, n = calibration_source(recipe)
    images, caps, skipped = _pairs(src, n, image_size, recipe.seed)
    if len(images) < n:
        raise _too_few(src, chosen, len(images), n, skipped)
    digest = hashlib.sha256(np.ascontiguousarray(images).tobytes() + "\n".join(caps).encode()).hexdigest()[:16]
    synthetic = src is None or src.source == "synthetic"
    info = {"source": "synthetic" if synthetic else src.source, "path": None if src is None else src.path,
            "split": "train" if synthetic else None,  # calibration_images reads the world's train scenes
            "samples": int(len(images)), "skipped": int(skipped), "chosen_by": chosen,
            "description": _describe(src), "sha256": digest}
    return Calibration(np.ascontiguousarray(images), caps, info)


def check_calibration_source(recipe) -> None:
    """Plan time: a user source must hold enough readable pairs (read at a small size)."""
    src, chosen, n = calibration_source(recipe)
    if src is None or src.source == "synthetic":
        return
    for ev in recipe.data.eval:
        if (ev.source, ev.path) == (src.source, src.path):
            raise ConfigError(f"{chosen}: {_describe(src)} is also in data.eval; calibrate on data the "
                              "artifacts are not judged on (the recipe's training data, or other images)")
    images, _caps, skipped = _pairs(src, n, 16, recipe.seed)
    if len(images) < n:
        raise _too_few(src, chosen, len(images), n, skipped)
