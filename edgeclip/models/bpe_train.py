"""Train a small multilingual (English + Chinese) byte-level BPE for a student text tower.

For DC-CLIP when the teacher has no multilingual tokenizer of its own: ``train_bpe`` learns a BPE
from the recipe's captions with the ``tokenizers`` library, ``text_overrides`` gives the
``TextSpec`` fields a text tower needs to use it, and ``with_tokenizer`` builds a model with it
attached (``save_model``/``load_model`` carry it as an ``hf`` tokenizer).

Pipeline (all standard ``tokenizers`` components, so app-side ports of ``tokenizer.json`` work):

- normalizer: NFKC + lowercase (full-width punctuation such as "，" becomes ",").
- pre-tokenizer: every CJK character (Han, kana) is isolated, then GPT-2's byte-level split
  (words with their leading space, digit runs, punctuation runs). Isolating CJK characters
  rather than keeping runs: Chinese has no spaces, so a run is a whole clause, and BPE on a
  small caption corpus then learns clause fragments that cross word boundaries ("色的大五边形");
  an unseen colour-shape pair would tokenize unlike its parts. Characters are the units
  Chinese CLIP/BERT use, and they compose like English words do. Cost: about one token per
  Chinese character; the embedded world's longest Chinese captions take 44 tokens with the
  framing, so give such text towers ``context_length=48`` (longer captions are truncated).
- byte level: the 256 byte symbols are always in the vocabulary, so a character never seen in
  training (an emoji, a rare Han character) becomes byte tokens and decodes back exactly;
  ``<unk>`` exists for ports but is never produced.
- specials ``<pad>`` = 0, ``<unk>`` = 1, ``<sot>`` = 2, ``<eot>`` = 3; post-processor
  ``<sot> $A <eot>``; ``HFTokenizer`` truncates keeping ``<eot>`` last and pads with 0.

Training is deterministic: the same texts in the same order give an identical ``tokenizer.json``
(the trainer breaks count ties by token id and sorts its alphabet; checked in the tests).
"""
from __future__ import annotations

import copy
from typing import Any, Iterable

from ..errors import InputError
from .tokenizers import HFTokenizer

__all__ = ["DEFAULT_VOCAB", "SPECIAL_TOKENS", "TEST_TEXTS", "train_bpe", "text_overrides", "with_tokenizer"]

SPECIAL_TOKENS = ("<pad>", "<unk>", "<sot>", "<eot>")  # ids 0..3, in this order
PAD_ID, UNK_ID, SOT_ID, EOT_ID = range(4)
_CJK = r"[\p{Han}\p{Hiragana}\p{Katakana}]"  # scripts written without spaces: one pre-token each
_MIN_VOCAB = 256 + len(SPECIAL_TOKENS)     # byte alphabet + specials
DEFAULT_VOCAB = 2000                        # an upper bound: the embedded world's captions fill ~600

# Test vectors for a bundle: both languages, mixed script, an unseen character, punctuation, empty.
TEST_TEXTS = (
    "a photo of a red circle",
    "two small blue striped squares, on a checkered white background",
    "一个红色的圆形的照片",
    "两个带条纹的蓝色小正方形，白色格子背景",
    "a red 圆形 🦄",
    "Hello, World!!! (3 Shapes?)",
    "",
)


def train_bpe(texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB, context_length: int = 32,
              min_frequency: int = 2) -> HFTokenizer:
    """A byte-level BPE with ids ``<pad>``=0 ``<unk>``=1 ``<sot>``=2 ``<eot>``=3, framed to ``context_length``.

    ``vocab_size`` is an upper bound: a small corpus runs out of pairs seen ``min_frequency`` times
    first (the result's ``vocab_size`` is the real size).
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    texts = list(texts)  # one pass, fixed order: the result depends on it
    if not texts or not all(isinstance(t, str) for t in texts):
        raise InputError("train_bpe needs a non-empty list of strings")
    if vocab_size <= _MIN_VOCAB:
        raise InputError(f"vocab_size {vocab_size} leaves no room for merges: the byte alphabet and "
                         f"special tokens take {_MIN_VOCAB}")
    if context_length < 3:
        raise InputError(f"context_length {context_length} cannot hold <sot>, a token and <eot>")
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_CJK), behavior="isolated"),
        # no prefix space: it would be added before every isolated CJK character
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=int(vocab_size), min_frequency=int(min_frequency),
                                  special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(texts, trainer)
    if [backend.token_to_id(t) for t in SPECIAL_TOKENS] != [PAD_ID, UNK_ID, SOT_ID, EOT_ID]:
        raise AssertionError("tokenizers placed the special tokens at unexpected ids")
    backend.post_processor = processors.TemplateProcessing(
        single="<sot> $A <eot>", special_tokens=[("<sot>", SOT_ID), ("<eot>", EOT_ID)])
    specials = {"bos_token": "<sot>", "eos_token": "<eot>", "pad_token": "<pad>", "unk_token": "<unk>"}
    return HFTokenizer(backend, context_length, eot_id=EOT_ID, pad_id=PAD_ID, sot_id=SOT_ID,
                       special_tokens=specials)


def text_overrides(tok) -> dict[str, Any]:
    """The ``TextSpec`` fields a text tower needs to take ``tok``'s ids (``text=`` of ``builtin_config``)."""
    return {"vocab_size": int(tok.vocab_size), "eot_id": int(tok.eot_id), "sot_id": tok.sot_id,
            "pad_id": int(tok.pad_id), "context_length": int(tok.context_length)}


def with_tokenizer(model: str | dict[str, Any], tok, *, seed: int | None = None):
    """A random-init ``ClipModel`` of ``model`` (a builtin name, ``builtin:NAME``, or a full model
    config such as ``builtin_config(...)``) whose text tower is sized for ``tok`` and carries it.

    ``build_builtin(name, text=text_overrides(tok))`` alone cannot do this: it attaches open_clip's
    BPE, whose 49408 ids do not fit the resized embedding table.
    """
    from ._build import assemble
    from .zoo import builtin_config

    if isinstance(model, str):
        cfg = builtin_config(model.removeprefix("builtin:"))
    else:
        cfg = copy.deepcopy(dict(model))
        cfg.pop("weights", None)  # the model is random-init, not those weights
    if not isinstance(cfg.get("text"), dict):
        raise InputError("with_tokenizer needs a model config with a 'text' tower spec")
    cfg["text"] = {**cfg["text"], **text_overrides(tok)}
    cfg["tokenizer"] = {"kind": tok.kind, "context_length": tok.context_length}
    seed = int(cfg.get("seed", 0) if seed is None else seed)
    cfg["seed"] = seed
    return assemble(cfg, uri=str(cfg.get("arch") or "builtin:custom"), seed=seed, tokenizer=tok)
