"""Tokenizers: export -> reload gives identical ids; exported files are usable by other tools."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgeclip.errors import InputError
from edgeclip.models import HFTokenizer, OpenClipTokenizer, load_tokenizer

LONG = "a very long caption about a cat sitting on a mat " * 8
CAPTIONS = [
    "a photo of a cat",
    "an astronaut in a white suit",
    "a cup of coffee on a table",
    "一只猫的照片",
    "Hello, world!!! (really?) -- #1 & 'quotes'",
]


@pytest.fixture(scope="module")
def openclip_tok():
    return OpenClipTokenizer(context_length=24)


def test_openclip_encode_frames_truncates_and_pads(openclip_tok):
    ids = openclip_tok.encode(["a photo of a cat", LONG])
    assert ids.dtype == np.int32 and ids.shape == (2, 24)
    assert ids[0, :7].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407]   # OpenAI CLIP ids
    assert (ids[0, 7:] == 0).all()
    assert ids[1, 0] == openclip_tok.sot_id and ids[1, -1] == openclip_tok.eot_id  # EOT kept last


def test_openclip_export_reload_identical(openclip_tok, tmp_path):
    paths = openclip_tok.export(tmp_path)
    assert sorted(p.name for p in paths) == ["merges.txt", "tokenizer.json", "vocab.json"]
    assert not list(tmp_path.glob("*.tmp"))
    desc = json.loads((tmp_path / "tokenizer.json").read_text())
    assert desc["type"] == "openclip-bpe" and desc["context_length"] == 24
    assert (desc["sot_id"], desc["eot_id"], desc["pad_id"]) == (49406, 49407, 0)
    vocab = json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8"))
    assert len(vocab) == 49408 and vocab["<|endoftext|>"] == 49407
    again = load_tokenizer(tmp_path)
    assert isinstance(again, OpenClipTokenizer)
    texts = CAPTIONS + [LONG, ""]
    np.testing.assert_array_equal(again.encode(texts), openclip_tok.encode(texts))
    vectors = openclip_tok.test_vectors(texts)
    assert vectors[3]["text"] == "一只猫的照片" and len(vectors[3]["ids"]) == 24
    assert vectors[3]["ids"] == again.encode([texts[3]])[0].tolist()


def test_exported_bpe_files_load_as_a_hugging_face_clip_tokenizer(openclip_tok, tmp_path):
    """vocab.json + merges.txt follow HF's CLIP layout: app-side BPE ports (and HF) can read them."""
    from transformers import CLIPTokenizer

    openclip_tok.export(tmp_path)
    hf = CLIPTokenizer(vocab=str(tmp_path / "vocab.json"), merges=str(tmp_path / "merges.txt"))
    plain = ["a photo of a cat", "an astronaut in a white suit", "a cup of coffee on a table"]
    for text, row in zip(plain, openclip_tok.encode(plain)):
        n = int(np.argmax(row == openclip_tok.eot_id)) + 1
        assert hf(text)["input_ids"] == row[:n].tolist()


@pytest.fixture(scope="module")
def hf_tok(tmp_path_factory, openclip_tok):
    from transformers import CLIPTokenizer

    d = tmp_path_factory.mktemp("bpe")
    openclip_tok.export(d)
    hf = CLIPTokenizer(vocab=str(d / "vocab.json"), merges=str(d / "merges.txt"))
    return HFTokenizer.from_transformers(hf, context_length=20)


def test_hf_tokenizer_export_reload_identical(hf_tok, tmp_path):
    ids = hf_tok.encode(CAPTIONS + [LONG])
    assert ids.dtype == np.int32 and ids.shape == (len(CAPTIONS) + 1, 20)
    assert ids[-1, -1] == hf_tok.eot_id                      # truncation keeps the closing token
    assert hf_tok.kind == "hf" and hf_tok.pad_id == hf_tok.eot_id == 49407
    paths = hf_tok.export(tmp_path)
    assert sorted(p.name for p in paths) == ["tokenizer.json", "tokenizer_config.json"]
    again = load_tokenizer(tmp_path)
    assert isinstance(again, HFTokenizer)
    np.testing.assert_array_equal(again.encode(CAPTIONS + [LONG]), ids)


def test_hf_export_is_loadable_by_transformers(hf_tok, tmp_path):
    from transformers import AutoTokenizer

    hf_tok.export(tmp_path)
    tok = AutoTokenizer.from_pretrained(str(tmp_path))
    got = tok(CAPTIONS, padding="max_length", max_length=20, truncation=True)["input_ids"]
    np.testing.assert_array_equal(np.asarray(got), hf_tok.encode(CAPTIONS))


def test_load_tokenizer_errors(tmp_path):
    with pytest.raises(InputError, match="tokenizer.json"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text('{"something": 1}')
    with pytest.raises(InputError, match="neither"):
        load_tokenizer(tmp_path)
    with pytest.raises(InputError, match="list of strings"):
        OpenClipTokenizer(8).encode([1, 2])
