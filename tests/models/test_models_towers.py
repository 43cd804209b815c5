"""Tower contract (DESIGN.md): dtypes, L2 norm, torch.export, in-graph preprocessing, EOT pooling."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from edgeclip.errors import ConfigError, InputError
from edgeclip.models import MODELS, InGraphPreprocess, ZeroShotHead
from edgeclip.models._layers import MASK_VALUE

BUILTINS = MODELS.names()


def _export_matches(tower, batch=2):
    ex = tower.example_inputs(batch)
    ep = torch.export.export(tower, ex, strict=False)
    with torch.no_grad():
        return ex, ep.module()(*ex), tower(*ex)


@pytest.mark.parametrize("name", BUILTINS)
@pytest.mark.parametrize("which", ["image", "text"])
def test_builtin_towers_export_and_keep_contract(builtin_models, name, which):
    m = builtin_models(name)
    tower = m.tower(which)
    ex, got, ref = _export_matches(tower)
    x = ex[0]
    assert x.is_contiguous()
    if which == "image":
        assert x.dtype == torch.float32 and tuple(x.shape) == (2, 3, m.facts.image_size, m.facts.image_size)
    else:
        assert x.dtype == torch.int32 and tuple(x.shape) == (2, m.facts.context_length)
        assert (x == tower.eot_id).any(dim=1).all()          # every example row has an end-of-text
    assert ref.dtype == torch.float32 and tuple(ref.shape) == (2, m.facts.embed_dim)
    torch.testing.assert_close(ref.norm(dim=-1), torch.ones(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(ref[0], ref[1])               # rows differ: the input reaches the output


@pytest.mark.parametrize("name", ["tiny-vit", "tiny-mci"])
def test_in_graph_preprocess_exports_and_matches_host_path(builtin_models, photos, name):
    m = builtin_models(name)
    photo = photos[2]                                        # coffee, 400x600: crop + downscale
    tower = m.image.with_preprocess(input_hw=photo.shape[:2])
    ex = tower.example_inputs(1)
    assert ex[0].dtype == torch.uint8 and tuple(ex[0].shape) == (1, 400, 600, 3)
    ep = torch.export.export(tower, ex, strict=False)
    x = torch.from_numpy(photo)[None].contiguous()
    with torch.no_grad():
        on_device = ep.module()(x)
    torch.testing.assert_close(on_device, m.encode_image(photo), atol=1e-5, rtol=1e-5)


def test_preprocess_matches_an_independent_crop_and_resize(photos):
    import torchvision.transforms.functional as TF

    photo = photos[1]                                        # chelsea 300x451
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    for mode in ("shortest", "squash"):
        pre = InGraphPreprocess(64, mean, std, input_hw=photo.shape[:2], resize_mode=mode)
        got = pre(torch.from_numpy(photo)[None])
        img = torch.from_numpy(photo).permute(2, 0, 1).float()
        if mode == "shortest":
            img = TF.center_crop(img, [300, 300])
        img = TF.resize(img, [64, 64], interpolation=TF.InterpolationMode.BILINEAR, antialias=False)
        want = TF.normalize(img / 255.0, mean, std)[None]
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_encode_image_accepts_views_gray_and_batches(tiny_vit, photos):
    astro = photos[0]
    flipped = astro[:, ::-1]                                 # negative strides, as numpy views have
    a = tiny_vit.encode_image(flipped)
    b = tiny_vit.encode_image(np.ascontiguousarray(flipped))
    torch.testing.assert_close(a, b)
    gray = tiny_vit.encode_image(photos[3])
    rgb = tiny_vit.encode_image(np.repeat(photos[3][..., None], 3, -1))
    torch.testing.assert_close(gray, rgb)
    many = tiny_vit.encode_image(photos)
    assert many.shape == (4, tiny_vit.facts.embed_dim)
    torch.testing.assert_close(many[0], tiny_vit.encode_image(astro)[0])
    with pytest.raises(InputError, match="uint8"):
        tiny_vit.encode_image(astro.astype(np.float32))


def test_zero_shot_head_exports_and_equals_helper(tiny_vit, photos):
    labels = ["cat", "astronaut", "coffee", "camera"]
    head = tiny_vit.tower("zero-shot-head", labels=labels)
    assert isinstance(head, ZeroShotHead) and head.labels == labels
    logits = tiny_vit.zero_shot_logits(photos, labels)
    assert logits.shape == (4, 4)
    img, txt = tiny_vit.encode_image(photos), tiny_vit.encode_text([f"a photo of a {x}." for x in labels])
    torch.testing.assert_close(logits, tiny_vit.logit_scale * img @ txt.T)
    from edgeclip.models import preprocess_images

    f = tiny_vit.facts
    pixels = preprocess_images(photos, f.image_size, f.mean, f.std, f.resize_mode)
    ep = torch.export.export(head, head.example_inputs(1), strict=False)
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(pixels[:1]), logits[:1], atol=1e-4, rtol=1e-4)


def test_tower_names(tiny_vit):
    assert tiny_vit.tower("image") is tiny_vit.image and tiny_vit.tower("text") is tiny_vit.text
    with pytest.raises(ConfigError, match="labels"):
        tiny_vit.tower("zero-shot-head")
    with pytest.raises(ConfigError, match="zero-shot-head"):
        tiny_vit.tower("audio")


def test_text_pools_at_first_end_of_text(tiny_vit):
    tok, text = tiny_vit.tokenizer, tiny_vit.text
    ids = torch.from_numpy(tok.encode(["a photo of a cat", "a photo of a dog"]))
    eot = int((ids[0] == tok.eot_id).nonzero()[0])
    with torch.no_grad():
        base = text(ids)
        after = ids.clone()
        after[:, eot + 1:] = 320                             # junk after EOT: causal + EOT pool ignore it
        torch.testing.assert_close(text(after), base, atol=1e-6, rtol=0)
        padded_with_eot = ids.clone()
        padded_with_eot[:, eot + 1:] = tok.eot_id            # HF-style padding with eos: first EOT wins
        torch.testing.assert_close(text(padded_with_eot), base, atol=1e-6, rtol=0)
    assert not torch.allclose(base[0], base[1], atol=1e-4)   # "cat" vs "dog" differ before EOT


def test_packed_text_embeds_as_the_padded_batch_and_trains_the_same(tiny_vit):
    tok, text = tiny_vit.tokenizer, tiny_vit.text
    caps = ["a red square", "three small red striped diamonds on a checkered white background", "x",
            "a photo of a dog", "一张红色图形的照片"]
    ids = torch.from_numpy(tok.encode(caps))
    ends = (ids == tok.eot_id).float().argmax(1)
    assert int(ends.max()) < ids.shape[1] - 4                # so the packed groups are really cut short
    base = text(ids)
    packed = text.forward_packed(ids, groups=3)
    torch.testing.assert_close(packed, base, atol=1e-5, rtol=0)
    g_base = torch.autograd.grad(base.square().sum(), text.encoder.pos_embed)[0]
    g_packed = torch.autograd.grad(text.forward_packed(ids, groups=3).square().sum(), text.encoder.pos_embed)[0]
    torch.testing.assert_close(g_packed, g_base, atol=1e-5, rtol=1e-4)
    assert float(g_base[int(ends.max()) + 1:].abs().max()) == 0.0   # positions after every EOT learn nothing
    with pytest.raises(ValueError, match="this tower takes 32 tokens"):
        text.encoder.forward_prefix(torch.zeros(1, 40, dtype=torch.int32))


def test_a_non_causal_text_tower_is_never_packed():
    from edgeclip.models import build_builtin

    m = build_builtin("tiny-vit", text={"causal": False})
    ids = torch.from_numpy(m.tokenizer.encode(["a red square", "x"]))
    assert not m.text.encoder.trims
    torch.testing.assert_close(m.text.forward_packed(ids), m.text(ids), atol=0, rtol=0)
    with pytest.raises(ValueError, match="not causal"):
        m.text.encoder.forward_prefix(ids[:, :8])


def test_text_mask_is_fp16_safe_and_half_precision_pools_correctly(tiny_vit, cosine):
    mask = tiny_vit.text.encoder.mask
    assert torch.isfinite(mask).all() and mask.min().item() == MASK_VALUE
    assert torch.isfinite(mask.half()).all()
    # why the EOT search is an equality, not open_clip's argmax over ids: fp16 merges 49406/49407
    assert torch.tensor([49406.0, 49407.0]).half().unique().numel() == 1
    ids = torch.from_numpy(tiny_vit.tokenizer.encode(["an astronaut in a white suit", "一只猫的照片"]))
    assert (ids.half().argmax(-1) == 0).all()                 # the open_clip way would pool at SOT
    half = copy.deepcopy(tiny_vit.text).half()
    with torch.no_grad():
        ref, got = tiny_vit.text(ids), half(ids).float()
    assert cosine(got, ref).min() > 0.999


def test_preprocess_input_dtype_for_runtimes_without_uint8(tiny_vit, photos):
    photo = photos[0]
    as_int = tiny_vit.image.with_preprocess(photo.shape[:2], input_dtype=torch.int32)
    assert as_int.example_inputs(1)[0].dtype == torch.int32
    x = torch.from_numpy(photo)[None]
    with torch.no_grad():
        torch.testing.assert_close(as_int(x.to(torch.int32)), tiny_vit.image.with_preprocess(photo.shape[:2])(x))
