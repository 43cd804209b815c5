"""open_clip and Hugging Face models wrapped into export-ready towers match the originals."""
from __future__ import annotations

import hashlib
import json

import pytest
import torch
import torch.nn.functional as F

from edgeclip.errors import ConfigError, InputError
from edgeclip.models import from_openclip, load_model, preprocess_images, save_model

from _checkpoints import export_ok as _export_ok, tiny_hf_clip

CAPTIONS = ["a photo of a cat", "an astronaut in a white suit", "一只猫的照片", "coffee!! (hot) & 'fresh'"]
TINY_VISION = {"image_size": 32, "patch_size": 8, "width": 64, "layers": 2, "head_width": 32}
TINY_TEXT = {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}


def _pixels(photos, size):
    return preprocess_images(photos[:3], size, (0.48, 0.46, 0.41), (0.27, 0.26, 0.28), "shortest")


@pytest.mark.parametrize("variant", ["clip", "custom-text-bidirectional"])
def test_openclip_towers_match_open_clip(photos, cosine, variant):
    import open_clip

    torch.manual_seed(0)
    if variant == "clip":
        oc = open_clip.model.CLIP(embed_dim=32, vision_cfg=TINY_VISION, text_cfg=TINY_TEXT)
    else:  # MobileCLIP's text layout: CustomTextCLIP with no causal mask, layer scale in vision
        oc = open_clip.model.CustomTextCLIP(embed_dim=32, vision_cfg=dict(TINY_VISION, ls_init_value=0.5),
                                            text_cfg=dict(TINY_TEXT, no_causal_mask=True))
    oc.eval()
    m = from_openclip(oc)
    assert m.text.encoder.spec.causal is (variant == "clip")
    pixels = _pixels(photos, 32)
    ids = torch.from_numpy(m.tokenizer.encode(CAPTIONS))
    with torch.no_grad():
        assert cosine(m.image(pixels), oc.encode_image(pixels)).min() > 0.9999
        assert cosine(m.text(ids), oc.encode_text(ids.long())).min() > 0.9999
    assert m.logit_scale == pytest.approx(oc.logit_scale.exp().item())
    _export_ok(m.image)
    _export_ok(m.text)


def test_openclip_named_model_local_weights_and_errors(tmp_path, cosine):
    """openclip:NAME random-init, openclip:NAME//file, file: with an open_clip state dict."""
    import open_clip

    name = "edgeclip-test-tiny"
    cfg_dir = tmp_path / "configs"
    cfg_dir.mkdir()
    (cfg_dir / f"{name}.json").write_text(json.dumps({"embed_dim": 32, "vision_cfg": TINY_VISION,
                                                       "text_cfg": TINY_TEXT}))
    open_clip.add_model_config(cfg_dir)
    rand = load_model(f"openclip:{name}")
    assert rand.facts.weights == "random-init" and rand.config["arch"] == f"openclip:{name}"
    torch.manual_seed(5)
    oc = open_clip.create_model(name).eval()
    weights = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(oc.state_dict(), weights)
    local = load_model(f"openclip:{name}/{weights}")
    assert local.facts.weights.startswith("file:sha256:")
    ids = torch.from_numpy(local.tokenizer.encode(CAPTIONS))
    with torch.no_grad():
        assert cosine(local.text(ids), oc.encode_text(ids.long())).min() > 0.9999
    (tmp_path / "config.json").write_text(json.dumps({"arch": f"openclip:{name}"}))
    via_file = load_model(f"file:{weights}")
    with torch.no_grad():
        torch.testing.assert_close(via_file.text(ids), local.text(ids))
    with pytest.raises(ConfigError, match="laion2b"):
        load_model(f"openclip:{name}/laion2b_s34b_b79k")       # no such tag for this model, no such file
    with pytest.raises(ConfigError, match="ViT-B-32"):
        load_model("openclip:ViT-B-33")


def test_openclip_download_failure_is_an_input_error():
    with pytest.raises(InputError) as e:                       # tests run with HF_HUB_OFFLINE=1
        load_model("openclip:hf-hub:edgeclip-test/no-such-model")
    assert "open_clip_pytorch_model.bin" in str(e.value) and "file:PATH" in str(e.value)


@pytest.mark.parametrize("eos", [49407, 2])  # 2: configs from before HF's eos fix pool at argmax(ids)
def test_hf_towers_match_transformers(tmp_path, photos, cosine, eos):
    hf = tiny_hf_clip(tmp_path, eos_token_id=eos)
    m = load_model(f"hf:{tmp_path}")
    digest = hashlib.sha256((tmp_path / "model.safetensors").read_bytes()).hexdigest()
    assert m.tokenizer.kind == "hf" and m.facts.weights == f"file:sha256:{digest}"
    pixels = _pixels(photos, 32)
    ids = torch.from_numpy(m.tokenizer.encode(CAPTIONS))
    with torch.no_grad():
        img = hf.get_image_features(pixel_values=pixels).pooler_output
        txt = hf.get_text_features(input_ids=ids.long()).pooler_output
        assert cosine(m.image(pixels), img).min() > 0.9999
        assert cosine(m.text(ids), txt).min() > 0.9999
    assert m.logit_scale == pytest.approx(hf.logit_scale.exp().item())
    _export_ok(m.image)
    _export_ok(m.text)


def test_hf_without_tokenizer_files_and_file_roundtrip(tmp_path, cosine):
    src = tmp_path / "hf"
    hf = tiny_hf_clip(src, with_tokenizer=False)
    m = load_model(f"hf:{src}")
    assert m.tokenizer.kind == "openclip-bpe"                  # CLIP's BPE: the one with vocab 49408
    ids = torch.from_numpy(m.tokenizer.encode(CAPTIONS))
    with torch.no_grad():
        ref = F.normalize(hf.get_text_features(input_ids=ids.long()).pooler_output, dim=-1)
        assert cosine(m.text(ids), ref).min() > 0.9999

    with_tok = tmp_path / "hf2"
    tiny_hf_clip(with_tok)
    m2 = load_model(f"hf:{with_tok}")
    path = save_model(m2, tmp_path / "out" / "student")
    assert (tmp_path / "out" / "student.tokenizer" / "tokenizer.json").is_file()
    back = load_model(f"file:{path}")
    assert back.tokenizer.kind == "hf"
    ids2 = torch.from_numpy(back.tokenizer.encode(CAPTIONS))
    assert torch.equal(ids2, torch.from_numpy(m2.tokenizer.encode(CAPTIONS)))
    with torch.no_grad():
        torch.testing.assert_close(back.text(ids2), m2.text(ids2))


@pytest.mark.slow
def test_openclip_mobileclip_style_native_tower_reparam_export_roundtrip(tmp_path, photos):
    """A timm fastvit_mci0 trunk (MobileCLIP2-S0's) stays open_clip's module; it folds, exports, saves."""
    import open_clip

    from edgeclip.models import count_branches, reparameterize

    name = "edgeclip-test-mci"
    cfg_dir = tmp_path / "configs"
    cfg_dir.mkdir()
    vision = {"timm_model_name": "fastvit_mci0", "timm_model_pretrained": False, "timm_pool": "avg",
              "timm_proj": None, "image_size": 64}
    (cfg_dir / f"{name}.json").write_text(json.dumps({"embed_dim": 32, "vision_cfg": vision, "custom_text": True,
                                                       "text_cfg": dict(TINY_TEXT, no_causal_mask=True)}))
    open_clip.add_model_config(cfg_dir)
    m = load_model(f"openclip:{name}")
    assert m.config["image"]["kind"] == "openclip-native" and m.facts.image_size == 64
    before = m.encode_image(photos)
    reparameterize(m)
    assert m.config["image"]["reparameterized"] is True
    torch.testing.assert_close(m.encode_image(photos), before, atol=1e-5, rtol=1e-4)
    assert count_branches(m.image) < count_branches(open_clip.create_model(name).visual)
    _export_ok(m.image)
    back = load_model(f"file:{save_model(m, tmp_path / 'mci')}")
    torch.testing.assert_close(back.encode_image(photos), m.encode_image(photos), atol=0, rtol=0)
