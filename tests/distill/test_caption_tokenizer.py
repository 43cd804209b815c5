"""A teacher's own tokenizer, trained on its pretraining captions (recipe ``pretrain.tokenizer``,
``distill/caption_tokenizer.py``): what it trains on, how it reads held-out captions in both
languages, how the recipe asks for it and how it keys the teacher."""
from __future__ import annotations

import textwrap
from dataclasses import replace

import numpy as np
import pytest

from edgeclip.config import DataSource, load_recipe
from edgeclip.data import SyntheticWorld, caption
from edgeclip.distill import training_pairs
from edgeclip.distill.caption_tokenizer import DEFAULT_CONTEXT, caption_corpus, with_caption_tokenizer
from edgeclip.distill.prompt_loss import PromptLoss
from edgeclip.errors import ConfigError
from edgeclip.models import build_builtin
from edgeclip.models.tokenizers import OpenClipTokenizer

SMALL = {"outline_widths": [8, 16], "colour_widths": [8], "shape_dim": 16, "colour_dim": 16, "embed_dim": 32,
         "image_size": 32}
TEXT = {"width": 32, "layers": 1, "heads": 2, "embed_dim": 32}


@pytest.fixture(scope="module")
def pairs():
    return training_pairs(DataSource(source="synthetic", samples=256, languages=("en", "zh")), 32, 0)


@pytest.fixture(scope="module")
def teacher(pairs):
    model = build_builtin("teacher-factored", image=SMALL, text=TEXT)
    return with_caption_tokenizer(model, pairs, {"train": {"vocab_size": 2000}})


def _heldout(lang: str, n: int = 40) -> list[str]:
    world = SyntheticWorld(seed=3, image_size=32, split="heldout", length=n, lang=lang)
    return [caption(world.scene(i), lang) for i in range(n)]


def test_corpus_is_every_language_s_caption_variants_then_the_label_prompts(pairs):
    texts = caption_corpus(pairs, limit=8)
    en, zh = pairs.datasets
    want = [c for d in (en, zh) for i in range(8) for c in d.captions(i)]
    prompts = PromptLoss(("en", "zh"), 1.0).prompts
    assert texts == want + prompts and len(want) == 2 * 8 * en.variants
    assert caption_corpus(pairs, limit=8) == texts                      # deterministic
    assert any("\u4e00" <= ch <= "\u9fff" for ch in "".join(want[8 * en.variants:]))


def test_corpus_refuses_data_that_is_not_the_embedded_world():
    with pytest.raises(ConfigError, match="synthetic"):
        caption_corpus([(np.zeros((8, 8, 3), np.uint8), "a cat", {})])


def test_teacher_gets_a_small_table_and_reads_held_out_chinese_a_character_a_token(teacher):
    tok = teacher.tokenizer
    assert tok.kind == "hf" and tok.context_length == DEFAULT_CONTEXT
    assert teacher.facts.vocab_size == tok.vocab_size < 1000             # was 49408 rows
    assert teacher.text.context_length == DEFAULT_CONTEXT
    clip = OpenClipTokenizer(128)
    for lang in ("en", "zh"):
        texts = _heldout(lang)                                          # shape-colour pairs never trained on
        ids = tok.encode(texts)
        lengths = (ids != tok.pad_id).sum(1)
        assert lengths.max() < DEFAULT_CONTEXT                           # nothing cut short
        assert not (ids == 1).any()                                     # no <unk>
        assert tok.decode(ids) == [t.lower().replace("，", ",") for t in texts]   # NFKC + lower-case
        if lang == "zh":   # one token per character (and per comma), framed by <sot> and <eot>
            assert lengths.tolist() == [len(t) + 2 for t in texts]
            clip_lengths = (clip.encode(texts) != 0).sum(1)
            assert np.median(lengths) < 0.5 * np.median(clip_lengths)
        else:              # a world word is one token: ids per caption <= words + commas + framing
            assert all(n <= len(t.split()) + t.count(",") + 2 for n, t in zip(lengths, texts))


def test_teacher_with_its_tokenizer_embeds_and_round_trips(teacher, tmp_path):
    from edgeclip.models import load_model, save_model

    emb = teacher.encode_text(["一个红色的圆形的照片", "a photo of a red circle"])
    assert emb.shape == (2, 32)
    save_model(teacher, tmp_path / "t.safetensors")
    again = load_model(f"file:{tmp_path / 't.safetensors'}")
    assert again.tokenizer.kind == "hf" and again.facts.vocab_size == teacher.facts.vocab_size
    zh = ["一个红色的圆形"]
    np.testing.assert_array_equal(again.tokenizer.encode(zh), teacher.tokenizer.encode(zh))


RECIPE = """
version: 1
name: tok
teacher: {teacher}
pretrain: {{steps: 3, tokenizer: {tokenizer}}}
data:
  train: {{source: synthetic, samples: 64, languages: [en, zh]}}
"""


@pytest.mark.parametrize("teacher_uri,tokenizer,match", [
    ("builtin:teacher-factored", "{train: {vocab: 600}}", "vocab_size"),
    ("builtin:teacher-factored", "{train: {vocab_size: 0}}", "positive integer"),
    ("builtin:teacher-factored", "bpe", "train"),
    ("openclip:ViT-B-32", "{train: {vocab_size: 600}}", "builtin"),
])
def test_recipe_rejects_a_bad_pretrain_tokenizer_in_one_line(tmp_path, teacher_uri, tokenizer, match):
    path = tmp_path / "r.yaml"
    path.write_text(textwrap.dedent(RECIPE.format(teacher=teacher_uri, tokenizer=tokenizer)))
    with pytest.raises(ConfigError, match=match) as e:
        load_recipe(path)
    assert "\n" not in str(e.value)


def test_teacher_key_follows_the_tokenizer_setting(tmp_path):
    from edgeclip.build.stages.teacher import teacher_key

    path = tmp_path / "r.yaml"
    path.write_text(textwrap.dedent(RECIPE.format(teacher="builtin:teacher-factored",
                                                  tokenizer="{train: {vocab_size: 600}}")))
    r = load_recipe(path)
    keys = {teacher_key(r, "t"),
            teacher_key(replace(r, pretrain=replace(r.pretrain, tokenizer={"train": {"vocab_size": 700}})), "t"),
            teacher_key(replace(r, pretrain=replace(r.pretrain, tokenizer=None)), "t")}
    assert len(keys) == 3
