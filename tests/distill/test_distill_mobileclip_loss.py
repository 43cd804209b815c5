"""MobileCLIP's reinforced-training loss: ensemble targets averaged after the softmax, the KD
term by hand (2x2), against a naive loop, zero KL when the student equals the teacher, and the
w0/w1 mix of gt and synthetic captions."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from edgeclip.distill.losses import clip_loss, ensemble_kd_loss, ensemble_targets, mobileclip_loss


def _unit(x):
    return x / x.norm(dim=-1, keepdim=True)


def test_kd_2x2_by_hand_one_teacher():
    eye = torch.eye(2, dtype=torch.float64)
    a, s = 4.0, 2.0
    p = math.exp(a) / (math.exp(a) + 1)
    want = p * math.log1p(math.exp(-s)) + (1 - p) * math.log1p(math.exp(s))
    got = ensemble_kd_loss(eye, eye, s, eye, eye, dims=[2], teacher_scales=a)
    assert got.item() == pytest.approx(want, rel=1e-12)


def test_ensemble_averages_after_softmax():
    g = torch.Generator().manual_seed(0)
    t1i, t1t = _unit(torch.randn(3, 4, generator=g, dtype=torch.float64)), _unit(torch.randn(3, 4, generator=g, dtype=torch.float64))
    t2i, t2t = _unit(torch.randn(3, 2, generator=g, dtype=torch.float64)), _unit(torch.randn(3, 2, generator=g, dtype=torch.float64))
    p_i2t, p_t2i = ensemble_targets(torch.cat([t1i, t2i], 1), torch.cat([t1t, t2t], 1), [4, 2], [70.0, 60.0])

    def softmax(x):
        e = np.exp(x - x.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    a, b = (t.numpy() for t in (t1i, t1t)), (t.numpy() for t in (t2i, t2t))
    (i1, x1), (i2, x2) = a, b
    want_i2t = (softmax(70 * i1 @ x1.T) + softmax(60 * i2 @ x2.T)) / 2
    want_t2i = (softmax(70 * x1 @ i1.T) + softmax(60 * x2 @ i2.T)) / 2
    np.testing.assert_allclose(p_i2t.numpy(), want_i2t, rtol=1e-12)
    np.testing.assert_allclose(p_t2i.numpy(), want_t2i, rtol=1e-12)
    # averaging logits first would be a different target: the test would catch that mistake
    mixed = softmax((70 * i1 @ x1.T + 60 * i2 @ x2.T) / 2)
    assert not np.allclose(mixed, want_i2t, atol=1e-3)
    with pytest.raises(ValueError, match="do not add up"):
        ensemble_targets(torch.cat([t1i, t2i], 1), torch.cat([t1t, t2t], 1), [4, 3], 50.0)


def test_matches_naive_loop_forward_and_backward():
    g = torch.Generator().manual_seed(1)
    n, d = 5, 6
    img = _unit(torch.randn(n, d, generator=g, dtype=torch.float64)).requires_grad_()
    txt = _unit(torch.randn(n, d, generator=g, dtype=torch.float64)).requires_grad_()
    ti = torch.cat([_unit(torch.randn(n, 3, generator=g, dtype=torch.float64)),
                    _unit(torch.randn(n, 5, generator=g, dtype=torch.float64))], 1)
    tt = torch.cat([_unit(torch.randn(n, 3, generator=g, dtype=torch.float64)),
                    _unit(torch.randn(n, 5, generator=g, dtype=torch.float64))], 1)
    s = 9.0

    def naive():
        total = 0.0
        for direction in ("i2t", "t2i"):
            for i in range(n):
                targets = []
                for (lo, hi), a in (((0, 3), 30.0), ((3, 8), 20.0)):
                    q, k = (ti, tt) if direction == "i2t" else (tt, ti)
                    row = torch.stack([a * torch.dot(q[i, lo:hi], k[j, lo:hi]) for j in range(n)])
                    targets.append(torch.exp(row) / torch.exp(row).sum())
                p = (targets[0] + targets[1]) / 2
                x, y = (img, txt) if direction == "i2t" else (txt, img)
                srow = torch.stack([s * torch.dot(x[i], y[j]) for j in range(n)])
                logq = srow - torch.log(torch.exp(srow).sum())
                total = total - (p * logq).sum() / n
        return total / 2

    fast = ensemble_kd_loss(img, txt, s, ti, tt, [3, 5], [30.0, 20.0])
    slow = naive()
    assert fast.item() == pytest.approx(slow.item(), rel=1e-10)
    for a, b in zip(torch.autograd.grad(fast, (img, txt)), torch.autograd.grad(slow, (img, txt))):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)


def test_student_equal_to_teacher_has_zero_kl():
    g = torch.Generator().manual_seed(2)
    ti, tt = _unit(torch.randn(6, 8, generator=g, dtype=torch.float64)), _unit(torch.randn(6, 8, generator=g, dtype=torch.float64))
    img, txt = ti.clone().requires_grad_(), tt.clone().requires_grad_()
    out = mobileclip_loss(img, txt, None, 50.0, ti, tt, None, [8], 50.0, w0=0.0, w1=1.0)
    p_i2t, p_t2i = ensemble_targets(ti, tt, [8], 50.0)
    entropy = 0.5 * (-(p_i2t * p_i2t.log()).sum(1).mean() - (p_t2i * p_t2i.log()).sum(1).mean())
    assert (out["loss"] - entropy).abs().item() < 1e-12   # CE = H(P) + KL, KL = 0
    grads = torch.autograd.grad(out["loss"], (img, txt))
    assert max(g.abs().max().item() for g in grads) < 1e-10  # a minimum: nothing to learn
    assert "clip_gt" not in out


def test_w0_w1_mix_with_synthetic_captions():
    g = torch.Generator().manual_seed(3)
    u = lambda *s: _unit(torch.randn(*s, generator=g))  # noqa: E731
    img, txt, syn = u(4, 6), u(4, 6), u(4, 6)
    ti, tt, ts = u(4, 5), u(4, 5), u(4, 5)
    out = mobileclip_loss(img, txt, syn, 20.0, ti, tt, ts, [5], 70.0, w0=0.25, w1=0.75)
    want = (0.25 * (clip_loss(img, txt, 20.0) + clip_loss(img, syn, 20.0))
            + 0.75 * (ensemble_kd_loss(img, txt, 20.0, ti, tt, [5], 70.0)
                      + ensemble_kd_loss(img, syn, 20.0, ti, ts, [5], 70.0)))
    assert out["loss"].item() == pytest.approx(want.item(), rel=1e-6)
    assert set(out) == {"loss", "clip_gt", "kd_gt", "clip_syn", "kd_syn"}
