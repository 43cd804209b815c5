"""A teacher's own tokenizer, trained on the captions it pretrains on (recipe ``pretrain.tokenizer``).

Why: CLIP's byte-level BPE (vocab 49408) has few Chinese merges, so it reads a caption of the
embedded world in Chinese as a median 59 (at most 104) byte tokens against 17 in English, and a
bilingual teacher's Chinese retrieval trailed its English by 7-11 points. A BPE trained on the
world's own captions in every language (``models/bpe_train.py``: NFKC + lowercase, one pre-token
per CJK character, byte fallback) reads the same Chinese captions as a median 25 (at most 44)
tokens, one per character, and English words whole; its table has a few hundred entries instead
of 49408, which was most of the teacher's parameters.

The corpus is every caption variant the pretraining pairs cycle through (the first ``limit``
scenes of each language: the world's vocabulary is small and all of it shows up there) and the
label prompts of those languages, so every word the teacher trains or is scored on is a token.
"""
from __future__ import annotations

from typing import Any

from ..errors import ConfigError

__all__ = ["DEFAULT_CONTEXT", "caption_corpus", "with_caption_tokenizer"]

# the embedded world's longest Chinese caption is 44 tokens with <sot> and <eot>
DEFAULT_CONTEXT = 48


def caption_corpus(pairs, limit: int = 1024) -> list[str]:
    """Caption variants of the first ``limit`` pairs of each language, then the label prompts
    (``prompt_loss.PromptLoss``) of those languages; deterministic for the same pairs."""
    from .pretrain import SyntheticPairs
    from .prompt_loss import PromptLoss

    sets = getattr(pairs, "datasets", [pairs])
    if not all(isinstance(d, SyntheticPairs) for d in sets):
        raise ConfigError("pretrain.tokenizer trains on the embedded world's captions; use "
                          "data.train.source: synthetic or drop pretrain.tokenizer")
    texts = [c for d in sets for i in range(min(len(d), limit)) for c in d.captions(i)]
    langs = tuple(dict.fromkeys(d.world.lang for d in sets))
    return texts + PromptLoss(langs, 1.0).prompts


def with_caption_tokenizer(model, pairs, options: dict[str, Any]):
    """A random-init copy of ``model`` (a builtin architecture) whose text tower is sized for a BPE
    trained on ``caption_corpus(pairs)`` and carries it. ``options``: ``{train: {vocab_size,
    min_frequency, context_length}}`` (``config.check_tokenizer_train``); context 48 by default."""
    from ..models.bpe_train import train_bpe, with_tokenizer

    tok = train_bpe(caption_corpus(pairs), **{"context_length": DEFAULT_CONTEXT, **options["train"]})
    return with_tokenizer(model.config, tok)
