"""Structured pruning surgery (``edgeclip.models.prune``) and its exactness against the masked
model of TinyCLIP's automatic inheritance (``edgeclip.distill.hard_concrete``)."""
from __future__ import annotations

import dataclasses
import functools

import pytest
import torch

from edgeclip.distill.hard_concrete import MaskedEncoder, attach_clip_masks
from edgeclip.errors import ConfigError
from edgeclip.models import build_builtin, load_model, save_model
from edgeclip.models._build import build_image_encoder, build_text_encoder, seeded
from edgeclip.models._specs import IMAGE_SPECS, TEXT_SPECS, TextSpec, ViTSpec, spec_from_dict, spec_to_dict
from edgeclip.models.prune import prune_encoder


def _randomize(masked: MaskedEncoder, seed: int = 0) -> None:
    """log_alphas spread wide: some structures dropped, some kept with fractional values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for gate in masked.gates():
            gate.log_alpha.copy_(torch.randn(gate.log_alpha.shape, generator=g) * 3)


def _inputs(encoder, batch=3):
    if isinstance(encoder.spec, ViTSpec):
        g = torch.Generator().manual_seed(1)
        return torch.randn(batch, 3, encoder.spec.image_size, encoder.spec.image_size, generator=g)
    s = encoder.spec
    ids = torch.randint(1, 1000, (batch, s.context_length), generator=torch.Generator().manual_seed(1), dtype=torch.int32)
    ids[:, 0] = s.sot_id
    for b in range(batch):
        ids[b, 4 + 3 * b] = s.eot_id
    return ids


NAMES = ("tiny-vit", "tiny-text", "vit-layerscale", "text-layerscale")


@functools.lru_cache(maxsize=None)
def _encoders():
    m = build_builtin("tiny-vit", seed=0)
    with seeded(0):
        ls_vit = build_image_encoder(ViTSpec(image_size=32, patch_size=8, width=48, layers=2, heads=3,
                                             layer_scale=True, ln_pre=False))
        ls_text = build_text_encoder(TextSpec(context_length=16, width=32, layers=2, heads=2, proj_bias=True,
                                              layer_scale=True, act="quick_gelu"))
    for enc in (ls_vit, ls_text):  # layer-scale gammas away from their tiny init, so they matter
        for blk in enc.blocks:
            torch.nn.init.normal_(blk.ls_1.gamma, 1.0, 0.3)
            torch.nn.init.normal_(blk.ls_2.gamma, 1.0, 0.3)
    return dict(zip(NAMES, (m.image.encoder, m.text.encoder, ls_vit, ls_text)))


@pytest.mark.parametrize("name", NAMES)
def test_masked_equals_pruned(name):
    enc = _encoders()[name]
    masked = MaskedEncoder(enc, target_sparsity=0.5)
    _randomize(masked, seed=len(name))
    masked.eval()
    hz, heads, neurons = masked.deterministic_masks()
    for z in (hz, *heads, *neurons):  # the case is non-trivial: drops and fractional kept values
        assert z.min() >= 0 and z.max() <= 1 and (z > 0).any()
    allz = torch.cat([hz, *heads, *neurons])
    assert (allz == 0).any() and ((allz > 0) & (allz < 0.99)).any()
    assert (hz == 0).any() and any((z == 0).any() for z in neurons)

    pruned = masked.prune()
    x = _inputs(enc)
    with torch.no_grad():
        want, got = masked(x), pruned(x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert type(pruned) is type(enc)
    s = pruned.spec
    assert s.width == int((hz > 0).sum()) < enc.spec.width
    assert list(s.layer_heads) == [int((z > 0).sum()) for z in heads]
    assert list(s.layer_mlp) == [int((z > 0).sum()) for z in neurons]
    assert s.head_dim == enc.blocks[0].attn.head_dim  # whole heads: the teacher's head dim
    n_pruned, n_full = (sum(p.numel() for p in e.parameters()) for e in (pruned, enc))
    assert n_pruned < n_full
    # the expected count is exact when every gate is surely on or off
    with torch.no_grad():
        for gate, z in zip(masked.gates(), (hz, *heads, *neurons)):
            gate.log_alpha.copy_(torch.where(z > 0, 100.0, -100.0))
    blocks = sum(p.numel() for p in pruned.blocks.parameters())
    assert float(masked.expected_params().detach()) == pytest.approx(blocks, rel=1e-5)
    assert masked.full_params() == sum(p.numel() for p in enc.blocks.parameters())


@pytest.mark.parametrize("name", ["tiny-vit", "tiny-text"])
def test_pruned_encoder_can_be_masked_and_pruned_again(name):
    """Progressive stages: a pruned encoder (per-layer heads, head dim != width / heads) is masked
    and pruned again, still exactly."""
    enc = _encoders()[name]
    first = MaskedEncoder(enc, target_sparsity=0.5)
    _randomize(first, seed=5)
    once = first.prune()
    second = MaskedEncoder(once, target_sparsity=0.5)
    _randomize(second, seed=6)
    second.eval()
    twice = second.prune()
    x = _inputs(enc)
    with torch.no_grad():
        torch.testing.assert_close(twice(x), second(x), atol=1e-5, rtol=1e-5)
    assert twice.spec.width < once.spec.width < enc.spec.width
    assert twice.spec.head_dim == enc.blocks[0].attn.head_dim


@pytest.mark.parametrize("name", ["tiny-vit", "tiny-text"])
def test_all_kept_is_the_encoder(name):
    enc = _encoders()[name]
    masked = MaskedEncoder(enc, target_sparsity=0.5, init_log_alpha=100.0).eval()
    x = _inputs(enc)
    with torch.no_grad():
        torch.testing.assert_close(masked(x), enc(x), atol=1e-5, rtol=1e-5)
        full = prune_encoder(enc, [torch.arange(b.attn.heads) for b in enc.blocks],
                             [torch.arange(b.mlp.fc.out_features) for b in enc.blocks], torch.arange(enc.spec.width))
        torch.testing.assert_close(full(x), enc(x), atol=1e-6, rtol=1e-6)
    assert sum(p.numel() for p in full.parameters()) == sum(p.numel() for p in enc.parameters())


def test_prune_encoder_slices_by_index():
    enc = _encoders()["tiny-vit"]
    new = prune_encoder(enc, [torch.tensor([2, 0]), torch.tensor([1]), torch.tensor([3, 1, 0])],
                        [torch.tensor([5, 7, 9])] * 3, torch.tensor([0, 3, 4, 10]))
    assert new.spec.layer_heads == (2, 1, 3) and new.spec.layer_mlp == (3, 3, 3) and new.spec.width == 4
    hd = enc.blocks[0].attn.head_dim
    b0, n0 = enc.blocks[0], new.blocks[0]
    torch.testing.assert_close(n0.attn.q.weight[:hd], b0.attn.q.weight[:hd][:, [0, 3, 4, 10]])  # head 0 first
    torch.testing.assert_close(n0.attn.out.weight[:, hd:], b0.attn.out.weight[[0, 3, 4, 10]][:, 2 * hd:3 * hd])
    torch.testing.assert_close(n0.mlp.proj.weight, b0.mlp.proj.weight[[0, 3, 4, 10]][:, [5, 7, 9]])
    torch.testing.assert_close(new.patch_embed.weight, enc.patch_embed.weight[[0, 3, 4, 10]])
    with pytest.raises(ConfigError, match="every hidden dim"):
        prune_encoder(enc, [torch.tensor([0])] * 3, [torch.tensor([0])] * 3, torch.tensor([], dtype=torch.long))
    with pytest.raises(ConfigError, match="distinct"):
        prune_encoder(enc, [torch.tensor([0, 0])] * 3, [torch.tensor([0])] * 3, torch.tensor([1]))
    with pytest.raises(ConfigError, match="one head"):
        prune_encoder(enc, [torch.tensor([0])], [torch.tensor([0])] * 3, torch.tensor([1]))


def test_pruned_spec_json_round_trip_and_old_specs_unchanged():
    for spec in (ViTSpec(), TextSpec()):  # unpruned specs serialize exactly as before
        assert not {"head_dim", "layer_heads", "layer_mlp"} & set(spec_to_dict(spec))
    old = {"kind": "vit", "width": 64, "heads": 4}  # configs written before the new fields load as before
    assert spec_from_dict(old, IMAGE_SPECS, "image").head_dim is None
    spec = ViTSpec(width=40, heads=3, head_dim=16, layer_heads=(3, 1, 2), layer_mlp=(100, 7, 50))
    d = spec_to_dict(spec)
    assert d["layer_heads"] == [3, 1, 2] and spec_from_dict(d, IMAGE_SPECS, "image") == spec
    t = dataclasses.replace(TextSpec(), head_dim=8, layer_heads=(1, 2), layer_mlp=(3, 4))
    assert spec_from_dict(spec_to_dict(t), TEXT_SPECS, "text") == t


def test_pruned_clip_model_saves_loads_and_exports(tmp_path):
    model = build_builtin("tiny-vit", seed=0)
    masks = attach_clip_masks(model, target_sparsity=0.5)
    for m in masks.towers.values():
        _randomize(m, seed=3)
    model.eval()
    x, ids = model.image.example_inputs(2)[0], model.text.example_inputs(2)[0]
    with torch.no_grad():
        want_i, want_t = model.image(x), model.text(ids)
    pruned, info = masks.prune(model)
    assert info["image"]["width"] == pruned.image.encoder.spec.width
    assert pruned.facts.params_image < model.facts.params_image
    assert pruned.facts.params_text < model.facts.params_text
    assert pruned.config["image"]["layer_heads"] == list(pruned.image.encoder.spec.layer_heads)
    with torch.no_grad():
        torch.testing.assert_close(pruned.image(x), want_i, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(pruned.text(ids), want_t, atol=1e-5, rtol=1e-5)

    path = save_model(pruned, tmp_path / "pruned")
    loaded = load_model(f"file:{path}")
    assert loaded.image.encoder.spec == pruned.image.encoder.spec
    assert loaded.text.encoder.spec == pruned.text.encoder.spec
    with torch.no_grad():
        torch.testing.assert_close(loaded.image(x), want_i, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(loaded.text(ids), want_t, atol=1e-5, rtol=1e-5)

    for tower in (loaded.image, loaded.text):
        ep = torch.export.export(tower, tower.example_inputs(1), strict=False)
        with torch.no_grad():
            torch.testing.assert_close(ep.module()(*tower.example_inputs(1)), tower(*tower.example_inputs(1)))
