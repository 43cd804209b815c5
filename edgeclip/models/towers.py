"""Export-ready towers (DESIGN.md "Contracts: Towers") and the ``ClipModel`` that holds them.

- ``ImageTower``: ``float32[B,3,S,S]`` normalized pixels (or ``uint8[B,H,W,3]`` with in-graph
  preprocessing) -> L2-normalized ``float32[B,D]``.
- ``TextTower``: ``int32[B,L]`` token ids -> L2-normalized ``float32[B,D]``.
- ``ZeroShotHead``: an image tower plus a fixed label-embedding matrix -> ``float32[B,K]`` logits.

Each has ``example_inputs(batch=1)`` (contiguous tensors of the right dtype) and exports with
``torch.export.export(tower, tower.example_inputs(), strict=False)``.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from ..errors import ConfigError, InputError
from ..config.names import TOWERS
from ._layers import l2_normalize
from ._preprocess import InGraphPreprocess, preprocess_images
from .facts import ModelFacts
from .tokenizers import Tokenizer

__all__ = ["ImageTower", "TextTower", "ZeroShotHead", "ClipModel", "InGraphPreprocess"]


class ImageTower(nn.Module):
    """Wraps an image encoder (pixels -> unnormalized features) and L2-normalizes its output."""

    def __init__(self, encoder: nn.Module, *, image_size: int, embed_dim: int,
                 mean: Sequence[float], std: Sequence[float], resize_mode: str = "squash",
                 preprocess: InGraphPreprocess | None = None):
        super().__init__()
        self.encoder = encoder
        self.image_size, self.embed_dim = int(image_size), int(embed_dim)
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        self.resize_mode = resize_mode
        self.preprocess = preprocess

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalized ``float32[B,3,S,S]`` -> L2-normalized embeddings (skips in-graph preprocessing)."""
        return l2_normalize(self.encoder(pixels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preprocess is not None:
            x = self.preprocess(x)
        return self.features(x)

    def with_preprocess(self, input_hw: tuple[int, int] | None = None,
                        input_dtype: torch.dtype = torch.uint8) -> "ImageTower":
        """A tower (sharing this encoder) that takes raw ``[B,H,W,3]`` pixels 0..255, ``uint8`` by
        default (``int32``/``float32`` for CoreML, which has no uint8 inputs); ``input_hw`` defaults
        to SxS."""
        pre = InGraphPreprocess(self.image_size, self.mean, self.std, input_hw, self.resize_mode, input_dtype)
        return ImageTower(self.encoder, image_size=self.image_size, embed_dim=self.embed_dim,
                          mean=self.mean, std=self.std, resize_mode=self.resize_mode, preprocess=pre)

    def example_inputs(self, batch: int = 1) -> tuple[torch.Tensor, ...]:
        if self.preprocess is not None:
            return tuple(t.to(self._device()) for t in self.preprocess.example_inputs(batch))
        g = torch.Generator().manual_seed(0)
        x = torch.randn(batch, 3, self.image_size, self.image_size, generator=g)
        return (x.to(self._device()).contiguous(),)

    def _device(self) -> torch.device:
        p = next(self.parameters(), None)
        return p.device if p is not None else torch.device("cpu")


class TextTower(nn.Module):
    """Wraps a text encoder (int32 ids -> unnormalized features) and L2-normalizes its output."""

    def __init__(self, encoder: nn.Module, *, context_length: int, vocab_size: int, embed_dim: int,
                 eot_id: int, sot_id: int | None = None, pad_id: int = 0):
        super().__init__()
        self.encoder = encoder
        self.context_length, self.vocab_size, self.embed_dim = int(context_length), int(vocab_size), int(embed_dim)
        self.eot_id, self.sot_id, self.pad_id = int(eot_id), sot_id, int(pad_id)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return l2_normalize(self.encoder(ids))

    def forward_packed(self, ids: torch.Tensor, groups: int = 8) -> torch.Tensor:
        """``forward``, with the rows sorted by length and run in ``groups`` batches, each cut after
        its longest row's end-of-text token, when the encoder ``trims`` (a causal one; else plain
        ``forward``). Same embeddings to float rounding; for training, where a batch mixes 20-token
        English with 100-token Chinese captions and most of a padded row is padding."""
        if not getattr(self.encoder, "trims", False) or ids.shape[0] < 2:
            return self(ids)
        ends = torch.argmax((ids == self.eot_id).to(torch.float32), dim=-1)   # first EOT, as the encoder
        order = torch.argsort(ends)
        parts = [l2_normalize(self.encoder.forward_prefix(ids[rows, :int(ends[rows].max()) + 1]))
                 for rows in order.chunk(min(groups, ids.shape[0]))]
        return torch.cat(parts)[torch.argsort(order)]

    def example_inputs(self, batch: int = 1) -> tuple[torch.Tensor, ...]:
        """Token rows shaped like a tokenizer's: [sot] words [eot] padding (rows differ in length)."""
        g = torch.Generator().manual_seed(0)
        hi = max(2, min(self.vocab_size, 49406) - 2)
        ids = torch.full((batch, self.context_length), self.pad_id, dtype=torch.int32)
        for b in range(batch):
            n = 1 + (3 + 2 * b) % max(1, self.context_length - 2)   # words in this row
            start = 0
            if self.sot_id is not None:
                ids[b, 0], start = self.sot_id, 1
            words = torch.randint(1, hi, (n,), generator=g, dtype=torch.int32)
            # only the closing token may be end-of-text, and no word may read as padding
            safe = next(i for i in range(1, hi) if i not in (self.eot_id, self.pad_id, self.sot_id))
            words[(words == self.eot_id) | (words == self.pad_id)] = safe
            ids[b, start:start + n] = words
            ids[b, min(start + n, self.context_length - 1)] = self.eot_id
        p = next(self.parameters(), None)
        return (ids.to(p.device if p is not None else "cpu").contiguous(),)


class ZeroShotHead(nn.Module):
    """``image tower -> logit_scale * emb @ labels.T``: ``float32[B,K]`` logits over fixed labels."""

    def __init__(self, image: ImageTower, label_embeddings: torch.Tensor, logit_scale: float,
                 labels: Sequence[str] | None = None):
        super().__init__()
        self.image = image
        self.register_buffer("label_embeddings", l2_normalize(label_embeddings.detach().float()).contiguous())
        self.logit_scale = float(logit_scale)
        self.labels = list(labels) if labels is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logit_scale * torch.matmul(self.image(x), self.label_embeddings.t())

    def example_inputs(self, batch: int = 1) -> tuple[torch.Tensor, ...]:
        return self.image.example_inputs(batch)


@contextlib.contextmanager
def _inference(*modules: nn.Module) -> Iterator[None]:
    """eval() + no_grad for the duration, then restore each module's training flag."""
    flags = [m.training for m in modules]
    try:
        for m in modules:
            m.eval()
        with torch.no_grad():
            yield
    finally:
        for m, f in zip(modules, flags):
            m.train(f)


@dataclass(eq=False)
class ClipModel:
    """Two towers, their tokenizer and facts. ``logit_scale`` is the multiplier (exp of the param)."""

    image: ImageTower
    text: TextTower
    tokenizer: Tokenizer
    facts: ModelFacts
    logit_scale: float
    uri: str
    config: dict[str, Any] = field(default_factory=dict)  # what save_model writes as the model config

    @property
    def device(self) -> torch.device:
        return self.image._device()

    def to(self, device: str | torch.device) -> "ClipModel":
        self.image.to(device)
        self.text.to(device)
        return self

    def eval(self) -> "ClipModel":
        self.image.eval()
        self.text.eval()
        return self

    def state_dict(self) -> dict[str, torch.Tensor]:
        sd = {f"image.{k}": v for k, v in self.image.state_dict().items()}
        sd.update({f"text.{k}": v for k, v in self.text.state_dict().items()})
        return sd

    def encode_image(self, images, batch_size: int = 64) -> torch.Tensor:
        """uint8 HxWx3 image(s) (numpy/torch, one, a list or an NHWC batch), or an already
        preprocessed ``float32[B,3,S,S]`` tensor -> L2-normalized ``float32[B,D]`` (no grad)."""
        if isinstance(images, torch.Tensor) and images.is_floating_point():
            if images.ndim != 4 or images.shape[1] != 3:
                raise InputError(f"float image tensor has shape {tuple(images.shape)}; expected [B,3,H,W]")
            pixels = images.float()
        else:
            f = self.facts
            pixels = preprocess_images(images, f.image_size, f.mean, f.std, f.resize_mode)
        with _inference(self.image):
            out = [self.image.features(pixels[i:i + batch_size].to(self.device).contiguous())
                   for i in range(0, len(pixels), batch_size)]
        return torch.cat(out)

    def encode_text(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """Captions -> L2-normalized ``float32[B,D]`` (no grad)."""
        ids = torch.from_numpy(self.tokenizer.encode(list(texts)))
        with _inference(self.text):
            out = [self.text(ids[i:i + batch_size].to(self.device)) for i in range(0, len(ids), batch_size)]
        return torch.cat(out)

    def label_embeddings(self, labels: Sequence[str], template: str | Sequence[str] = "a photo of a {}.") -> torch.Tensor:
        """``float32[K,D]``; several templates: per label the mean of its prompts' embeddings,
        L2-normalized again (CLIP's prompt ensembling)."""
        if not labels:
            raise InputError("zero-shot classification needs at least one label")
        if isinstance(template, str):
            return self.encode_text([template.format(lbl) for lbl in labels])
        templates = list(template)
        if not templates:
            raise InputError("zero-shot classification needs at least one prompt template")
        emb = self.encode_text([t.format(lbl) for lbl in labels for t in templates])
        return l2_normalize(emb.reshape(len(labels), len(templates), -1).mean(1))

    def zero_shot_logits(self, images, labels: Sequence[str],
                         template: str | Sequence[str] = "a photo of a {}.") -> torch.Tensor:
        """``float32[B,K]``: ``logit_scale * image_emb @ label_emb.T``."""
        return self.logit_scale * self.encode_image(images) @ self.label_embeddings(labels, template).t()

    def zero_shot_head(self, labels: Sequence[str], template: str | Sequence[str] = "a photo of a {}.") -> ZeroShotHead:
        return ZeroShotHead(self.image, self.label_embeddings(labels, template), self.logit_scale, labels)

    def tower(self, name: str, labels: Sequence[str] | None = None,
              templates: str | Sequence[str] = "a photo of a {}.") -> nn.Module:
        """The module for a tower name of ``edgeclip.config.names.TOWERS``."""
        if name == "image":
            return self.image
        if name == "text":
            return self.text
        if name == "zero-shot-head":
            if not labels:
                raise ConfigError("the zero-shot-head tower needs labels (the label set of the target)")
            return self.zero_shot_head(labels, templates)
        raise ConfigError(f"unknown tower {name!r}; known: {', '.join(TOWERS)}")
