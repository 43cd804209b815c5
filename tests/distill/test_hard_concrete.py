"""Hard-concrete gates, the Lagrangian sparsity penalty and mask training (TinyCLIP automatic
weight inheritance, ``edgeclip.distill.hard_concrete``); pruning exactness is in
``tests/models/test_prune.py``."""
from __future__ import annotations

import math

import pytest
import torch

from edgeclip.distill.hard_concrete import HardConcrete, MaskedEncoder, attach_clip_masks, lagrangian
from edgeclip.distill.trainer import TrainConfig, Trainer
from edgeclip.errors import ConfigError
from edgeclip.models import build_builtin
from edgeclip.models._build import build_image_encoder, seeded
from edgeclip.models._specs import ViTSpec


def _f(t: torch.Tensor) -> float:
    return float(t.detach())


def _gate(values) -> HardConcrete:
    g = HardConcrete(len(values))
    with torch.no_grad():
        g.log_alpha.copy_(torch.tensor(values, dtype=torch.float32))
    return g


def test_samples_in_unit_interval_and_eval_is_deterministic():
    torch.manual_seed(0)
    g = _gate([-3.0, -1.0, 0.0, 0.5, 1.0, 3.0]).train()
    z = torch.stack([g() for _ in range(2000)])
    assert z.min() >= 0 and z.max() <= 1
    assert (z == 0).any() and (z == 1).any() and ((z > 0) & (z < 1)).any()  # hard zeros/ones and soft values
    assert not torch.equal(z[0], z[1])
    g.eval()
    a, b = g(), g()
    assert torch.equal(a, b) and not a.requires_grad
    # eval keeps round(E[L0]) gates (the highest log_alphas), with CoFi's soft values
    kept = int(round(float(g.expected_l0().detach())))
    assert int((a > 0).sum()) == kept
    assert torch.equal(a > 0, g.log_alpha >= g.log_alpha.sort(descending=True).values[kept - 1])
    torch.testing.assert_close(a[a > 0], torch.sigmoid(g.log_alpha[a > 0] / (2 / 3) * 0.8).detach())
    assert int((_gate([-50.0, -50.0]).eval()() > 0).sum()) == 1  # never an empty group


def test_expected_l0_matches_monte_carlo():
    torch.manual_seed(1)
    values, n = [-4.0, -2.0, -1.0, 0.0, 1.0, 2.5], 40000
    g = _gate(values)
    with torch.no_grad():  # n independent draws of the six gates at once
        nonzero = (_gate(values * n).train()() > 0).reshape(n, len(values)).float().mean(0)
        p = g.keep_prob()
        # P(z > 0) = sigmoid(log_alpha - beta * log(-l/r)), beta 2/3, (l, r) = (-0.1, 1.1)
        torch.testing.assert_close(p, torch.sigmoid(g.log_alpha - 2 / 3 * math.log(0.1 / 1.1)))
        assert (nonzero - p).abs().max() < 4 * math.sqrt(0.25 / n) + 1e-3
        assert _f(g.expected_l0()) == pytest.approx(float(nonzero.sum()), abs=0.02)


def _vit(seed: int = 0):
    with seeded(seed):  # ViTSpec() is builtin:tiny-vit's image tower
        return build_image_encoder(ViTSpec())


def _vit_masks(**kw) -> MaskedEncoder:
    return MaskedEncoder(_vit(), **kw)


def test_penalty_zero_at_target_and_target_ramp():
    m = _vit_masks(target_sparsity=0.5, warmup_steps=10)
    assert [m.target_sparsity(s) for s in (0, 5, 10, 20)] == [0.0, 0.25, 0.5, 0.5]
    assert _f(m.expected_sparsity()) < 0.01  # starts from the whole model (log_alpha = log 100)
    with torch.no_grad():
        for g in m.gates():
            g.log_alpha.uniform_(-2, 2)
        m.lambda_1.fill_(1.3)
        m.lambda_2.fill_(0.7)
    s = _f(m.expected_sparsity())
    at_target = MaskedEncoder(m.encoder, target_sparsity=s)
    at_target.load_state_dict(m.state_dict())
    loss, parts = at_target.sparsity_penalty(step=0)
    assert abs(_f(loss)) < 1e-6
    assert set(parts) == {"sparsity_penalty", "expected_sparsity", "target_sparsity", "lambda_1", "lambda_2"}
    loss, _ = m.sparsity_penalty(step=10)
    assert _f(loss) == pytest.approx(1.3 * (0.5 - s) + 0.7 * (0.5 - s) ** 2, rel=1e-5)


def test_lambdas_ascend_masks_descend():
    m = _vit_masks(target_sparsity=0.6)
    with torch.no_grad():
        m.lambda_1.fill_(1.0)
    loss, parts = m.sparsity_penalty(step=0)
    loss.backward()
    d = 0.6 - float(parts["expected_sparsity"])
    # gradients of lambda come out negated, so a descent step raises the penalty (ascent)
    assert float(m.lambda_1.grad) == pytest.approx(-d, rel=1e-5)
    assert float(m.lambda_2.grad) == pytest.approx(-d * d, rel=1e-5)
    # the masks descend: sparsity is below target, so every log_alpha is pushed down
    assert all((g.log_alpha.grad > 0).all() for g in m.gates())
    before = _f(loss)
    opt = torch.optim.SGD(m.lagrangian_parameters(), lr=0.1)
    opt.step()
    assert _f(m.lambda_1) > 1.0 and _f(m.lambda_2) > 0.0
    assert _f(m.sparsity_penalty(step=0)[0]) > before
    # TinyCLIP's one-sided form: nothing once the sparsity is past the target
    over = lagrangian(torch.tensor(0.7), 0.5, torch.tensor(2.0), torch.tensor(3.0), one_sided=True)[0]
    assert float(over) == 0.0


def test_masked_encoder_rejects_other_encoders():
    with pytest.raises(ConfigError, match="ViT and TextTransformer"):
        MaskedEncoder(torch.nn.Linear(2, 2), target_sparsity=0.5)
    with pytest.raises(ConfigError, match="target_sparsity"):
        _vit_masks(target_sparsity=1.5)


def test_trainer_drives_sparsity_to_target():
    """Masks on a ViT trained by the ``Trainer`` (own lr groups) on a toy distillation loss: the
    expected sparsity ramps from ~0, overshoots, and settles near the target as the Lagrangian
    oscillation damps (about 130 steps here; TinyCLIP's own lr 0.02 wants thousands)."""
    torch.manual_seed(0)
    teacher = _vit().eval()
    module = _vit_masks(target_sparsity=0.4, warmup_steps=30, init_log_alpha=2.0, mask_lr=0.2, lambda_lr=0.2)
    x = torch.randn(64, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = teacher(x)
    data = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 64, 8)]

    class Batches:
        def batch(self, step, rank, world_size):
            return data[step % len(data)]

    def loss_fn(model, batch):
        inputs, target = batch
        task = ((model(inputs) - target) ** 2).sum(-1).mean()
        penalty, parts = module.sparsity_penalty(trainer.step)
        return {"loss": task + penalty, **parts}

    cfg = TrainConfig(steps=150, lr=1e-3, min_lr_ratio=1.0, progress=False, device="cpu", grad_clip=None)
    trainer = Trainer(module, loss_fn, Batches(), cfg)
    groups = trainer.optimizer.param_groups
    assert [g["lr"] for g in groups[2:]] == [0.2, 0.2]  # masks, then lambdas
    assert len(groups[2]["params"]) == 1 + 2 * len(module.encoder.blocks)
    result = trainer.fit()
    s = result.parts["expected_sparsity"]
    assert s[0] < 0.1 and max(s) > 0.3
    assert abs(s[-1] - 0.4) < 0.08 and abs(sum(s[-10:]) / 10 - 0.4) < 0.08, s[::10]
    assert _f(module.lambda_2) > 0
    # log_alpha is clamped to [log 1e-2, log 1e2] before each forward (the last step may pass it)
    assert min(_f(g.log_alpha.min()) for g in module.gates()) >= math.log(1e-2) - 0.4


def test_clip_masks_joint_penalty():
    model = build_builtin("tiny-vit", seed=0)
    masks = attach_clip_masks(model, target_sparsity=0.5, warmup_steps=4)
    image, text = masks.towers["image"], masks.towers["text"]
    assert model.image.encoder is image and model.text.encoder is text
    with torch.no_grad():
        for g in (*image.gates(), *text.gates()):
            g.log_alpha.uniform_(-1, 3)
    loss, parts = masks.penalty(step=2)
    joint = 1 - (image.expected_params() + text.expected_params()) / (image.full_params() + text.full_params())
    assert float(parts["expected_sparsity"]) == pytest.approx(_f(joint))
    assert float(parts["target_sparsity"]) == 0.25
    assert {"image_sparsity", "text_sparsity"} <= set(parts)
    loss.backward()
    assert image.lambda_1.grad is not None and text.lambda_1.grad is not None
    separate = attach_clip_masks(build_builtin("tiny-vit", seed=0), joint=False, target_sparsity=0.5)
    _, parts = separate.penalty(step=0)
    assert {"image_expected_sparsity", "text_expected_sparsity"} <= set(parts)
