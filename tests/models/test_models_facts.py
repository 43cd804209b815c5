"""ModelFacts: parameter counts, FLOPs (2 per multiply-add), describe() and its table."""
from __future__ import annotations

import json

import pytest

from edgeclip.models import describe, format_facts, load_model


def _vit_flops(s) -> int:
    """Hand count of 2 x multiply-adds for the ViT spec (matmuls and convs only)."""
    g = s.image_size // s.patch_size
    t, w, hidden = g * g + 1, s.width, int(round(s.width * s.mlp_ratio))
    patch = g * g * 3 * s.patch_size ** 2 * w
    layer = 4 * t * w * w + 2 * t * t * w + 2 * t * w * hidden
    return 2 * (patch + s.layers * layer + w * s.embed_dim)


def _text_flops(s) -> int:
    t, w, hidden = s.context_length, s.width, int(round(s.width * s.mlp_ratio))
    layer = 4 * t * w * w + 2 * t * t * w + 2 * t * w * hidden
    return 2 * (s.layers * layer + w * s.embed_dim)


def test_facts_of_builtin_match_hand_counts(tiny_vit):
    f = tiny_vit.facts
    assert f.flops_image == _vit_flops(tiny_vit.image.encoder.spec)
    assert f.flops_text == _text_flops(tiny_vit.text.encoder.spec)
    assert f.params_image == sum(p.numel() for p in tiny_vit.image.parameters())
    assert f.params_text > 49408 * 64                        # the token embedding table alone
    assert (f.image_size, f.context_length, f.vocab_size, f.embed_dim) == (64, 32, 49408, 64)
    d = f.to_dict()
    assert d["mean"] == list(f.mean) and d["weights"] == "random-init"


def test_describe_and_table():
    d = describe("builtin:tiny-mci")
    json.dumps(d)                                            # JSON-ready for `edgeclip info --json`
    assert d["uri"] == "builtin:tiny-mci" and d["tokenizer"]["kind"] == "openclip-bpe"
    assert d["inputs"]["image"] == {"shape": [1, 3, 64, 64], "dtype": "float32"}
    assert d["inputs"]["text"] == {"shape": [1, 32], "dtype": "int32"}
    table = format_facts(d)
    assert "image FLOPs" in table and "MFLOP" in table and "builtin:tiny-mci" in table


@pytest.mark.slow
def test_vit_b32_flops_match_published_figures():
    """ANCHORS.md: OpenAI CLIP ViT-B/32 image 8.82 GFLOP / 87.8M params, text 5.96 GFLOP / 63.4M."""
    m = load_model("openclip:ViT-B-32")
    f = m.facts
    assert f.flops_image == pytest.approx(8.82e9, rel=0.10)
    assert f.flops_text == pytest.approx(5.96e9, rel=0.10)
    assert f.params_image == pytest.approx(87.8e6, rel=0.01)
    assert f.params_text == pytest.approx(63.4e6, rel=0.01)
    assert f.weights == "random-init" and (f.image_size, f.context_length) == (224, 77)
