"""preprocess / collate: parity with open_clip's torchvision transform, layout, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeclip.data import (
    CLIP_MEAN, CLIP_STD, PreprocessCollate, collate, preprocess, resize_crop, to_rgb_uint8,
)
from edgeclip.errors import ConfigError, InputError


@pytest.fixture(scope="module")
def cat():
    import skimage.data

    return skimage.data.chelsea()  # 300 x 451, not square: exercises resize + crop


@pytest.mark.parametrize("resize", ["bicubic", "bilinear"])
@pytest.mark.parametrize("size", [32, 45])
def test_matches_open_clip_torchvision_transform(cat, resize, size):
    from PIL import Image
    from torchvision import transforms as T

    mode = getattr(T.InterpolationMode, resize.upper())
    ref = T.Compose([T.Resize(size, interpolation=mode), T.CenterCrop(size), T.ToTensor(),
                     T.Normalize(CLIP_MEAN, CLIP_STD)])(Image.fromarray(cat))
    x = preprocess(cat, size, resize=resize)
    assert x.shape == ref.shape == (3, size, size) and x.dtype == torch.float32
    assert torch.allclose(x, ref, atol=1e-6, rtol=0)


def test_layout_is_contiguous_chw(cat):
    x = preprocess(cat[:, ::-1], 24)  # a negative-stride view in, fresh memory out
    assert x.is_contiguous() and x.stride() == (24 * 24, 24, 1)
    # Channel order survives: chelsea is an orange cat, so red beats blue on average.
    assert float(x[0].mean() * CLIP_STD[0] + CLIP_MEAN[0]) > float(x[2].mean() * CLIP_STD[2] + CLIP_MEAN[2])
    wide = preprocess(cat, (16, 40))  # tuple: cover the box, then centre crop
    assert wide.shape == (3, 16, 40)
    squash = preprocess(cat, 20, crop="none")
    assert squash.shape == (3, 20, 20)
    assert not torch.allclose(squash, preprocess(cat, 20))  # squashing keeps the full width


def test_grey_and_alpha_inputs_and_bad_inputs():
    grey = np.full((5, 7), 100, np.uint8)
    assert to_rgb_uint8(grey).shape == (5, 7, 3) and to_rgb_uint8(grey)[0, 0].tolist() == [100] * 3
    rgba = np.zeros((2, 2, 4), np.uint8)
    assert to_rgb_uint8(rgba)[0, 0].tolist() == [255, 255, 255]  # transparent -> white
    assert resize_crop(grey, 5).shape == (5, 5, 3)
    with pytest.raises(InputError, match="uint8"):
        preprocess(np.zeros((4, 4, 3), np.float32), 4)
    with pytest.raises(InputError, match="shape"):
        preprocess(np.zeros((4, 4, 2), np.uint8), 4)
    with pytest.raises(ConfigError, match="bicubic, bilinear"):
        preprocess(grey, 4, resize="lanczos")
    with pytest.raises(ConfigError, match="crop"):
        PreprocessCollate(8, crop="random")


def test_collates(cat):
    batch = [(cat, "a cat", {"i": 0}), (cat[:200, :150], "part of a cat", {"i": 1})]
    x, caps, metas = PreprocessCollate(size=16)(batch)
    assert x.shape == (2, 3, 16, 16) and x.is_contiguous()
    assert torch.equal(x[1], preprocess(cat[:200, :150], 16)) and caps[1] == "part of a cat"
    imgs, _, _ = collate(batch)  # different sizes: left as a list
    assert isinstance(imgs, list) and imgs[1].shape == (200, 150, 3)
    same, _, metas = collate([(cat, "a", {"i": 0}), (cat, "b", {"i": 1})])
    assert same.shape == (2, 300, 451, 3) and [m["i"] for m in metas] == [0, 1]
    with pytest.raises(InputError, match="empty batch"):
        collate([])
