"""Structural reparameterization: fold multi-branch training blocks into single convs for export.

Works on this package's ``tiny-mci`` blocks and on timm / open_clip MobileCLIP (``fastvit``)
modules alike, the way timm's ``reparameterize_model`` does: walk the module tree top-down and,
for each child that offers it, replace it with ``child.fuse()`` or call ``child.reparameterize()``
/ ``child.switch_to_deploy()``; children of a module that reparameterized itself are not visited
again. BatchNorm statistics are folded, so this runs in eval mode.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["reparameterize", "count_branches"]


def _fold(module: nn.Module) -> None:
    for name, child in module.named_children():
        if hasattr(child, "fuse") and callable(child.fuse):
            setattr(module, name, child.fuse())
        elif hasattr(child, "reparameterize") and callable(child.reparameterize):
            child.reparameterize()
        elif hasattr(child, "switch_to_deploy") and callable(child.switch_to_deploy):
            child.switch_to_deploy()
        else:
            _fold(child)


@torch.no_grad()
def reparameterize(model, *, inplace: bool = True):
    """Fold reparameterizable branches of ``model`` (an ``nn.Module`` or a ``ClipModel``).

    Returns the (same, unless ``inplace=False``) model in eval mode. Outputs are unchanged up to
    float rounding. For a ``ClipModel`` the saved config is updated so ``save_model`` /
    ``load_model("file:...")`` rebuild the folded structure.
    """
    from .towers import ClipModel

    if isinstance(model, ClipModel):
        if not inplace:
            model = copy.deepcopy(model)
        for tower in (model.image, model.text):
            reparameterize(tower, inplace=True)
        if "reparameterized" in model.config.get("image", {}):
            model.config["image"]["reparameterized"] = True
        return model
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    if hasattr(model, "reparameterize") and callable(model.reparameterize):
        model.reparameterize()
    else:
        _fold(model)
    return model


def count_branches(model: nn.Module) -> int:
    """BatchNorm layers left: each training-time conv branch and identity branch carries one."""
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
