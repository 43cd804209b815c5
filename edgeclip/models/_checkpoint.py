"""``file:PATH`` checkpoints: safetensors (or weights-only torch) + a model config JSON beside it.

``save_model`` writes ``NAME.safetensors`` and ``NAME.json`` (and ``NAME.tokenizer/`` for
Hugging Face tokenizers), each through a temporary file and ``os.replace``, so an interrupted
save never leaves a file that looks whole.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, InputError

__all__ = ["read_state_dict", "find_config", "load_checked", "sha256_file", "save_model", "load_file"]

_TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors only: safetensors, or ``torch.load(weights_only=True)`` (never unpickles code)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        elif path.suffix in _TORCH_SUFFIXES:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise InputError(f"{path}: unknown checkpoint suffix {path.suffix!r}; use .safetensors or "
                             f"one of {_TORCH_SUFFIXES}")
    except InputError:
        raise
    except pickle.UnpicklingError as e:  # weights_only refused an object: never retried unsafely
        raise InputError(f"{path}: refused: the checkpoint is a pickle holding {_refused_object(e)}, which "
                         "would run code when loaded; edgeclip reads tensors only (safetensors, or "
                         "torch.load with weights_only=True). Re-save the state_dict as .safetensors where "
                         "you trust the file, and pass that") from e
    except Exception as e:
        detail = " ".join(str(e).split())[:160]
        raise InputError(f"{path}: cannot read checkpoint ({type(e).__name__}: {detail}); the file is damaged "
                         "or truncated, or not a checkpoint: save it again with safetensors or "
                         "torch.save(state_dict)") from e
    for key in ("state_dict", "model"):  # common training-checkpoint wrappers
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise InputError(f"{path}: expected a dict of tensors (a state_dict)")
    if sd and all(k.startswith("module.") for k in sd):  # saved from a DDP-wrapped model
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _refused_object(err: BaseException) -> str:
    """What weights_only refused, from torch's message ('a reference to posix.system'), else a generic phrase."""
    m = re.search(r"GLOBAL ([\w.]+)", str(err))
    return f"a reference to {m.group(1)}" if m else "Python objects besides tensors"


def find_config(path: Path) -> Path:
    for cand in (path.with_suffix(".json"), path.parent / "config.json"):
        if cand.is_file():
            return cand
    raise InputError(f"{path}: no model config found; write {path.with_suffix('.json').name} or config.json "
                     'beside it, e.g. {"arch": "builtin:tiny-vit"} or {"arch": "openclip:ViT-B-32"}')


def load_checked(module: nn.Module, sd: dict[str, torch.Tensor], where: str, prefix: str = "") -> None:
    """load_state_dict that names the first key whose shape or presence differs from the config."""
    own = {k: v for k, v in module.state_dict().items() if k.startswith(prefix)}
    for key, want in own.items():
        if key in sd and tuple(sd[key].shape) != tuple(want.shape):
            raise InputError(f"{where}: {key} has shape {tuple(sd[key].shape)} in the checkpoint but "
                             f"{tuple(want.shape)} in the model config; the config does not describe this checkpoint")
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k.startswith(prefix) and k not in own]
    if missing or unexpected:
        raise InputError(f"{where}: checkpoint does not match the model config: "
                         f"{len(missing)} missing keys (first: {missing[:3]}), "
                         f"{len(unexpected)} unexpected keys (first: {unexpected[:3]})")
    with torch.no_grad():
        for key, want in own.items():
            want.copy_(sd[key].to(want.dtype))


def _replace_into(tmp: Path, dst: Path) -> None:
    if dst.is_dir():
        shutil.rmtree(dst)
    os.replace(tmp, dst)


def save_model(model, path: str | Path) -> Path:
    """Write ``model`` (a ``ClipModel``) as ``PATH.safetensors`` + ``PATH.json``; returns the checkpoint."""
    from safetensors.torch import save_file

    p = Path(path)
    if p.suffix != ".safetensors":
        p = p.with_name(p.name + ".safetensors")
    p.parent.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {k: v for k, v in model.config.items() if k != "weights"}
    config["format"] = "edgeclip.model/1"
    config["tokenizer"] = {"kind": model.tokenizer.kind, "context_length": model.tokenizer.context_length}
    if model.tokenizer.kind != "openclip-bpe":  # the BPE ships with open_clip; others travel along
        tok_dir = p.with_name(p.stem + ".tokenizer")
        tmp_dir = tok_dir.with_name(tok_dir.name + ".tmp")
        shutil.rmtree(tmp_dir, ignore_errors=True)
        model.tokenizer.export(tmp_dir)
        _replace_into(tmp_dir, tok_dir)
        config["tokenizer"]["path"] = tok_dir.name
    config["logit_scale"] = model.logit_scale
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    tmp = p.with_name(p.name + ".tmp")
    # one metadata entry only: safetensors writes its metadata map in hash order, which differs from
    # process to process, so two entries made identical builds differ byte-wise (the arch is in NAME.json)
    save_file(tensors, str(tmp), metadata={"format": "edgeclip.model/1"})
    os.replace(tmp, p)
    cfg_path, cfg_tmp = p.with_suffix(".json"), p.with_suffix(".json.tmp")
    cfg_tmp.write_text(json.dumps(config, indent=2))
    os.replace(cfg_tmp, cfg_path)
    return p


def _is_edgeclip(sd: dict[str, torch.Tensor]) -> bool:
    return bool(sd) and all(k.startswith(("image.", "text.")) for k in sd)


def load_file(path_str: str):
    """``file:PATH``: rebuild the architecture from the config beside PATH, then load the weights."""
    from ._build import assemble, with_weights
    from .tokenizers import load_tokenizer

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
    weights = f"file:sha256:{sha256_file(path)}"
    uri, where = f"file:{path}", str(path)
    if arch.startswith("builtin:"):  # partial specs are overrides of the named builtin
        from .zoo import builtin_config

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
