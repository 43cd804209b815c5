"""The model zoo: ``load_model(uri)`` for every teacher/student source, and the builtin architectures.

URI schemes (``edgeclip.config.names.TEACHER_SCHEMES``):

- ``openclip:NAME[/TAG]``  open_clip model; TAG a pretrained tag or a local weights file
  (``openclip:ViT-B-32//data/open_clip_pytorch_model.bin``); no TAG = random init.
- ``hf:ID``                ``transformers.CLIPModel.from_pretrained(ID)``; ID may be a local folder.
- ``file:PATH``            ``.safetensors`` / ``.pt`` + ``PATH.json`` or ``config.json`` beside it.
- ``builtin:NAME``         an architecture of ``builtins.py``, random-init from a seed (``MODELS``).
"""
from __future__ import annotations

from ..config.names import parse_model_uri
from ._checkpoint import save_model
from ._file import load_file
from .builtins import CLIP_MEAN, CLIP_STD, MODELS, build_builtin, builtin_config
from .towers import ClipModel

__all__ = ["MODELS", "load_model", "save_model", "list_models", "builtin_config", "build_builtin",
           "CLIP_MEAN", "CLIP_STD"]


def load_model(uri: str, *, device: str = "cpu") -> ClipModel:
    """Load a CLIP model from a URI into export-ready towers (eval mode) on ``device``."""
    scheme, rest = parse_model_uri(uri)
    if scheme == "builtin":
        model = build_builtin(rest)
    elif scheme == "file":
        model = load_file(rest)
    elif scheme == "hf":
        from ._hf import load_hf

        model = load_hf(rest)
    else:
        from ._openclip import load_openclip

        name, tag = rest, None
        if not rest.startswith(("hf-hub:", "local-dir:")) and "/" in rest:
            name, tag = rest.split("/", 1)
        model = load_openclip(name, tag or None)
    return model.to(device)


def list_models(include_openclip: bool = False) -> list[dict[str, str]]:
    """``[{"uri", "description"}]`` for ``edgeclip list models``: builtins, optionally open_clip's."""
    rows = [{"uri": f"builtin:{n}", "description": (fn.__doc__ or "").strip().splitlines()[0]}
            for n, fn in MODELS.items()]
    if include_openclip:
        import open_clip

        for name, tag in open_clip.list_pretrained():
            rows.append({"uri": f"openclip:{name}/{tag}", "description": "open_clip pretrained (download)"})
    return rows
