"""open_clip image towers kept as open_clip builds them (``NativeSpec``: MobileCLIP's timm
FastViT, ...), made export-friendly; ``_build`` and ``_openclip`` both use them."""
from __future__ import annotations

from torch import nn

from ._specs import NativeSpec

__all__ = ["native_visual", "export_friendly"]


def export_friendly(module: nn.Module) -> nn.Module:
    for m in module.modules():  # timm attention: explicit matmuls instead of fused SDPA
        if hasattr(m, "fused_attn"):
            m.fused_attn = False
    return module


def native_visual(spec: NativeSpec) -> nn.Module:
    """Rebuild an open_clip image tower kept as-is (random init; weights loaded by the caller)."""
    import open_clip

    visual = open_clip.create_model(spec.model, pretrained=None).visual
    if spec.reparameterized:
        from .reparam import reparameterize

        reparameterize(visual)
    return export_friendly(visual.eval())
