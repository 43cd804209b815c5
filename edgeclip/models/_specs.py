"""Architecture specs of the encoders: small frozen dataclasses that round-trip through JSON.

A model config file (``file:`` checkpoints) stores one spec per tower, so a checkpoint can be
rebuilt without the library it came from. ``kind`` selects the encoder class.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import ConfigError

__all__ = ["ViTSpec", "TextSpec", "MCiSpec", "NativeSpec", "IMAGE_SPECS", "TEXT_SPECS", "spec_from_dict", "spec_to_dict"]


@dataclass(frozen=True)
class ViTSpec:
    """CLIP ViT image encoder: patchify, class token, pre-norm blocks, ln_post, projection."""

    image_size: int = 64
    patch_size: int = 8
    width: int = 64
    layers: int = 3
    heads: int = 4
    mlp_ratio: float = 4.0
    embed_dim: int = 64
    act: str = "gelu"
    ln_eps: float = 1e-5
    ln_pre: bool = True
    layer_scale: bool = False
    kind: str = "vit"


@dataclass(frozen=True)
class TextSpec:
    """CLIP text transformer: token + position embedding, blocks, ln_final, EOT pool, projection."""

    context_length: int = 32
    vocab_size: int = 49408
    width: int = 64
    layers: int = 2
    heads: int = 4
    mlp_ratio: float = 4.0
    embed_dim: int = 64
    act: str = "gelu"
    ln_eps: float = 1e-5
    causal: bool = True
    eot_id: int = 49407       # pooled position: first occurrence of this id
    sot_id: int | None = 49406  # only used to build example inputs
    pad_id: int = 0
    proj_bias: bool = False
    layer_scale: bool = False
    kind: str = "transformer"


@dataclass(frozen=True)
class MCiSpec:
    """MobileCLIP-style conv image encoder (MobileOne stem, RepMixer stages, conv head)."""

    image_size: int = 64
    widths: tuple[int, ...] = (32, 64, 128)
    depths: tuple[int, ...] = (1, 1, 2)
    mlp_ratio: float = 3.0
    branches: int = 2          # parallel kxk conv branches per MobileOne block (folded by reparam)
    embed_dim: int = 64
    reparameterized: bool = False
    kind: str = "mci"


@dataclass(frozen=True)
class NativeSpec:
    """An encoder kept as the source library's own module (e.g. open_clip's timm MobileCLIP trunk).

    Rebuilt by creating ``model`` with open_clip (random init) and taking ``tower``.
    """

    model: str
    tower: str = "visual"
    image_size: int = 224
    embed_dim: int = 512
    reparameterized: bool = False
    kind: str = "openclip-native"


IMAGE_SPECS = {"vit": ViTSpec, "mci": MCiSpec, "openclip-native": NativeSpec}
TEXT_SPECS = {"transformer": TextSpec}


def spec_from_dict(d: dict[str, Any], table: dict[str, type], what: str):
    """Build a spec from a dict; an unknown kind or key is a ConfigError listing the valid ones."""
    kind = d.get("kind")
    if kind not in table:
        raise ConfigError(f"{what} kind {kind!r} is unknown; known: {', '.join(sorted(table))}")
    cls = table[kind]
    valid = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - valid)
    if unknown:
        raise ConfigError(f"{what} ({kind}) has unknown keys {unknown}; valid keys: {sorted(valid)}")
    vals = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    try:
        return cls(**vals)
    except TypeError as e:
        raise ConfigError(f"{what} ({kind}) is incomplete: {e}") from e


def spec_to_dict(spec) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(spec).items()}
