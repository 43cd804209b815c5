"""Real pixels from scikit-learn digits and scikit-image photos, loaded offline."""
from __future__ import annotations

import numpy as np
import pytest

from edgeclip.data import digits_eval_set, photos_eval_set, preprocess, real_eval_set
from edgeclip.data.real import PHOTOS


@pytest.fixture(scope="module")
def real64():
    return real_eval_set(image_size=64, digits_per_class=3)


def test_real_set_shapes_dtype_and_contiguity(real64):
    r = real64
    n = len(r)
    assert n == 30 + len(PHOTOS)  # every listed photo ships in the installed scikit-image
    assert r.images.shape == (n, 64, 64, 3) and r.images.dtype == np.uint8
    assert r.images.flags.c_contiguous and r.images[0].flags.c_contiguous
    assert len(r.captions_en) == len(r.captions_zh) == len(r.sources) == n
    assert r.labels.dtype == np.int64 and r.labels.max() < len(r.label_names)
    assert len(r.label_names) == len(r.label_names_zh) == len(r.class_prompts_en) == 10 + len(PHOTOS)
    assert len(set(r.label_names)) == len(r.label_names)
    # Each image's caption is its class prompt, in both languages.
    for y, en, zh in zip(r.labels, r.captions_en, r.captions_zh):
        assert r.class_prompts_en[y] == en and r.class_prompts_zh[y] == zh


def test_digit_captions_and_pixels():
    d = digits_eval_set(image_size=32, per_class=2)
    assert sorted(d.labels.tolist()) == sorted(list(range(10)) * 2)
    seven = d.captions_en[int(np.flatnonzero(d.labels == 7)[0])]
    assert seven == "a photo of the digit seven"
    assert d.captions_zh[int(np.flatnonzero(d.labels == 7)[0])] == "数字七的照片"
    # Ink on paper: mostly white, with a dark stroke; grey stored as equal RGB channels.
    assert d.images.mean() > 128 and d.images.min() < 60
    assert np.array_equal(d.images[..., 0], d.images[..., 2])
    # Different digits look different.
    i0, i1 = np.flatnonzero(d.labels == 0)[0], np.flatnonzero(d.labels == 1)[0]
    assert np.abs(d.images[i0].astype(int) - d.images[i1].astype(int)).mean() > 10


def test_photos_are_distinct_labelled_and_deterministic(real64):
    p = photos_eval_set(image_size=64)
    names = dict(zip(p.sources, p.label_names))
    assert names["skimage.data.chelsea"] == "cat" and names["skimage.data.astronaut"] == "astronaut"
    flat = p.images.reshape(len(p), -1).astype(np.int16)
    diffs = np.abs(flat[:, None] - flat[None]).mean(-1) + np.eye(len(p)) * 255
    assert diffs.min() > 5  # no two photos are the same picture
    assert np.array_equal(p.images, real64.images[30:])  # same bytes on every call
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in c) for c in p.captions_zh)
    colour = p.images[p.sources.index("skimage.data.coffee")]
    assert np.abs(colour[..., 0].astype(int) - colour[..., 2]).mean() > 10  # RGB kept
    grey = p.images[p.sources.index("skimage.data.camera")]
    assert np.array_equal(grey[..., 0], grey[..., 1])  # grey expanded to 3 channels


def test_real_images_become_contiguous_tensors_that_export():
    import torch

    img = photos_eval_set(image_size=48).images[0]
    x = preprocess(img, size=32)
    assert x.shape == (3, 32, 32) and x.is_contiguous() and x.stride() == (32 * 32, 32, 1)
    batch = torch.stack([x, x])
    # ANCHORS pitfall: permuted/zero strides break export; ours exports as an example input.
    conv = torch.nn.Conv2d(3, 4, 3).eval()
    ep = torch.export.export(conv, (batch,))
    assert torch.allclose(ep.module()(batch), conv(batch))
