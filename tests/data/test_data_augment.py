"""Reproducible MobileCLIP augmentation on real photos (scikit-image)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import skimage.data

from edgeclip.data.augment import OP_NAMES, AugmentConfig, apply_params, sample_params
from edgeclip.errors import ConfigError, InputError


@pytest.fixture(scope="module")
def astronaut():
    return skimage.data.astronaut()  # 512x512, full 0..255 range


@pytest.fixture(scope="module")
def chelsea():
    return skimage.data.chelsea()    # 300x451, not full range: AutoContrast has work to do


def _params(seed, image, cfg=None, size=64):
    return sample_params(np.random.default_rng(seed), *image.shape[:2], cfg, size)


def test_params_are_json_and_replay_byte_identically(chelsea):
    for seed in range(5):
        p = _params(seed, chelsea)
        assert sorted(p) == ["hflip", "rand_augment", "random_resized_crop", "size"]
        assert len(p["rand_augment"]) == 2 and p["size"] == 64 and p["hflip"] is False
        q = json.loads(json.dumps(p))
        assert q == p
        a, b = apply_params(chelsea, p, 64), apply_params(chelsea, q, 64)
        assert a.dtype == np.uint8 and a.shape == (64, 64, 3) and a.flags.c_contiguous
        assert a.tobytes() == b.tobytes()


def test_seed_fully_determines_params(chelsea):
    assert _params(7, chelsea) == _params(7, chelsea)
    assert len({json.dumps(_params(s, chelsea)) for s in range(20)}) == 20
    cfg = AugmentConfig(hflip=True)
    flips = [_params(s, chelsea, cfg)["hflip"] for s in range(40)]
    assert any(flips) and not all(flips)


def test_crop_follows_torchvision_algorithm(chelsea):
    from PIL import Image
    from torchvision.transforms import RandomResizedCrop

    h, w = chelsea.shape[:2]
    for s in range(50):
        i, j, ch, cw = _params(s, chelsea)["random_resized_crop"]
        assert 0 <= i and 0 <= j and i + ch <= h and j + cw <= w
        assert 0.08 * 0.9 <= ch * cw / (h * w) <= 1.0 and 0.7 <= cw / ch <= 1.4
    # Impossible ratios: every attempt fails, both fall back to the same central crop.
    cfg = AugmentConfig(crop_ratio=(20.0, 30.0))
    ours = _params(0, chelsea, cfg)["random_resized_crop"]
    ref = RandomResizedCrop.get_params(Image.fromarray(chelsea), [0.08, 1.0], [20.0, 30.0])
    assert ours == list(ref)


def test_magnitudes_are_torchvisions(chelsea):
    from torchvision.transforms import RandAugment

    space = RandAugment()._augmentation_space(31, (96, 96))
    assert tuple(space) == OP_NAMES
    seen = set()
    for s in range(60):
        for idx, mag in _params(s, chelsea, size=96)["rand_augment"]:
            m, signed = space[OP_NAMES[idx]]
            ref = float(m[9].item()) if m.ndim else 0.0
            assert abs(mag) == ref and (signed or mag >= 0)
            seen.add(idx)
    assert len(seen) >= 10


def test_crop_and_resize_match_torchvision_at_any_size(astronaut):
    from PIL import Image
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F

    cfg = AugmentConfig(rand_augment=False)
    p = _params(3, astronaut, cfg, size=64)
    assert p["rand_augment"] == []
    i, j, h, w = p["random_resized_crop"]
    for size in (64, 160):
        out = apply_params(astronaut, p, size, cfg)
        ref = F.resized_crop(Image.fromarray(astronaut), i, j, h, w, [size, size],
                             InterpolationMode.BICUBIC)
        assert out.shape == (size, size, 3)
        assert np.array_equal(out, np.asarray(ref))
    flipped = apply_params(astronaut, {**p, "hflip": True}, 64, cfg)
    assert np.array_equal(flipped, apply_params(astronaut, p, 64, cfg)[:, ::-1])


def test_each_op_changes_the_image_except_identity(chelsea):
    base = {"random_resized_crop": [40, 60, 200, 300], "rand_augment": [], "size": 64,
            "hflip": False}
    plain = apply_params(chelsea, base, 64)
    for name in OP_NAMES:
        p = _params(0, chelsea, AugmentConfig(ops=(name,), num_ops=1))
        assert [op for op, _ in p["rand_augment"]] == [OP_NAMES.index(name)]
        out = apply_params(chelsea, {**base, "rand_augment": p["rand_augment"]}, 64)
        assert np.array_equal(out, plain) == (name == "Identity"), name


def test_ops_restriction_is_honoured(chelsea):
    cfg = AugmentConfig(ops=("Rotate", "Equalize"), num_ops=3)
    used = {op for s in range(30) for op, _ in _params(s, chelsea, cfg)["rand_augment"]}
    assert used == {OP_NAMES.index("Rotate"), OP_NAMES.index("Equalize")}


def test_translate_scales_with_replay_size(astronaut):
    from PIL import Image
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F

    cfg = AugmentConfig(ops=("TranslateX",), num_ops=1)
    p = _params(1, astronaut, cfg, size=64)
    (idx, mag), = p["rand_augment"]
    crop_only = apply_params(astronaut, {**p, "rand_augment": []}, 128)
    ref = F.affine(Image.fromarray(crop_only), angle=0.0, translate=[int(mag * 2), 0], scale=1.0,
                   shear=[0.0, 0.0], interpolation=InterpolationMode.NEAREST)
    assert int(mag * 2) != int(mag)
    assert np.array_equal(apply_params(astronaut, p, 128), np.asarray(ref))


def test_config_round_trip_and_errors():
    cfg = AugmentConfig(ops=("Rotate", "Color"), magnitude=5, hflip=True)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert AugmentConfig.from_dict(d) == cfg
    assert AugmentConfig().ops == OP_NAMES
    with pytest.raises(ConfigError, match="valid: Identity, ShearX"):
        AugmentConfig(ops=("Rotate", "Invert"))
    with pytest.raises(ConfigError, match="Invert"):
        AugmentConfig.from_dict({"ops": ["Invert"]})
    with pytest.raises(ConfigError, match="unknown augment key"):
        AugmentConfig.from_dict({"magnitud": 3})
    for bad in ({"magnitude": 31}, {"crop_scale": (0.5, 0.2)}, {"num_ops": -1},
                {"interpolation": "lanczos"}, {"ops": ()}, {"crop_ratio": (0, 1)}):
        with pytest.raises(ConfigError):
            AugmentConfig(**bad)
    with pytest.raises(ConfigError):
        AugmentConfig.from_dict({"crop_scale": 0.5})


def test_bad_params_and_images(chelsea):
    p = _params(0, chelsea)
    with pytest.raises(InputError, match="outside"):
        apply_params(chelsea[:50, :50], {**p, "random_resized_crop": [10, 10, 60, 60]}, 32)
    with pytest.raises(InputError, match="malformed"):
        apply_params(chelsea, {"rand_augment": []}, 32)
    with pytest.raises(InputError, match="uint8"):
        apply_params(chelsea.astype(np.float32), p, 32)
