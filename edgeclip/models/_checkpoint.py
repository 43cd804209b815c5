"""``file:PATH`` checkpoints: safetensors (or weights-only torch) + a model config JSON beside it.

``save_model`` writes ``NAME.safetensors`` and ``NAME.json`` (and ``NAME.tokenizer/`` for
Hugging Face tokenizers), each through a temporary file and ``os.replace``, so an interrupted
save never leaves a file that looks whole.
"""
from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._io import atomic_target, write_text_atomic
from ..errors import InputError

__all__ = ["read_state_dict", "find_config", "load_checked", "save_model"]

_TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


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
        with atomic_target(tok_dir) as tmp_dir:
            model.tokenizer.export(tmp_dir)
        config["tokenizer"]["path"] = tok_dir.name
    config["logit_scale"] = model.logit_scale
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    # one metadata entry only: safetensors writes its metadata map in hash order, which differs from
    # process to process, so two entries made identical builds differ byte-wise (the arch is in NAME.json)
    with atomic_target(p) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "edgeclip.model/1"})
    write_text_atomic(p.with_suffix(".json"), json.dumps(config, indent=2))
    return p
