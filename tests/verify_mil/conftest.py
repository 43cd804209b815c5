"""Fixtures for the MIL interpreter tests: tiny builtin towers, real photos and captions, and
CoreML packages converted once per session (conversion dominates this folder's run time)."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(2)

CAPTIONS = ["a photo of an astronaut", "a cat sitting on a rug", "a cup of coffee on a saucer",
            "a rocket on the launch pad"]
CAL_CAPTIONS = ["a grayscale photo of a man with a camera", "a pile of old coins",
                "stained tissue under a microscope", "galaxies in the deep sky"]


def _photos(names: list[str]) -> list[np.ndarray]:
    from skimage import data

    return [getattr(data, n)() for n in names]


@pytest.fixture(scope="session")
def models():
    """``models(name)``: builtin models by name, built once; tiny-mci comes reparameterized."""
    from edgeclip.models import load_model, reparameterize

    cache: dict[str, object] = {}

    def get(name: str):
        if name not in cache:
            m = load_model(f"builtin:{name}")
            cache[name] = reparameterize(m) if name == "tiny-mci" else m
        return cache[name]

    return get


@pytest.fixture(scope="session")
def real_inputs(models):
    """``real_inputs(model_name, tower) -> (eval batch, calibration batch)`` as numpy arrays:
    four scikit-image photos resized/normalized with the model's own mean/std, or four captions
    tokenized with its tokenizer; calibration uses different photos/captions."""
    from edgeclip.models import preprocess_images

    def get(name: str, tower: str):
        m = models(name)
        if tower == "text":
            return (np.ascontiguousarray(m.tokenizer.encode(CAPTIONS), dtype=np.int32),
                    np.ascontiguousarray(m.tokenizer.encode(CAL_CAPTIONS), dtype=np.int32))
        img = m.image

        def prep(names):
            return preprocess_images(_photos(names), img.image_size, img.mean, img.std).numpy()

        return (prep(["astronaut", "chelsea", "coffee", "rocket"]),
                prep(["camera", "coins", "immunohistochemistry", "hubble_deep_field"]))

    return get


@pytest.fixture(scope="session")
def coreml_export(tmp_path_factory):
    """``coreml_export(key, module, example, quant="fp32", calibration=None, **spec) -> Path``:
    convert once per key and session through the real CoreML backend."""
    pytest.importorskip("coremltools")
    from edgeclip.backends import BACKENDS
    from edgeclip.backends.base import ExportSpec

    root = tmp_path_factory.mktemp("mlpackages")
    cache: dict[str, Path] = {}

    def export(key: str, module, example, quant: str = "fp32", calibration=None, tower: str = "image",
               **spec) -> Path:
        if key not in cache:
            ex = tuple(torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
                       for x in example)
            s = ExportSpec(tower=tower, quant=quant, calibration=calibration,
                           name=key.replace("/", "-"), **spec)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                logging.getLogger("coremltools").setLevel(logging.ERROR)
                cache[key] = BACKENDS.get("coreml").export(module.eval(), ex, s, root).path
        return cache[key]

    return export
