"""Multilingual BPE trained on the embedded world's English + Chinese captions (DC-CLIP item 3)."""
from __future__ import annotations

import json
import unicodedata

import numpy as np
import pytest
import torch

from edgeclip.data.synthetic import SyntheticWorld, caption, paraphrases
from edgeclip.errors import InputError
from edgeclip.models import HFTokenizer, builtin_config, load_model, load_tokenizer, save_model
from edgeclip.models.bpe_train import SPECIAL_TOKENS, TEST_TEXTS, text_overrides, train_bpe, with_tokenizer

CTX = 48  # the world's longest Chinese caption takes 44 tokens with <sot>/<eot>
UNSEEN = "a 🦄 beside 龘"  # an emoji and a rare Han character: in no caption of the world


def captions(split: str, n: int, k: int) -> dict[str, list[str]]:
    """Canonical caption + ``k`` paraphrases of ``n`` scenes, per language."""
    world = SyntheticWorld(split=split, length=n)
    out: dict[str, list[str]] = {"en": [], "zh": []}
    for i in range(n):
        scene = world.scene(i)
        for lang in out:
            out[lang] += [caption(scene, lang)] + paraphrases(scene, k, lang)
    return out


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    c = captions("train", 500, 3)
    return c["en"] + c["zh"]


@pytest.fixture(scope="module")
def heldout() -> dict[str, list[str]]:
    return captions("heldout", 100, 2)


@pytest.fixture(scope="module")
def tok(corpus) -> HFTokenizer:
    return train_bpe(corpus, context_length=CTX)


def normalized(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


def test_specials_framing_and_truncation(tok):
    assert [tok._backend.id_to_token(i) for i in range(4)] == list(SPECIAL_TOKENS)
    assert (tok.pad_id, tok.sot_id, tok.eot_id) == (0, 2, 3)
    assert 260 < tok.vocab_size <= 2000   # bytes + specials + merges; a small corpus stops early
    ids = tok.encode(["two small red crosses", "两个红色的小十字形", "word " * 100])
    assert ids.dtype == np.int32 and ids.shape == (3, CTX)
    for row in ids[:2]:
        n = int(np.argmax(row == tok.eot_id))
        assert row[0] == tok.sot_id and 2 < n and (row[n + 1:] == tok.pad_id).all()
        assert tok.eot_id not in row[1:n] and tok.pad_id not in row[:n]
    assert ids[2, 0] == tok.sot_id and ids[2, -1] == tok.eot_id and (ids[2, 1:-1] > 3).all()


def test_round_trip_en_zh(tok, corpus, heldout):
    texts = corpus[::7] + heldout["en"] + heldout["zh"]
    assert any("，" in t for t in texts)          # full-width punctuation goes through NFKC
    assert tok.decode(tok.encode(texts)) == [normalized(t) for t in texts]
    # words and characters are single tokens: English ~1 per word, Chinese 1 per character
    assert tok.encode(["two small red crosses"])[0, :6].tolist().index(tok.eot_id) == 5
    assert tok.encode(["红色"])[0, :4].tolist().index(tok.eot_id) == 3


def test_heldout_captions_have_no_unk_and_no_byte_fragments(tok, heldout):
    """Held-out scenes (unseen colour-shape pairs) tokenize into whole learned tokens."""
    texts = heldout["en"] + heldout["zh"]
    ids = tok.encode(texts)
    assert not (ids == 1).any()                                     # <unk>
    assert ids[:, -1].tolist().count(tok.eot_id) == 0                # nothing truncated at CTX
    pieces = {int(i) for i in np.unique(ids)} - {0, 1, 2, 3}
    assert all("\ufffd" not in tok._backend.decode([i]) for i in pieces)  # no partial UTF-8 char
    zh = tok.encode(heldout["zh"])
    n_tokens = (zh > 3).sum(1)
    n_chars = np.array([len(normalized(t)) for t in heldout["zh"]])
    assert (n_tokens <= n_chars).all()


def test_unseen_characters_become_bytes_not_errors(tok):
    ids = tok.encode([UNSEEN, "𝔘", ""])
    assert not (ids == 1).any()
    assert tok.decode(ids) == [UNSEEN, "u", ""]     # NFKC folds 𝔘 to U, then lower-cased
    assert ids[2, :2].tolist() == [tok.sot_id, tok.eot_id]


def test_training_is_deterministic(tok, corpus, tmp_path):
    again = train_bpe(corpus, context_length=CTX)
    tok.export(tmp_path / "a")
    again.export(tmp_path / "b")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_export_reload_and_test_vectors(tok, tmp_path):
    tok.export(tmp_path)
    cfg = json.loads((tmp_path / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert (cfg["bos_token"], cfg["eos_token"], cfg["pad_token"], cfg["unk_token"]) == ("<sot>", "<eot>", "<pad>", "<unk>")
    again = load_tokenizer(tmp_path)
    assert isinstance(again, HFTokenizer) and again.describe() == tok.describe()
    texts = list(TEST_TEXTS) + [UNSEEN, "word " * 100]
    np.testing.assert_array_equal(again.encode(texts), tok.encode(texts))
    vectors = again.test_vectors(TEST_TEXTS)
    assert [v["text"] for v in vectors] == list(TEST_TEXTS)
    assert any(v["text"].isascii() and v["text"] for v in vectors)
    assert any(unicodedata.name(ch, "").startswith("CJK") for v in vectors for ch in v["text"])
    assert all(len(v["ids"]) == CTX for v in vectors)
    assert vectors == tok.test_vectors(TEST_TEXTS)


def test_bad_arguments():
    with pytest.raises(InputError, match="non-empty"):
        train_bpe([])
    with pytest.raises(InputError, match="vocab_size"):
        train_bpe(["a b c"], vocab_size=100)


def test_model_with_tokenizer_round_trips_and_exports(tok, tmp_path):
    over = text_overrides(tok)
    assert over == {"vocab_size": tok.vocab_size, "eot_id": 3, "sot_id": 2, "pad_id": 0, "context_length": CTX}
    model = with_tokenizer("tiny-vit", tok)
    assert model.tokenizer is tok and model.text.vocab_size == tok.vocab_size
    assert model.text.context_length == CTX and model.config["tokenizer"]["kind"] == "hf"
    ref = builtin_config("tiny-vit")  # the builtin otherwise: image tower and text tower shape
    assert ref["image"].items() <= model.config["image"].items()
    assert {k: ref["text"][k] for k in ("width", "layers", "heads", "embed_dim")}.items() <= model.config["text"].items()

    path = save_model(model, tmp_path / "student")
    assert (tmp_path / "student.tokenizer" / "tokenizer.json").is_file()
    back = load_model(f"file:{path}")
    assert isinstance(back.tokenizer, HFTokenizer)
    texts = list(TEST_TEXTS) + [UNSEEN]
    np.testing.assert_array_equal(back.tokenizer.encode(texts), tok.encode(texts))
    torch.testing.assert_close(back.encode_text(texts), model.encode_text(texts), rtol=0, atol=0)

    ids = torch.from_numpy(tok.encode(TEST_TEXTS[:4]))  # en + zh rows of the trained tokenizer
    ep = torch.export.export(back.text, (ids,), strict=False)
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(ids), back.text(ids), rtol=1e-5, atol=1e-5)
