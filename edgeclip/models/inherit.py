"""TinyCLIP manual weight inheritance: a smaller student of the same family takes its weights
from the teacher instead of a random init.

The rule (microsoft/Cream ``TinyCLIP/src/open_clip/weight_inherit.py``):

- depth: student layer ``i`` takes teacher layer ``i * step`` with ``step = T_layers // S_layers``
  (layers ``0, step, 2*step, ...``);
- width: every other tensor keeps the first N entries of every dimension (residual width, MLP
  hidden, projection, position table, token table);
- heads: the packed qkv weight is viewed as ``(3, heads, head_dim, in)`` and the first heads kept,
  so the head dim never changes. edgeclip keeps q, k and v as three Linears whose rows are the
  three slices of open_clip's packed ``in_proj`` (``from_openclip`` splits them so), which makes
  "first heads" the same as "first rows" of each: ``packed_qkv_rows`` states the original rule
  and the tests check the two agree on a real open_clip block.

Only edgeclip ``ViT`` and ``TextTransformer`` encoders inherit (open_clip and Hugging Face CLIP
towers become those on load). ``student_config`` builds the student's config from the teacher's
and the recipe's shape (``layers``, ``width``, ``heads``, ``mlp_ratio``, ``embed_dim`` per tower).
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..config.names import STUDENT_SHAPE_KEYS
from ._specs import TextSpec, ViTSpec

__all__ = ["depth_indices", "packed_qkv_rows", "student_config", "inherit_encoder", "inherit_model",
           "SHAPE_KEYS"]

SHAPE_KEYS = STUDENT_SHAPE_KEYS
_BLOCK = "blocks."


def depth_indices(teacher_layers: int, student_layers: int) -> list[int]:
    """Teacher layers the student's layers inherit from: ``0, step, 2*step, ...``."""
    if not 1 <= student_layers <= teacher_layers:
        raise ConfigError(f"student layers must be in [1, {teacher_layers}] (the teacher's depth), "
                          f"found {student_layers}")
    step = teacher_layers // student_layers
    return list(range(0, student_layers * step, step))


def packed_qkv_rows(w: torch.Tensor, heads: int, head_dim: int, keep_heads: int, keep_in: int) -> torch.Tensor:
    """TinyCLIP's rule on a packed ``[3*H*hd, in]`` qkv weight (or ``[3*H*hd]`` bias): the first
    ``keep_heads`` heads of each of q, k, v and the first ``keep_in`` input columns."""
    if w.ndim == 1:
        return w.reshape(3, heads, head_dim)[:, :keep_heads].reshape(-1)
    return w.reshape(3, heads, head_dim, w.shape[1])[:, :keep_heads, :, :keep_in].reshape(
        3 * keep_heads * head_dim, keep_in)


def _first_n(t: torch.Tensor, shape: torch.Size, name: str) -> torch.Tensor:
    if t.ndim != len(shape) or any(s > d for s, d in zip(shape, t.shape)):
        raise ConfigError(f"cannot inherit {name}: student shape {tuple(shape)} does not fit in the "
                          f"teacher's {tuple(t.shape)}; a student must be no larger than its teacher")
    return t[tuple(slice(0, s) for s in shape)].clone()


def _spec_of(encoder: nn.Module):
    spec = getattr(encoder, "spec", None)
    if not isinstance(spec, (ViTSpec, TextSpec)):
        kind = getattr(spec, "kind", type(encoder).__name__)
        raise ConfigError(f"weight inheritance covers ViT and transformer text towers, not {kind!r}; "
                          "use inherit: none for this tower (random init) or a ViT teacher")
    if _pruned(spec):
        raise ConfigError("manual inheritance cannot reshape a tower pruned by automatic inheritance "
                          "(its layers differ in heads and MLP size); follow an auto stage with another "
                          "auto stage, or give this stage no image/text shape")
    return spec


def _pruned(spec) -> bool:
    return any(getattr(spec, k, None) is not None for k in ("head_dim", "layer_heads", "layer_mlp"))


def inherit_encoder(teacher: nn.Module, student: nn.Module) -> dict[str, Any]:
    """Copy the teacher encoder's weights into ``student`` (same class, no larger in any
    dimension, same head dim) in place. Returns what was taken: ``{"layers": [...], ...}``."""
    ts, ss = _spec_of(teacher), _spec_of(student)
    if type(ts) is not type(ss):
        raise ConfigError(f"student tower kind {ss.kind!r} differs from the teacher's {ts.kind!r}")
    t_hd, s_hd = ts.width // ts.heads, ss.width // ss.heads
    if t_hd != s_hd:
        raise ConfigError(f"student head dim {s_hd} (width {ss.width} / heads {ss.heads}) must equal the "
                          f"teacher's {t_hd}: inheritance keeps whole heads; set heads: {ss.width // t_hd}")
    idx = depth_indices(ts.layers, ss.layers)
    tsd = teacher.state_dict()
    new = {}
    for name, param in student.state_dict().items():
        src = name
        if name.startswith(_BLOCK):
            i, rest = name[len(_BLOCK):].split(".", 1)
            src = f"{_BLOCK}{idx[int(i)]}.{rest}"
        if src not in tsd:
            raise ConfigError(f"cannot inherit {name}: the teacher has no {src}")
        new[name] = _first_n(tsd[src], param.shape, name)
    student.load_state_dict(new, strict=True)
    return {"layers": idx, "heads": ss.heads, "width": ss.width}


def student_config(teacher_config: dict[str, Any], image: dict[str, Any] | None = None,
                   text: dict[str, Any] | None = None, arch: str | None = None) -> dict[str, Any]:
    """The teacher's model config with the towers reshaped: ``image``/``text`` hold any of
    ``SHAPE_KEYS``. ``heads`` defaults to ``width / teacher head dim``; ``embed_dim`` set on one
    tower applies to both (they share the embedding space)."""
    cfg = copy.deepcopy(teacher_config)
    shapes = {"image": dict(image or {}), "text": dict(text or {})}
    embed = {shapes[t].get("embed_dim") for t in shapes} - {None}
    if len(embed) > 1:
        raise ConfigError(f"image and text embed_dim differ ({sorted(embed)}); both towers share one space")
    for tower, shape in shapes.items():
        bad = sorted(set(shape) - set(SHAPE_KEYS))
        if bad:
            raise ConfigError(f"student {tower} shape has unknown keys {bad}; valid keys: {list(SHAPE_KEYS)}")
        spec = cfg[tower]
        if spec.get("kind") not in ("vit", "transformer"):
            if shape:
                raise ConfigError(f"student {tower} shape: the teacher's {tower} tower ({spec.get('kind')}) "
                                  "cannot be reshaped; only ViT and transformer towers can")
            continue
        if shape and any(spec.get(k) is not None for k in ("head_dim", "layer_heads", "layer_mlp")):
            raise ConfigError(f"student {tower} shape: the tower was pruned by automatic inheritance and "
                              "cannot be reshaped by hand; use another auto stage")
        head_dim = spec["width"] // spec["heads"]
        for k, v in shape.items():
            spec[k] = v
        if "width" in shape and "heads" not in shape:
            if shape["width"] % head_dim:
                raise ConfigError(f"student {tower} width {shape['width']} is not a multiple of the "
                                  f"teacher's head dim {head_dim}")
            spec["heads"] = shape["width"] // head_dim
    if embed:
        cfg["image"]["embed_dim"] = cfg["text"]["embed_dim"] = embed.pop()
    if arch:
        cfg["arch"] = arch
    return cfg


def inherit_model(teacher, image: dict[str, Any] | None = None, text: dict[str, Any] | None = None,
                  towers: tuple[str, ...] = ("image", "text"), seed: int = 0, arch: str | None = None):
    """A student ``ClipModel`` shaped by ``image``/``text`` whose ``towers`` inherit the teacher's
    weights (the others keep a seeded random init). Returns ``(student, info)``."""
    from ._build import assemble

    cfg = student_config(teacher.config, image, text, arch=arch or f"inherited-from:{teacher.config.get('arch', 'model')}")
    cfg.pop("weights", None)
    student = assemble(cfg, uri=f"{teacher.uri}:student", seed=seed, tokenizer=teacher.tokenizer)
    info: dict[str, Any] = {}
    shapes = {"image": image, "text": text}
    with torch.no_grad():
        for tower in towers:
            src, dst = getattr(teacher, tower).encoder, getattr(student, tower).encoder
            if not shapes[tower]:  # same shape (also a pruned one): the weights as they are
                dst.load_state_dict(src.state_dict(), strict=True)
                info[tower] = {"copied": True}
            else:
                info[tower] = inherit_encoder(src, dst)
    student.logit_scale = teacher.logit_scale
    return student, info
