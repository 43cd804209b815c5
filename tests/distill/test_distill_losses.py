"""clip_loss against hand-computed 2x2 cases and a naive per-row loop, forward and backward."""
from __future__ import annotations

import math

import pytest
import torch

from edgeclip.distill.losses import clip_logits, clip_loss, gather_features


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def naive_clip_loss(img: torch.Tensor, txt: torch.Tensor, scale) -> torch.Tensor:
    """Row by row, straight from the InfoNCE definition (no cross_entropy, no matrix ops)."""
    n = img.shape[0]
    i2t, t2i = 0.0, 0.0
    for i in range(n):
        sims_i = torch.stack([scale * torch.dot(img[i], txt[j]) for j in range(n)])
        i2t = i2t - (sims_i[i] - torch.log(torch.exp(sims_i).sum()))
        sims_t = torch.stack([scale * torch.dot(txt[i], img[j]) for j in range(n)])
        t2i = t2i - (sims_t[i] - torch.log(torch.exp(sims_t).sum()))
    return 0.5 * (i2t / n + t2i / n)


def test_matched_pairs_2x2():
    eye = torch.eye(2, dtype=torch.float64)
    for s in (1.0, 10.0):
        # logits s*I: each row -log(e^s / (e^s + e^0)) = log(1 + e^-s), both directions alike
        assert clip_loss(eye, eye, s).item() == pytest.approx(math.log1p(math.exp(-s)), rel=1e-6)


def test_swapped_pairs_2x2():
    eye, swap = torch.eye(2), torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    # positives score 0, negatives s: log(1 + e^s) per row
    assert clip_loss(eye, swap, 3.0).item() == pytest.approx(math.log1p(math.exp(3.0)), rel=1e-6)


def test_asymmetric_2x2_by_hand():
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    txt = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    # logits [[1, .6], [0, .8]]; i2t uses rows, t2i columns
    lse = lambda a, b: math.log(math.exp(a) + math.exp(b))  # noqa: E731
    i2t = ((lse(1, 0.6) - 1) + (lse(0, 0.8) - 0.8)) / 2
    t2i = ((lse(1, 0) - 1) + (lse(0.6, 0.8) - 0.8)) / 2
    assert clip_loss(img, txt, 1.0).item() == pytest.approx(0.5 * (i2t + t2i), rel=1e-6)
    # the direction matters: swapping the towers transposes the logits, same symmetric loss
    assert clip_loss(txt, img, 1.0).item() == pytest.approx(0.5 * (i2t + t2i), rel=1e-6)


@pytest.mark.parametrize("n,d", [(2, 3), (5, 8), (9, 4)])
def test_matches_naive_loop_forward_and_backward(n, d):
    g = torch.Generator().manual_seed(n * 100 + d)
    img = _unit(torch.randn(n, d, generator=g, dtype=torch.float64)).requires_grad_()
    txt = _unit(torch.randn(n, d, generator=g, dtype=torch.float64)).requires_grad_()
    log_s = torch.tensor(math.log(7.5), dtype=torch.float64, requires_grad=True)

    fast = clip_loss(img, txt, log_s.exp())
    slow = naive_clip_loss(img, txt, log_s.exp())
    assert fast.item() == pytest.approx(slow.item(), rel=1e-10)

    g_fast = torch.autograd.grad(fast, (img, txt, log_s))
    g_slow = torch.autograd.grad(slow, (img, txt, log_s))
    for a, b in zip(g_fast, g_slow):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)
    assert g_fast[0].abs().sum() > 0  # a zero gradient would make the comparison vacuous


def test_gradcheck_against_finite_differences():
    g = torch.Generator().manual_seed(3)
    img = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    txt = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    scale = torch.tensor(2.5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(clip_loss, (img, txt, scale))


def test_loss_is_float32_even_for_bf16_features():
    g = torch.Generator().manual_seed(0)
    img, txt = _unit(torch.randn(6, 16, generator=g)), _unit(torch.randn(6, 16, generator=g))
    ref = clip_loss(img, txt, 20.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = clip_logits(img, txt, 20.0)
        out = clip_loss(img.bfloat16(), txt.bfloat16(), 20.0)
    assert logits.dtype == torch.float32
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(ref.item(), rel=2e-2)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same shape"):
        clip_loss(torch.zeros(3, 4), torch.zeros(2, 4), 1.0)


def test_gather_is_identity_without_process_group():
    x = torch.randn(3, 4, requires_grad=True)
    assert gather_features(x) is x
