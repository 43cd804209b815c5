"""TinyCLIP affinity mimicking against hand-computed 2x2 / 3x3 cases and a naive loop,
forward and backward; the alpha mix with the CLIP loss."""
from __future__ import annotations

import math

import pytest
import torch

from edgeclip.distill.losses import affinity_loss, clip_loss, tinyclip_loss


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def naive_affinity(img, txt, s, t_img, t_txt, ts) -> torch.Tensor:
    """Entry by entry from the definition: soft targets softmax(teacher row), student log-softmax."""
    n = img.shape[0]

    def one_direction(a, b, ta, tb):
        total = 0.0
        for i in range(n):
            row = torch.stack([s * torch.dot(a[i], b[j]) for j in range(n)])
            trow = torch.stack([ts * torch.dot(ta[i], tb[j]) for j in range(n)]).detach()
            p = torch.exp(trow) / torch.exp(trow).sum()
            logq = row - torch.log(torch.exp(row).sum())
            total = total - sum(p[j] * logq[j] for j in range(n))
        return total / n

    return 0.5 * (one_direction(img, txt, t_img, t_txt) + one_direction(txt, img, t_txt, t_img))


def test_2x2_by_hand():
    eye = torch.eye(2, dtype=torch.float64)
    s, ts = 3.0, 5.0
    a = math.exp(ts) / (math.exp(ts) + 1)  # teacher's probability of the matching pair
    want = a * math.log1p(math.exp(-s)) + (1 - a) * math.log1p(math.exp(s))
    assert affinity_loss(eye, eye, s, eye, eye, ts).item() == pytest.approx(want, rel=1e-9)


def test_3x3_uniform_teacher_by_hand():
    eye = torch.eye(3, dtype=torch.float64)
    same = torch.ones(3, 3, dtype=torch.float64) / math.sqrt(3)  # teacher sees no difference
    s = 2.0
    # soft targets 1/3 each: loss = logsumexp(row) - mean(row), rows [s, 0, 0] in both directions
    want = math.log(math.exp(s) + 2) - s / 3
    assert affinity_loss(eye, eye, s, same, same, 50.0).item() == pytest.approx(want, rel=1e-9)


def test_student_equal_to_teacher_is_the_minimum():
    g = torch.Generator().manual_seed(0)
    t_img, t_txt = _unit(torch.randn(6, 8, generator=g)), _unit(torch.randn(6, 8, generator=g))
    at_teacher = affinity_loss(t_img, t_txt, 50.0, t_img, t_txt, 50.0)
    other = affinity_loss(_unit(torch.randn(6, 8, generator=g)), _unit(torch.randn(6, 8, generator=g)),
                          50.0, t_img, t_txt, 50.0)
    assert at_teacher < other


@pytest.mark.parametrize("n,d,dt", [(2, 3, 5), (5, 8, 4), (7, 4, 16)])
def test_matches_naive_loop_forward_and_backward(n, d, dt):
    g = torch.Generator().manual_seed(n * 10 + d)
    img = _unit(torch.randn(n, d, generator=g, dtype=torch.float64)).requires_grad_()
    txt = _unit(torch.randn(n, d, generator=g, dtype=torch.float64)).requires_grad_()
    t_img = _unit(torch.randn(n, dt, generator=g, dtype=torch.float64)).requires_grad_()
    t_txt = _unit(torch.randn(n, dt, generator=g, dtype=torch.float64)).requires_grad_()
    log_s = torch.tensor(math.log(12.0), dtype=torch.float64, requires_grad=True)
    fast = affinity_loss(img, txt, log_s.exp(), t_img, t_txt, 50.0)
    slow = naive_affinity(img, txt, log_s.exp(), t_img, t_txt, 50.0)
    assert fast.item() == pytest.approx(slow.item(), rel=1e-10)
    g_fast = torch.autograd.grad(fast, (img, txt, log_s), retain_graph=True)
    g_slow = torch.autograd.grad(slow, (img, txt, log_s), retain_graph=True)
    for a, b in zip(g_fast, g_slow):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)
    assert g_fast[0].abs().sum() > 0
    # the teacher is a fixed target: no gradient reaches it
    t_grads = torch.autograd.grad(fast, (t_img, t_txt), allow_unused=True)
    assert all(t is None or t.abs().sum() == 0 for t in t_grads)


def test_alpha_mixes_affinity_and_clip():
    g = torch.Generator().manual_seed(1)
    img, txt = _unit(torch.randn(4, 6, generator=g)), _unit(torch.randn(4, 6, generator=g))
    t_img, t_txt = _unit(torch.randn(4, 6, generator=g)), _unit(torch.randn(4, 6, generator=g))
    aff = affinity_loss(img, txt, 10.0, t_img, t_txt, 50.0)
    cl = clip_loss(img, txt, 10.0)
    out = tinyclip_loss(img, txt, 10.0, t_img, t_txt, 50.0, alpha=0.25)
    assert out["loss"].item() == pytest.approx(0.25 * aff.item() + 0.75 * cl.item(), rel=1e-6)
    only = tinyclip_loss(img, txt, 10.0, t_img, t_txt, 50.0, alpha=1.0)
    assert "clip" not in only and only["loss"].item() == pytest.approx(aff.item(), rel=1e-7)
    with pytest.raises(ValueError, match="alpha"):
        tinyclip_loss(img, txt, 10.0, t_img, t_txt, 50.0, alpha=1.5)


def test_mismatched_batches_are_refused():
    a = _unit(torch.randn(4, 6))
    with pytest.raises(ValueError, match="do not pair"):
        affinity_loss(a, a, 10.0, _unit(torch.randn(3, 6)), _unit(torch.randn(3, 6)), 50.0)
