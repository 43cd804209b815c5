"""``file:PATH`` checkpoints: the architecture from the config beside PATH, then the weights.

A config names full tower specs (written by ``save_model``), ``builtin:NAME`` with overrides, or
``openclip:NAME`` for an open_clip-format state dict.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .._io import sha256_path
from ..errors import ConfigError, InputError
from ._build import assemble, with_weights
from ._checkpoint import find_config, load_checked, read_state_dict
from .builtins import builtin_config
from .tokenizers import load_tokenizer

__all__ = ["load_file"]


def _is_edgeclip(sd: dict[str, torch.Tensor]) -> bool:
    return bool(sd) and all(k.startswith(("image.", "text.")) for k in sd)


def load_file(path_str: str):
    """``file:PATH``: rebuild the architecture from the config beside PATH, then load the weights."""
    try:
        path = Path(path_str).expanduser()
        is_file = path.is_file()
    except (OSError, ValueError, RuntimeError) as e:  # a NUL byte, ~user that does not exist
        raise InputError(f"checkpoint path {path_str!r} is not usable ({e}); file: takes a .safetensors or .pt path") from e
    if not is_file:
        raise InputError(f"checkpoint {path} does not exist; file: takes a .safetensors or .pt path")
    cfg_path = find_config(path)
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{cfg_path}: not valid JSON ({e}); write the model config as UTF-8 JSON, e.g. "
                         '{"arch": "builtin:tiny-vit"}') from e
    if not isinstance(cfg, dict):
        raise InputError(f"{cfg_path}: the model config must be a JSON object, found {type(cfg).__name__}; "
                         'e.g. {"arch": "builtin:tiny-vit"}')
    arch = str(cfg.get("arch", ""))
    sd = read_state_dict(path)
    weights = f"file:sha256:{sha256_path(path)}"
    uri, where = f"file:{path}", str(path)
    if arch.startswith("builtin:"):  # partial specs are overrides of the named builtin
        cfg = builtin_config(arch[len("builtin:"):], **{k: v for k, v in cfg.items() if k != "arch"})
    elif "image" not in cfg:
        if arch.startswith("openclip:") and not _is_edgeclip(sd):
            return _load_openclip_native(arch[len("openclip:"):], sd, uri, where, weights)
        raise ConfigError(f"{cfg_path}: arch {arch!r} needs full tower specs (write the model with save_model), "
                          "or must be builtin:NAME, or openclip:NAME with an open_clip state dict")
    tok = None
    tcfg = cfg.get("tokenizer") or {}
    if tcfg.get("path"):
        tok = load_tokenizer(path.parent / tcfg["path"])
    model = assemble(cfg, uri=uri, weights=weights, tokenizer=tok, init=False)
    load_checked(model.image, {k[6:]: v for k, v in sd.items() if k.startswith("image.")}, where + " [image]")
    load_checked(model.text, {k[5:]: v for k, v in sd.items() if k.startswith("text.")}, where + " [text]")
    return with_weights(model, weights)


def _load_openclip_native(name: str, sd: dict[str, torch.Tensor], uri: str, where: str, weights: str):
    """An open_clip-format state dict (``visual.*``, ``transformer.*``) with ``{"arch": "openclip:NAME"}``."""
    import open_clip

    from ._openclip import from_openclip, _tokenizer_for

    try:
        model = open_clip.create_model(name, pretrained=None)
    except RuntimeError as e:
        raise ConfigError(f"{where}: open_clip has no model {name!r} ({e})") from e
    load_checked(model, sd, where)
    tok = _tokenizer_for(name, int(model.context_length))
    return from_openclip(model, tokenizer=tok, uri=uri, weights=weights, name=name)
