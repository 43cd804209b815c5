"""Tokenizers: export -> reload gives identical ids; exported files are usable by other tools."""
from __future__ import annotations

import json
from pathlib import Path

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
    assert sorted(p.name for p in paths) == ["merges.txt", "tokenizer.json", "tokenizer_config.json", "vocab.json"]
    assert not list(tmp_path.glob("*.tmp*"))
    meta = json.loads((tmp_path / "tokenizer_config.json").read_text())["edgeclip"]
    assert meta["type"] == "openclip-bpe" and meta["context_length"] == 24
    assert (meta["sot_id"], meta["eot_id"], meta["pad_id"]) == (49406, 49407, 0)
    assert "model" in json.loads((tmp_path / "tokenizer.json").read_text())  # the tokenizers file
    vocab = json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8"))
    assert len(vocab) == 49408 and vocab["<|endoftext|>"] == 49407
    again = load_tokenizer(tmp_path)
    assert isinstance(again, OpenClipTokenizer)
    texts = CAPTIONS + [LONG, ""]
    np.testing.assert_array_equal(again.encode(texts), openclip_tok.encode(texts))
    vectors = openclip_tok.test_vectors(texts)
    assert vectors[3]["text"] == "一只猫的照片" and len(vectors[3]["ids"]) == 24
    assert vectors[3]["ids"] == again.encode([texts[3]])[0].tolist()


def test_old_openclip_descriptor_still_loads(openclip_tok, tmp_path):
    """Bundles written before tokenizer.json became the Hugging Face file stay readable."""
    openclip_tok.export(tmp_path)
    meta = json.loads((tmp_path / "tokenizer_config.json").read_text())["edgeclip"]
    (tmp_path / "tokenizer_config.json").unlink()
    (tmp_path / "tokenizer.json").write_text(json.dumps(meta))
    np.testing.assert_array_equal(load_tokenizer(tmp_path).encode(CAPTIONS), openclip_tok.encode(CAPTIONS))


# what app text looks like: CJK, emoji (ZWJ), accents, entities, odd whitespace, ftfy's fixes, long
APP_TEXTS = CAPTIONS + [
    "两个带条纹的蓝色小正方形，白色格子背景", "a red 圆形 🦄 and a 🐈\u200d⬛", "Crème brûlée à São Paulo, ΣΑΣ ΟΔΟΣ",
    "Tom &amp; Jerry &lt;3 it&#39;s &quot;fine&quot; &amp;amp; &rsquo;", "  a   lot\tof \n\u3000 spaces\xa0 ",
    "ＦＵＬＬ width “curly” ‘quotes’ ﬁne ½", "control\x00\x1b chars\x85", LONG, ""]


def test_openclip_tokenizer_json_gives_open_clip_ids(openclip_tok, tmp_path):
    """tokenizer.json through the tokenizers library and transformers = open_clip's SimpleTokenizer."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    openclip_tok.export(tmp_path)
    want = openclip_tok.encode(APP_TEXTS)
    got = np.asarray([e.ids for e in Tokenizer.from_file(str(tmp_path / "tokenizer.json")).encode_batch(APP_TEXTS)])
    for text, w, g in zip(APP_TEXTS, want, got):
        assert g.tolist() == w.tolist(), text
    # transformers applies its call arguments instead of the file's padding, and makes the file's
    # pad token ("!", id 0 as open_clip pads) special, so "!!!" splits: texts without "!" agree
    plain = [t for t in APP_TEXTS if "!" not in t]
    rows = AutoTokenizer.from_pretrained(str(tmp_path))(plain, max_length=24, truncation=True)["input_ids"]
    assert [r + [0] * (24 - len(r)) for r in rows] == openclip_tok.encode(plain).tolist()


# single code points where tokenizer.json and open_clip knowingly differ (see _clip_bpe_json):
# U+0345 case-folds to a letter in Python's IGNORECASE split; ª º and U+0345 are "cased" to
# Python's final-sigma rule but not letters to the normalizer's
KNOWN_DIFFERENT = {"a\u0345b c\u0345", "ªΣ", "ºΣ", "\u0345Σ"}


@pytest.mark.slow
def test_every_code_point_tokenizes_as_open_clip_does():
    """A sweep of every code point Python's Unicode database assigns, inside words and before a
    sigma: ids from tokenizer.json's pipeline equal open_clip's. Fails when ftfy or Python changes
    what the stored clean table says (regenerate it with _clip_bpe_json.write_clean_table)."""
    import unicodedata

    tok = OpenClipTokenizer(context_length=12)
    backend = tok.hf_backend()
    cps = [c for c in map(chr, range(0x30000)) if unicodedata.category(c) not in ("Cn", "Cs")]
    texts = [f"a{c}b c{c}" for c in cps] + [f"{c}Σ" for c in cps if unicodedata.category(c)[0] in "LM"]
    want = tok.encode(texts)
    got = np.asarray([e.ids for e in backend.encode_batch(texts)])
    bad = {texts[i] for i in np.flatnonzero((want != got).any(axis=1))}
    assert bad == KNOWN_DIFFERENT, sorted(bad - KNOWN_DIFFERENT)[:20]


def test_stored_clean_table_is_what_ftfy_gives_today():
    import ftfy

    from edgeclip.models._clip_bpe_json import _TABLE_FILE, stored_clean_table

    blob = json.loads((Path(__file__).parents[2] / "edgeclip/models" / _TABLE_FILE).read_text(encoding="utf-8"))
    assert blob["ftfy"] == ftfy.__version__, "ftfy changed: regenerate the table (write_clean_table)"
    assert len(stored_clean_table()) == len(blob["table"]) > 300


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
