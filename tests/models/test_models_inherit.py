"""TinyCLIP manual weight inheritance: the layer rule, first-N width, whole heads from packed qkv
(checked against open_clip's own packed tensors), errors, and that inheriting beats random init."""
from __future__ import annotations

import pytest
import torch

from edgeclip.errors import ConfigError
from edgeclip.models import build_builtin, from_openclip, load_model, save_model
from edgeclip.models.inherit import depth_indices, inherit_encoder, inherit_model, packed_qkv_rows, student_config

CAPTIONS = ["a small red square left of a blue circle", "two green triangles on a white background",
            "an astronaut in a white suit", "a photo of a cat"]


def test_depth_rule():
    assert depth_indices(12, 3) == [0, 4, 8]       # ViT-B/32 text 12 -> 3 (TinyCLIP text-3M)
    assert depth_indices(12, 10) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert depth_indices(4, 2) == [0, 2]
    assert depth_indices(5, 2) == [0, 2]
    with pytest.raises(ConfigError, match="teacher's depth"):
        depth_indices(4, 6)


def test_matches_tinyclip_rule_on_open_clip_packed_qkv():
    import open_clip

    torch.manual_seed(0)
    vision = {"image_size": 32, "patch_size": 8, "width": 128, "layers": 4, "head_width": 32}
    text = {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 4}
    oc = open_clip.model.CLIP(embed_dim=48, vision_cfg=vision, text_cfg=text).eval()
    teacher = from_openclip(oc)
    student, info = inherit_model(teacher, image={"width": 64, "layers": 2}, text={"layers": 2})
    assert info["image"]["layers"] == [0, 2] and info["image"]["heads"] == 2  # head dim 32 kept
    assert info["text"]["layers"] == [0, 2]

    vblk = oc.visual.transformer.resblocks[2]       # student image block 1 <- teacher block 2
    packed_w = packed_qkv_rows(vblk.attn.in_proj_weight, 4, 32, keep_heads=2, keep_in=64)
    packed_b = packed_qkv_rows(vblk.attn.in_proj_bias, 4, 32, keep_heads=2, keep_in=64)
    attn = student.image.encoder.blocks[1].attn
    ours_w = torch.cat([attn.q.weight, attn.k.weight, attn.v.weight])
    ours_b = torch.cat([attn.q.bias, attn.k.bias, attn.v.bias])
    assert torch.equal(ours_w, packed_w) and torch.equal(ours_b, packed_b)
    # first-N everywhere else: MLP, out projection, embeddings, final projection
    blk = student.image.encoder.blocks[1]
    assert torch.equal(blk.mlp.fc.weight, vblk.mlp.c_fc.weight[:256, :64])
    assert torch.equal(blk.attn.out.weight, vblk.attn.out_proj.weight[:64, :64])
    assert torch.equal(student.image.encoder.pos_embed, oc.visual.positional_embedding[:, :64])
    assert torch.equal(student.image.encoder.proj.weight, oc.visual.proj[:64, :].t())
    # text shrinks depth only: block 1 is teacher block 2 verbatim
    tb = student.text.encoder.blocks[1]
    assert torch.equal(tb.attn.q.weight, oc.transformer.resblocks[2].attn.in_proj_weight[:64])
    assert student.facts.params_image < 0.4 * teacher.facts.params_image


def test_same_shape_is_the_teacher():
    teacher = build_builtin("tiny-vit", seed=3)
    student, _ = inherit_model(teacher)
    ids = torch.from_numpy(teacher.tokenizer.encode(CAPTIONS))
    px = teacher.image.example_inputs(2)[0]
    with torch.no_grad():
        assert torch.equal(student.text(ids), teacher.text(ids))
        assert torch.equal(student.image(px), teacher.image(px))
    assert student.logit_scale == teacher.logit_scale


def test_inherited_text_tower_is_closer_to_the_teacher_than_random(tmp_path):
    teacher = build_builtin("teacher-vit", seed=1)
    shape = {"text": {"layers": 2}, "image": {"width": 64}}
    inherited, _ = inherit_model(teacher, **shape)
    scratch, _ = inherit_model(teacher, **shape, towers=())
    ids = torch.from_numpy(teacher.tokenizer.encode(CAPTIONS))
    with torch.no_grad():
        t = teacher.text(ids)
        cos_inh = (inherited.text(ids) * t).sum(-1)
        cos_new = (scratch.text(ids) * t).sum(-1)
    assert cos_inh.mean() > cos_new.mean() + 0.2, (cos_inh, cos_new)
    # the student is an ordinary model: saves, reloads, exports
    path = save_model(inherited, tmp_path / "student.safetensors")
    back = load_model(f"file:{path}")
    assert back.config["text"]["layers"] == 2 and back.config["image"]["heads"] == 2
    with torch.no_grad():
        torch.testing.assert_close(back.text(ids), inherited.text(ids))
    ep = torch.export.export(back.image, back.image.example_inputs(1), strict=False)
    assert ep.module()(*back.image.example_inputs(1)).shape == (1, 128)


def test_shape_errors():
    teacher = build_builtin("teacher-vit", seed=0)   # head dim 32
    with pytest.raises(ConfigError, match="no larger than its teacher"):
        inherit_model(teacher, image={"width": 256})
    with pytest.raises(ConfigError, match="head dim"):
        inherit_model(teacher, image={"width": 64, "heads": 4})
    with pytest.raises(ConfigError, match="multiple of the teacher's head dim"):
        student_config(teacher.config, image={"width": 48})
    with pytest.raises(ConfigError, match="unknown keys"):
        student_config(teacher.config, text={"depth": 2})
    mci = build_builtin("tiny-mci", seed=0)
    with pytest.raises(ConfigError, match="cannot be reshaped"):
        student_config(mci.config, image={"width": 32})
    with pytest.raises(ConfigError, match="ViT and transformer"):
        inherit_encoder(mci.image.encoder, mci.image.encoder)  # the conv tower has no shrink rule
    same, info = inherit_model(mci)  # ...but a same-shape student is a copy
    assert info["image"] == {"copied": True}
    x = mci.image.example_inputs(1)
    with torch.no_grad():
        assert torch.equal(same.image(*x), mci.image(*x))
