"""benchmarks/shape_streams.py's own logic at toy size (its numbers come from a real run of 300
steps; nothing here is timed): each tower trains with the CLIP and prompt losses and is scored the
way `edgeclip pretrain` scores a teacher; scene labels are only given where they are unambiguous."""
from __future__ import annotations

import pytest
import torch

from _benchmarks import load_benchmark


@pytest.fixture(scope="module")
def ss():
    return load_benchmark("shape_streams")


@pytest.mark.parametrize("tower", ["vit+edge", "streams"])
def test_each_tower_trains_with_both_losses_and_is_scored(ss, tower):
    row = ss.run(tower, steps=2, prompt_loss=1.0, batch=8, warmup=1, pool=16)
    assert row["tower"] == tower and row["steps"] == 2 and row["final_loss"] > 0
    keys = {f"{s}_{k}" for s in ("heldout", "train") for k in ("shape", "colour", "shape-colour")}
    assert keys | {"heldout_r1_i2t", "heldout_r1_t2i"} <= set(row)
    assert all(0.0 <= row[k] <= 1.0 for k in keys)


def test_streams_has_no_attention_and_embeds_like_the_teacher(ss):
    model = ss.teacher("streams")
    assert not any("attn" in name for name, _ in model.image.named_modules())
    with torch.no_grad():
        y = model.image(torch.rand(2, 3, 64, 64))
    assert y.shape == (2, model.image.embed_dim)
    assert torch.allclose(y.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_a_scene_label_only_where_every_object_agrees(ss):
    from edgeclip.data import class_labels
    from edgeclip.data.synthetic import SyntheticWorld

    shapes = class_labels("shape").values
    world = SyntheticWorld(seed=0, split="train", length=64)
    mixed = same = 0
    for i in range(64):
        scene = world.scene(i)
        kinds = {o.shape for o in scene.objects}
        label = ss.scene_label(scene, "shape")
        if len(kinds) == 1:
            assert shapes[label] == scene.objects[0].shape
            same += 1
        else:
            assert label == -1
            mixed += 1
    assert mixed and same   # both cases occur in the world


def test_unknown_tower_is_a_one_line_error(ss):
    with pytest.raises(SystemExit, match="unknown tower 'resnet'; known: vit, vit"):
        ss.teacher("resnet")
