"""Calibration helpers on real photos and captions."""
from __future__ import annotations

import numpy as np
import pytest
import skimage.data

from edgeclip.errors import InputError
from edgeclip.quantize import (CLIP_MEAN, CLIP_STD, batches, canonical, check_calibration,
                               image_batches, preprocess_image, token_batches)


def test_preprocess_real_photo_is_chw_normalized_and_center_cropped():
    img = skimage.data.coffee()                      # 400 x 600, landscape
    x = preprocess_image(img, 64)
    assert x.shape == (3, 64, 64) and x.dtype == np.float32 and x.flags.c_contiguous
    # undo the normalization: pixels back in [0, 1] (bicubic may overshoot slightly)
    rgb = x * np.asarray(CLIP_STD, np.float32)[:, None, None] + np.asarray(CLIP_MEAN, np.float32)[:, None, None]
    assert -0.05 < rgb.min() and rgb.max() < 1.05
    # the center crop keeps the middle: its mean colour is close to the photo's central square
    h, w = img.shape[:2]
    center = img[:, (w - h) // 2:(w + h) // 2].reshape(-1, 3).mean(0) / 255
    assert np.allclose(rgb.reshape(3, -1).mean(1), center, atol=0.02)


def test_preprocess_constant_colour_gives_the_expected_value():
    img = np.full((50, 80, 3), 255, np.uint8)
    x = preprocess_image(img, 16)
    expect = (1 - np.asarray(CLIP_MEAN)) / np.asarray(CLIP_STD)
    assert np.allclose(x.reshape(3, -1), expect[:, None], atol=1e-4)


def test_grey_and_rgba_are_accepted_bad_shapes_are_not():
    assert preprocess_image(skimage.data.camera(), 32).shape == (3, 32, 32)
    assert preprocess_image(skimage.data.logo(), 32).shape == (3, 32, 32)
    with pytest.raises(InputError, match="HxWx3"):
        preprocess_image(np.zeros((4, 4, 5), np.uint8), 8)


def test_image_batches_from_real_photos():
    photos = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.rocket()]
    out = image_batches(photos, 32, batch=2)
    assert len(out) == 1 and out[0][0].shape == (2, 3, 32, 32) and out[0][0].dtype == np.float32
    single = image_batches(photos, 32)
    assert len(single) == 3 and not np.allclose(single[0][0], single[1][0])


def test_token_batches_are_int32_canonical():
    ids = np.array([[49406, 320, 2368, 49407, 0], [49406, 320, 1929, 49407, 0]], np.int64)
    out = token_batches(ids)
    assert [o[0].dtype for o in out] == [np.int32, np.int32] and out[1][0].tolist() == [ids[1].tolist()]
    assert all(o[0].strides == (20, 4) for o in out)
    with pytest.raises(InputError, match=r"\[N, context_length\]"):
        token_batches(ids[0])
    with pytest.raises(InputError, match="integers"):
        token_batches(ids.astype(np.float32))
    with pytest.raises(InputError, match="cannot fill one batch of 4"):
        batches(ids, 4)


def test_canonical_fixes_zero_and_permuted_strides():
    row = np.arange(10, dtype=np.int32).reshape(2, 5)[0][None]    # stride 0 on axis 0
    hwc = np.random.rand(4, 6, 3).astype(np.float32).transpose(2, 0, 1)
    assert 0 in row.strides and np.ascontiguousarray(row).strides[0] == 0
    assert canonical(row).strides == (20, 4) and canonical(hwc).strides == (96, 24, 4)
    same = np.zeros((2, 3), np.float32)
    assert canonical(same) is same


def test_check_calibration_validates_against_the_example():
    ex = (np.zeros((1, 3, 8, 8), np.float32),)
    good = [(np.ones((1, 3, 8, 8), np.float64),)]
    out = check_calibration(good, ex)
    assert out[0][0].dtype == np.float32 and out[0][0].flags.c_contiguous
    with pytest.raises(InputError, match="at least 2"):
        check_calibration(good, ex, minimum=2)
    with pytest.raises(InputError, match=r"shape \(1, 3, 4, 4\)"):
        check_calibration([(np.ones((1, 3, 4, 4), np.float32),)], ex)
    with pytest.raises(InputError, match="2 input"):
        check_calibration([(ex[0], ex[0])], ex)
    with pytest.raises(InputError, match="int32"):
        check_calibration([(np.zeros((1, 4), np.float32),)], (np.zeros((1, 4), np.int32),))
