"""Checkpoints in the formats users have, written by their own libraries: AltCLIP (XLM-R text,
sentencepiece tokenizer), Chinese-CLIP (BERT text, WordPiece), open_clip's save_for_hf folders,
safetensors and training checkpoints. Each loads into towers that match the library's own
outputs, with the checkpoint's preprocessing and tokenizer."""
from __future__ import annotations

import hashlib
import json

import pytest
import torch

from edgeclip.errors import InputError
from edgeclip.models import load_model, load_tokenizer, preprocess_images, save_model

from _checkpoints import (CAPTIONS, MEAN, STD, export_ok as _export_ok, openclip_saved, register_openclip_configs,
                          tiny_altclip, tiny_chinese_clip)


@pytest.mark.parametrize("family", ["altclip", "chinese_clip"])
def test_bert_family_checkpoints_match_transformers(tmp_path, photos, cosine, family):
    src = tmp_path / family
    hf, tok = (tiny_altclip if family == "altclip" else tiny_chinese_clip)(src)
    m = load_model(f"hf:{src}")
    assert m.config["text"]["kind"] == "bert" and m.tokenizer.kind == "hf"
    assert m.facts.weights == "file:sha256:" + hashlib.sha256((src / "model.safetensors").read_bytes()).hexdigest()
    # preprocessing is the checkpoint's (preprocessor_config.json), not CLIP's
    assert m.facts.mean == pytest.approx(MEAN) and m.facts.std == pytest.approx(STD)
    assert m.facts.resize_mode == ("shortest" if family == "altclip" else "squash")

    ctx = m.tokenizer.context_length
    ids = torch.from_numpy(m.tokenizer.encode(CAPTIONS))
    ref = tok(CAPTIONS, padding="max_length", max_length=ctx, truncation=True, return_tensors="pt")
    assert torch.equal(ids.long(), ref.input_ids)              # the library's own tokenizer, same ids
    assert (ids == m.tokenizer.pad_id).any() and m.tokenizer.sot_id == int(ref.input_ids[0, 0])
    pixels = preprocess_images(photos, 32, MEAN, STD, m.facts.resize_mode)
    with torch.no_grad():
        txt = hf.get_text_features(input_ids=ref.input_ids, attention_mask=ref.attention_mask).pooler_output
        img = hf.get_image_features(pixel_values=pixels).pooler_output
        assert cosine(m.text(ids), txt).min() > 0.9999
        assert cosine(m.image(pixels), img).min() > 0.9999
        # padding is masked: the same caption padded differently gives the same embedding
        assert cosine(m.text(ids[:1]), m.text(ids)[:1]).min() > 0.9999
    assert m.logit_scale == pytest.approx(hf.logit_scale.exp().item())
    _export_ok(m.text, batch=2)
    _export_ok(m.image, batch=2)

    path = save_model(m, tmp_path / "out" / "teacher")         # file: round trip keeps the tokenizer
    back = load_model(f"file:{path}")
    assert back.config["text"]["kind"] == "bert"
    assert torch.equal(torch.from_numpy(back.tokenizer.encode(CAPTIONS)), ids)
    with torch.no_grad():
        torch.testing.assert_close(back.text(ids), m.text(ids), atol=0, rtol=0)
    exported = tmp_path / "tok"
    m.tokenizer.export(exported)                               # what the bundle ships for apps
    assert torch.equal(torch.from_numpy(load_tokenizer(exported).encode(CAPTIONS)), ids)


def test_a_wrong_text_layer_would_be_caught(tmp_path, cosine):
    """The comparison above can fail: letting the tower attend to padding moves the embedding."""
    src = tmp_path / "alt"
    hf, tok = tiny_altclip(src)
    m = load_model(f"hf:{src}")
    m.text.encoder.pad_id = -1                                 # no id matches: nothing is masked
    ids = torch.from_numpy(m.tokenizer.encode(CAPTIONS))
    ref = tok(CAPTIONS, padding="max_length", max_length=m.tokenizer.context_length, return_tensors="pt")
    with torch.no_grad():
        txt = hf.get_text_features(input_ids=ref.input_ids, attention_mask=ref.attention_mask).pooler_output
        assert cosine(m.text(ids), txt).min() < 0.999


def test_unsupported_hf_model_type_names_what_is_read(tmp_path):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(tmp_path / "bert")
    with pytest.raises(InputError) as e:
        load_model(f"hf:{tmp_path / 'bert'}")
    msg = str(e.value)
    assert "'bert'" in msg and all(c in msg for c in ("CLIPModel", "AltCLIPModel", "ChineseCLIPModel"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="without config.json"):
        load_model(f"hf:{tmp_path / 'empty'}")


def test_hf_offline_error_says_which_files_go_where():
    with pytest.raises(InputError) as e:                       # tests run with HF_HUB_OFFLINE=1
        load_model("hf:BAAI/AltCLIP")
    msg = str(e.value)
    assert "config.json" in msg and "model.safetensors" in msg and "hf:DIR" in msg
    assert "hf download BAAI/AltCLIP" in msg


@pytest.mark.parametrize("name", ["edgeclip-test-vit-p4", "edgeclip-test-mobileclip2"])
def test_openclip_save_for_hf_folder_and_weight_files(tmp_path, photos, cosine, name):
    """open_clip's Hub layout as local-dir:, its safetensors and .bin as NAME//FILE, and a
    training checkpoint ({"state_dict": {"module.*"}}) all give open_clip's outputs."""
    register_openclip_configs(tmp_path)
    folder = tmp_path / "saved"
    oc = openclip_saved(folder, name)
    size = 32 if name.endswith("p4") else 64
    pixels = preprocess_images(photos, size, MEAN, STD, "shortest")
    ckpt = tmp_path / "epoch_3.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in oc.state_dict().items()}}, ckpt)
    uris = {f"openclip:local-dir:{folder}": folder / "open_clip_model.safetensors",
            f"openclip:{name}/{folder / 'open_clip_model.safetensors'}": folder / "open_clip_model.safetensors",
            f"openclip:{name}/{folder / 'open_clip_pytorch_model.bin'}": folder / "open_clip_pytorch_model.bin",
            f"openclip:{name}/{ckpt}": ckpt}
    with torch.no_grad():
        want_img, want_txt = oc.encode_image(pixels), None
        for uri, weights in uris.items():
            m = load_model(uri)
            digest = hashlib.sha256(weights.read_bytes()).hexdigest()
            assert m.facts.weights == f"file:sha256:{digest}", uri
            if weights.parent == folder:                        # open_clip_config.json beside it
                assert m.facts.mean == pytest.approx(MEAN) and m.facts.std == pytest.approx(STD), uri
            ids = torch.from_numpy(m.tokenizer.encode(CAPTIONS))
            want_txt = oc.encode_text(ids.long()) if want_txt is None else want_txt
            assert cosine(m.image(pixels), want_img).min() > 0.9999, uri
            assert cosine(m.text(ids), want_txt).min() > 0.9999, uri
    if name.endswith("p4"):
        assert m.config["image"]["patch_size"] == 4 and m.config["image"]["kind"] == "vit"
    else:
        assert m.config["image"]["kind"] == "openclip-native"


def test_openclip_weight_file_takes_the_named_models_preprocessing(tmp_path):
    """A bare weights file of a model whose pretrained tags agree (MobileCLIP2: mean 0, std 1)
    gets those statistics, not open_clip's OpenAI defaults."""
    import open_clip

    from edgeclip.models._openclip import _file_preprocess

    register_openclip_configs(tmp_path)
    oc = open_clip.create_model("edgeclip-test-vit-p4")
    lonely = tmp_path / "w.safetensors"
    lonely.write_bytes(b"")
    _file_preprocess(oc, "MobileCLIP2-S0", str(lonely))
    pp = open_clip.get_model_preprocess_cfg(oc)
    assert tuple(pp["mean"]) == (0.0, 0.0, 0.0) and tuple(pp["std"]) == (1.0, 1.0, 1.0)
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"preprocess_cfg": {"mean": MEAN, "std": STD}}))
    _file_preprocess(oc, "MobileCLIP2-S0", str(lonely))
    assert tuple(open_clip.get_model_preprocess_cfg(oc)["mean"]) == MEAN
