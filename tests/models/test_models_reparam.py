"""Reparameterization folds multi-branch blocks without changing outputs."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from edgeclip.models import build_builtin, count_branches, reparameterize


def _close(after: torch.Tensor, before: torch.Tensor) -> None:
    scale = before.abs().max().item()
    torch.testing.assert_close(after, before, atol=1e-5 * max(scale, 1.0), rtol=1e-5)


def test_tiny_mci_folds_to_single_convs(photos):
    m = build_builtin("tiny-mci", seed=2)
    encoder = m.image.encoder
    pixels = m.image.example_inputs(2)[0]
    with torch.no_grad():
        raw_before = encoder(pixels)
        emb_before = m.encode_image(photos)
    modules_before, branches_before = len(list(encoder.modules())), count_branches(encoder)
    assert branches_before > 20
    assert reparameterize(m) is m
    with torch.no_grad():
        _close(encoder(pixels), raw_before)                  # unnormalized features, before L2 norm
        _close(m.encode_image(photos), emb_before)           # real photos
    assert count_branches(encoder) == 0
    assert len(list(encoder.modules())) < modules_before // 2
    assert not any(isinstance(mod, nn.BatchNorm2d) for mod in encoder.modules())
    reparameterize(m)                                        # idempotent
    with torch.no_grad():
        _close(encoder(pixels), raw_before)
    ep = torch.export.export(m.image, (pixels,), strict=False)
    assert not any("batch_norm" in str(n.target) for n in ep.graph.nodes)


def test_not_inplace_leaves_the_original():
    m = build_builtin("tiny-mci")
    folded = reparameterize(m.image, inplace=False)
    assert count_branches(m.image) > 0 and count_branches(folded) == 0


@pytest.mark.slow
def test_timm_mobileclip_trunk_folds():
    """timm's fastvit_mci0 is open_clip's MobileCLIP2-S0 image trunk."""
    import timm

    torch.manual_seed(0)
    trunk = timm.create_model("fastvit_mci0", num_classes=32).eval()
    for mod in trunk.modules():                              # trained-like BN stats, not identity
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.normal_(std=0.1)
            mod.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(mod.weight, 0.5, 1.5)
            nn.init.normal_(mod.bias, std=0.1)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = trunk(x)
    modules_before, branches_before = len(list(trunk.modules())), count_branches(trunk)
    reparameterize(trunk)
    with torch.no_grad():
        _close(trunk(x), before)
    assert count_branches(trunk) < branches_before
    assert len(list(trunk.modules())) < modules_before
