"""Architecture specs of the encoders: small frozen dataclasses that round-trip through JSON.

A model config file (``file:`` checkpoints) stores one spec per tower, so a checkpoint can be
rebuilt without the library it came from. ``kind`` selects the encoder class.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import ConfigError

__all__ = ["ViTSpec", "TextSpec", "BertTextSpec", "MCiSpec", "FactoredSpec", "NativeSpec", "IMAGE_SPECS", "TEXT_SPECS",
           "spec_from_dict", "spec_to_dict", "block_dims"]


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
    # Structured pruning (TinyCLIP auto inheritance) leaves per-layer shapes; None: the uniform ones.
    head_dim: int | None = None                 # None: width // heads
    layer_heads: tuple[int, ...] | None = None  # heads of each block; None: ``heads`` everywhere
    layer_mlp: tuple[int, ...] | None = None    # MLP hidden size of each block; None: width * mlp_ratio
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
    head_dim: int | None = None                 # as ViTSpec: set by structured pruning
    layer_heads: tuple[int, ...] | None = None
    layer_mlp: tuple[int, ...] | None = None
    kind: str = "transformer"


@dataclass(frozen=True)
class BertTextSpec:
    """BERT / XLM-RoBERTa text encoder (Hugging Face ``AltCLIPModel``, ``ChineseCLIPModel``):
    token + position embedding, embedding LayerNorm, post-norm blocks that ignore padding, the
    first token pooled, then AltCLIP's ``pre_LN`` + ``transformation`` where present, projection."""

    context_length: int = 77
    vocab_size: int = 250002
    width: int = 64
    layers: int = 2
    heads: int = 4
    mlp_ratio: float = 4.0
    embed_dim: int = 64
    act: str = "gelu"
    ln_eps: float = 1e-5
    pool_ln: bool = False       # AltCLIP: LayerNorm on the last hidden states (pre_LN)
    pool_dim: int | None = None  # AltCLIP: linear width -> pool_dim (transformation) before proj
    eot_id: int = 2           # </s> / [SEP]; the tower pools position 0, this only frames inputs
    sot_id: int | None = 0    # <s> / [CLS]
    pad_id: int = 1           # masked out of attention
    kind: str = "bert"


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
class FactoredSpec:
    """Factored image encoder: a hue-blind outline CNN and a bag of colours writing their own slices
    of the embedding, and optionally a small ViT on the RGB image writing a context slice
    (``shape_dim`` + ``colour_dim`` + ``context_dim`` = ``embed_dim``)."""

    image_size: int = 64
    outline_widths: tuple[int, ...] = (16, 32, 64, 128)
    colour_widths: tuple[int, ...] = (32, 64)
    colour_stride: int = 2     # the bag sees every 2nd pixel: as many colours, a quarter of the work
    shape_dim: int = 64        # what outlines are there: the outline map's global max
    outline_pool: str = "max"  # "max+mean": the global mean beside it (how much outline: count, size)
    colour_dim: int = 64       # which colours are there: the bag's global max
    context_dim: int = 0       # the rest (where, how many, next to what): a ViT's; 0: no ViT
    context_patch: int = 8
    context_width: int = 128
    context_layers: int = 4
    context_heads: int = 4
    embed_dim: int = 128
    kind: str = "factored"


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


IMAGE_SPECS = {"vit": ViTSpec, "mci": MCiSpec, "factored": FactoredSpec, "openclip-native": NativeSpec}
TEXT_SPECS = {"transformer": TextSpec, "bert": BertTextSpec}


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
    # optional fields left at None are omitted, so unpruned specs serialize as before
    optional = {f.name for f in fields(spec) if f.default is None}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(spec).items()
            if not (v is None and k in optional)}


def block_dims(spec: ViTSpec | TextSpec) -> list[tuple[int, int, int]]:
    """``(heads, head_dim, mlp_hidden)`` of each block of a ViT or text transformer spec."""
    head_dim = spec.head_dim
    if head_dim is None:
        if spec.width % spec.heads:
            raise ConfigError(f"width {spec.width} is not divisible by heads {spec.heads}")
        head_dim = spec.width // spec.heads
    heads = spec.layer_heads if spec.layer_heads is not None else (spec.heads,) * spec.layers
    mlp = spec.layer_mlp if spec.layer_mlp is not None else (int(round(spec.width * spec.mlp_ratio)),) * spec.layers
    if len(heads) != spec.layers or len(mlp) != spec.layers:
        raise ConfigError(f"layer_heads ({len(heads)}) and layer_mlp ({len(mlp)}) must have one entry "
                          f"per layer ({spec.layers})")
    if min(heads, default=1) < 1 or min(mlp, default=1) < 1 or head_dim < 1:
        raise ConfigError(f"every block needs >= 1 head, head dim and MLP unit; found heads {heads}, "
                          f"head_dim {head_dim}, mlp {mlp}")
    return [(int(h), int(head_dim), int(m)) for h, m in zip(heads, mlp)]
