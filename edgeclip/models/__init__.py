"""Model zoo, export-ready CLIP towers, tokenizers, facts and reparameterization.

Public API:

- ``load_model(uri, *, device="cpu") -> ClipModel`` for ``openclip:NAME[/TAG]``, ``hf:ID``,
  ``file:PATH``, ``builtin:NAME``; ``save_model(model, path) -> Path`` (safetensors + JSON config,
  atomic) so ``file:`` round-trips; ``build_builtin(name, seed=0, **overrides)``;
  ``builtin_config(name, **overrides)``; ``list_models()``; ``MODELS`` (builtin registry).
- ``ClipModel`` (image, text, tokenizer, facts, logit_scale, uri, config) with ``encode_image``,
  ``encode_text``, ``zero_shot_logits``, ``zero_shot_head``, ``tower(name, labels)``.
- ``ImageTower`` (``float32[B,3,S,S]`` or, ``with_preprocess()``, ``uint8[B,H,W,3]`` ->
  L2-normalized ``float32[B,D]``), ``TextTower`` (``int32[B,L]`` -> ``float32[B,D]``),
  ``ZeroShotHead`` (-> ``float32[B,K]`` logits), ``InGraphPreprocess``. Each has
  ``example_inputs(batch=1)`` and exports with ``torch.export.export(tower, example, strict=False)``.
- ``Tokenizer`` (``OpenClipTokenizer``, ``HFTokenizer``): ``encode -> int32[B, context_length]``,
  ``export(dir)``, ``test_vectors(texts)``; ``load_tokenizer(dir)`` reloads exported files.
- ``ModelFacts``, ``describe(uri) -> dict``, ``format_facts(dict) -> str``.
- ``reparameterize(model)``, ``count_branches(model)``; ``from_openclip``, ``from_hf`` wrap
  in-memory open_clip / transformers models.
- For methods that build or reshape towers (distill): ``assemble(config)`` (a config dict ->
  ``ClipModel``), the encoders ``ViT`` and ``TextTransformer``, ``l2_normalize``.
"""
from __future__ import annotations

from ._build import assemble
from ._hf import from_hf
from ._layers import l2_normalize
from ._openclip import from_openclip
from ._preprocess import preprocess_images
from ._text import TextTransformer
from ._vit import ViT
from .facts import ModelFacts
from .info import describe, format_facts
from .reparam import count_branches, reparameterize
from .tokenizers import HFTokenizer, OpenClipTokenizer, Tokenizer, load_tokenizer
from .towers import ClipModel, ImageTower, InGraphPreprocess, TextTower, ZeroShotHead
from .zoo import MODELS, build_builtin, builtin_config, list_models, load_model, save_model

__all__ = [
    "load_model", "save_model", "build_builtin", "builtin_config", "list_models", "MODELS",
    "ClipModel", "ImageTower", "TextTower", "ZeroShotHead", "InGraphPreprocess", "preprocess_images",
    "Tokenizer", "OpenClipTokenizer", "HFTokenizer", "load_tokenizer",
    "ModelFacts", "describe", "format_facts",
    "reparameterize", "count_branches", "from_openclip", "from_hf",
    "assemble", "ViT", "TextTransformer", "l2_normalize",
]
