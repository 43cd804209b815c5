"""The factored image tower (``models/_factored.py``): what each stream can and cannot see, its
slices, its config errors, and a round trip through a saved checkpoint."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeclip.errors import ConfigError
from edgeclip.models import build_builtin
from edgeclip.models._factored import EdgeMagnitude

SMALL = {"outline_widths": [8, 16, 16], "colour_widths": [8], "shape_dim": 16, "colour_dim": 8, "context_dim": 8,
         "context_width": 16, "context_layers": 1, "context_heads": 2, "embed_dim": 32, "image_size": 32}


def small(seed: int = 0):
    return build_builtin("teacher-factored", seed=seed, image=SMALL,
                         text={"width": 32, "layers": 1, "heads": 2, "embed_dim": 32})


def _images(n: int, size: int) -> np.ndarray:
    from edgeclip.data import SyntheticWorld

    world = SyntheticWorld(seed=0, image_size=size, length=n)
    return np.stack([world[i][0] for i in range(n)])


def _scenes(n: int, size: int) -> torch.Tensor:
    return (torch.from_numpy(_images(n, size)).permute(0, 3, 1, 2).float() / 255).contiguous()


def test_slices_partition_the_embedding():
    enc = small().image.encoder
    cols = sorted((s.start, s.stop) for s in enc.slices.values())
    assert cols == [(0, 16), (16, 24), (24, 32)] and set(enc.slices) == {"shape", "colour", "context"}
    assert set(build_builtin("teacher-factored").image.encoder.slices) == {"shape", "colour"}


def test_the_outline_front_is_blind_to_which_channel_carries_an_edge():
    x = _scenes(3, 32)
    front = EdgeMagnitude()
    torch.testing.assert_close(front(x), front(x[:, [2, 0, 1]]), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(front(x[:1]), front(x[1:2]), atol=1e-3)   # but it sees the scene


def test_the_colour_slice_ignores_where_pixels_are_and_the_shape_slice_ignores_hue():
    torch.manual_seed(0)
    enc = small().image.encoder.eval()
    sl = enc.slices
    x = _scenes(4, 32)
    assert enc.spec.colour_stride == 2                                  # the bag sees every 2nd pixel:
    shuffled = x.clone()                                                # shuffle those among themselves,
    seen = x[:, :, ::2, ::2].flatten(2)                                 # and the rest among themselves
    shuffled[:, :, ::2, ::2] = seen[:, :, torch.randperm(seen.shape[2])].reshape_as(x[:, :, ::2, ::2])
    unseen = x[:, :, 1::2].flatten(2)
    shuffled[:, :, 1::2] = unseen[:, :, torch.randperm(unseen.shape[2])].reshape_as(x[:, :, 1::2])
    with torch.no_grad():
        a, b = enc(x), enc(shuffled)
        c = enc(x[:, [1, 2, 0]])                                        # hues rotated, edges kept
    torch.testing.assert_close(a[:, sl["colour"]], b[:, sl["colour"]], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a[:, sl["shape"]], b[:, sl["shape"]], atol=1e-3)
    torch.testing.assert_close(a[:, sl["shape"]], c[:, sl["shape"]], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(a[:, sl["colour"]], c[:, sl["colour"]], atol=1e-3)


@pytest.mark.parametrize("bad, message", [
    ({"shape_dim": 10}, "must equal embed_dim"),
    ({"colour_widths": []}, "at least one positive width"),
    ({"image_size": 34}, "multiple of 4"),
    ({"context_dim": -8, "shape_dim": 32}, "context >= 0"),
    ({"colour_stride": 3}, "colour_stride 3 must be >= 1 and divide image_size 32"),
    ({"outline_pool": "mean"}, "outline_pool 'mean'; use one of max, max[+]mean"),
])
def test_bad_factored_configs_say_what_to_fix(bad, message):
    with pytest.raises(ConfigError, match=message):
        build_builtin("teacher-factored", image={**SMALL, **bad})


def test_a_saved_factored_model_loads_with_its_slices_and_outputs(tmp_path):
    from edgeclip.models import load_model, save_model

    m = small(seed=3)
    path = save_model(m, tmp_path / "factored")
    back = load_model(f"file:{path}")
    assert back.config["image"]["kind"] == "factored" and back.image.encoder.slices == m.image.encoder.slices
    x = _images(2, 32)
    torch.testing.assert_close(back.encode_image(x), m.encode_image(x), atol=1e-6, rtol=1e-6)


def test_max_and_mean_pool_tells_one_outline_from_three_and_stays_hue_blind():
    """The default teacher pools its outline map by max *and* mean: a global max alone is the same
    for one blob of response and for three (a count the captions name)."""
    from edgeclip.models._factored import MaxMeanPool

    assert build_builtin("teacher-factored").image.encoder.spec.outline_pool == "max+mean"
    one = torch.zeros(1, 2, 8, 8)
    one[:, :, 1:3, 1:3] = 1.0
    three = one.clone()
    three[:, :, 5:7, 1:3] = three[:, :, 1:3, 5:7] = 1.0
    pool = MaxMeanPool(8)
    a, b = pool(one), pool(three)
    assert a.shape == (1, 4, 1, 1)
    torch.testing.assert_close(a[:, :2], b[:, :2])                       # the max: the same
    torch.testing.assert_close(b[:, 2:], 3 * a[:, 2:])                   # the mean: three times
    enc = build_builtin("teacher-factored", seed=0, image={**SMALL, "context_dim": 0, "shape_dim": 24,
                                                           "outline_pool": "max+mean"},
                        text={"width": 32, "layers": 1, "heads": 2, "embed_dim": 32}).image.encoder.eval()
    assert isinstance(enc.outline[-3], MaxMeanPool) and enc.outline[-1].in_features == 2 * SMALL["outline_widths"][-1]
    x, sl = _scenes(3, 32), enc.slices["shape"]
    with torch.no_grad():                                                # still blind to hue
        torch.testing.assert_close(enc(x)[:, sl], enc(x[:, [2, 0, 1]])[:, sl], atol=1e-4, rtol=1e-4)
