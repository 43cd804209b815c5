"""TinyCLIP automatic weight inheritance: learnable hard-concrete masks over the residual (hidden)
dims, attention heads and MLP neurons of an edgeclip ``ViT`` / ``TextTransformer``, a Lagrangian
sparsity penalty, and ``prune()`` into a plain smaller encoder.

Follows microsoft/Cream ``TinyCLIP/src/open_clip/l0module.py`` (itself CoFi pruning,
princeton-nlp/CoFiPruning ``l0_module.py``, after Louizos et al. 2018):

- gate ``z = clamp(sigmoid((log u - log(1-u) + log_alpha) / beta) * (r - l) + l, 0, 1)`` with
  ``beta = 2/3``, stretch ``(l, r) = (-0.1, 1.1)``; ``P(z > 0) = sigmoid(log_alpha - beta * log(-l/r))``
  is the expected L0 of a gate. ``log_alpha`` starts at ``log(100)`` (all kept) and is held in
  ``[log 1e-2, log 1e2]`` (TinyCLIP inits 10 and clamps after every step: the same thing).
- eval (deterministic) gates: CoFi's soft ``sigmoid(0.8 * log_alpha / beta)`` with the
  ``round(n - E[L0])`` lowest set to 0, so eval keeps the expected number of structures. Unlike
  CoFi, at least one structure per group survives (no empty layers, no zero-size tensors).
- penalty ``lambda_1 * (t - s) + lambda_2 * (t - s)^2`` with ``s`` the expected sparsity (1 -
  expected kept block parameters / all block parameters) and ``t`` ramping linearly from 0 to the
  target over ``warmup_steps``. ``lambda_1, lambda_2`` must be *maximized* (TinyCLIP trains them
  with lr -0.02): the penalty passes them through a gradient-reversal op, so any descent
  optimizer (the ``Trainer`` included) ascends on them. A trainer must only keep them out of
  weight decay; ``optimizer_groups()`` gives masks and lambdas their own lr (TinyCLIP: 0.02 both).
  This is CoFi's two-sided form (an equality constraint: ``s`` is pulled to ``t`` from both
  sides); ``one_sided=True`` is TinyCLIP's released ``max(t - s, 0)`` (``s >= t``; the task loss
  alone pulls ``s`` back down), under which the lambdas can only grow.

Parameter count (per block, exact for the full model): with ``W`` residual dims, ``H`` heads of
dim ``hd`` and ``N`` neurons, ``W*(4*hd*H + 2*N + 6 [+2 layer scale]) + 3*hd*H + N`` (q/k/v/out
weights and biases, fc/proj, two LayerNorms). The expected count takes ``E[W]``, ``E[H]``, ``E[N]``
(gates independent), so a hidden dim scales every head and neuron, as in TinyCLIP. Embeddings,
the final norm and projection are outside the sparsity budget (as in TinyCLIP), though pruning
hidden dims shrinks them too.

Masking semantics (chosen so pruning is exact, to float rounding, even for fractional gates):

- hidden gate ``zh``: multiplies every *write* into the residual stream (embeddings, attention
  output, MLP output), and every LayerNorm takes its mean/variance over the dims with ``zh > 0``
  only and outputs 0 on the others. The stream is then 0 on dropped dims and each norm sees
  exactly the kept dims, as the pruned model's norms do; ``zh`` folds into the writers' weights.
  (TinyCLIP does the same; its ``prune()`` also multiplies the final projection by ``zh``, which
  its masked forward never did; here the projection is only sliced.)
- head gate: multiplies the head's output before ``attn.out`` (folds into its columns).
- neuron gate: multiplies the activation before ``mlp.proj`` (folds into its column).

``MaskedEncoder`` is a thin wrapper that re-runs the encoder's forward with the masks using the
encoder's own parameters (nothing copied), so it trains in the normal ``Trainer``.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

from ..errors import ConfigError
from ..models import TextTransformer, ViT
from ..models.prune import prune_encoder, with_encoders

__all__ = ["HardConcrete", "MaskedEncoder", "ClipMasks", "attach_masks", "attach_clip_masks", "prune",
           "lagrangian", "LOG_ALPHA_RANGE"]

BETA = 2.0 / 3.0
LIMITS = (-0.1, 1.1)
EPS = 1e-6
SOFT_SHARPEN = 0.8  # CoFi's "magical number" (Wang et al. 2020) for the deterministic soft mask
LOG_ALPHA_RANGE = (math.log(1e-2), math.log(1e2))


class HardConcrete(nn.Module):
    """``size`` independent hard-concrete gates: ``forward()`` samples in training, is
    deterministic in eval (module docstring)."""

    def __init__(self, size: int, init_log_alpha: float = LOG_ALPHA_RANGE[1], beta: float = BETA,
                 limits: tuple[float, float] = LIMITS):
        super().__init__()
        if size < 1:
            raise ConfigError(f"a gate group needs >= 1 gate, found {size}")
        self.beta, self.limits = float(beta), (float(limits[0]), float(limits[1]))
        self.log_alpha = nn.Parameter(torch.full((size,), float(init_log_alpha)))

    def keep_prob(self) -> torch.Tensor:
        """``P(z > 0)`` per gate: its expected L0."""
        lo, hi = self.limits
        return torch.sigmoid(self.log_alpha - self.beta * math.log(-lo / hi))

    def expected_l0(self) -> torch.Tensor:
        return self.keep_prob().sum()

    def sample(self) -> torch.Tensor:
        lo, hi = self.limits
        u = torch.rand_like(self.log_alpha).clamp(EPS, 1 - EPS)
        s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + self.log_alpha) / self.beta)
        return (s * (hi - lo) + lo).clamp(0.0, 1.0)

    @torch.no_grad()
    def deterministic(self) -> torch.Tensor:
        la = self.log_alpha.detach()
        z = torch.sigmoid(la / self.beta * SOFT_SHARPEN)
        n = la.numel()
        zeros = min(int(round(n - float(self.expected_l0()))), n - 1)
        if zeros > 0:
            z[torch.topk(la, zeros, largest=False).indices] = 0.0
        return z

    @torch.no_grad()
    def constrain_(self) -> None:
        self.log_alpha.clamp_(*LOG_ALPHA_RANGE)

    def forward(self) -> torch.Tensor:
        return self.sample() if self.training else self.deterministic()


class _Ascend(torch.autograd.Function):
    """Identity forward, negated gradient: a descent step on the input becomes an ascent step."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -grad


def lagrangian(expected: torch.Tensor, target: float, lambda_1: torch.Tensor, lambda_2: torch.Tensor,
               one_sided: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``lambda_1 * d + lambda_2 * d^2`` with ``d = t - s`` (``max(t - s, 0)`` when ``one_sided``);
    the lambdas' gradients come out negated (ascent)."""
    d = target - expected
    if one_sided:
        d = d.clamp_min(0.0)
    loss = _Ascend.apply(lambda_1) * d + _Ascend.apply(lambda_2) * d * d
    parts = {"sparsity_penalty": loss.detach(), "expected_sparsity": expected.detach(),
             "target_sparsity": torch.tensor(float(target)), "lambda_1": lambda_1.detach(),
             "lambda_2": lambda_2.detach()}
    return loss, parts


def _block_params(width, head_dim: int, heads, neurons, layer_scale: bool):
    return width * (4 * head_dim * heads + 2 * neurons + 6 + 2 * layer_scale) + 3 * head_dim * heads + neurons


def _masked_norm(norm: nn.Module, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """LayerNorm over the kept dims only (``keep`` is 0/1), 0 on the others."""
    if not isinstance(norm, nn.LayerNorm):
        return x
    xf = x.float()
    n = keep.sum().clamp_min(1.0)
    mean = (xf * keep).sum(-1, keepdim=True) / n
    var = (((xf - mean) * keep) ** 2).sum(-1, keepdim=True) / n
    y = (xf - mean) * torch.rsqrt(var + norm.eps) * norm.weight.float() + norm.bias.float()
    return (y * keep).to(x.dtype)


def _masked_block(blk: nn.Module, x, attn_mask, hz, keep, head_z, neuron_z) -> torch.Tensor:
    a = blk.attn
    y = _masked_norm(blk.ln_1, x, keep)
    b, n, _ = y.shape
    h, hd = a.heads, a.head_dim
    q = a.q(y).reshape(b, n, h, hd).transpose(1, 2)
    k = a.k(y).reshape(b, n, h, hd).transpose(1, 2)
    v = a.v(y).reshape(b, n, h, hd).transpose(1, 2)
    s = torch.matmul(q * a.scale, k.transpose(-1, -2))
    if attn_mask is not None:
        s = s + attn_mask
    o = torch.matmul(torch.softmax(s, dim=-1), v) * head_z.view(1, h, 1, 1)
    o = a.out(o.transpose(1, 2).reshape(b, n, h * hd))
    x = x + blk.ls_1(o) * hz
    f = blk.mlp.act(blk.mlp.fc(_masked_norm(blk.ln_2, x, keep))) * neuron_z
    return x + blk.ls_2(blk.mlp.proj(f)) * hz


class MaskedEncoder(nn.Module):
    """``encoder`` (a ``ViT`` or ``TextTransformer``, held, not copied) run with structured masks.

    ``forward`` takes the encoder's input. ``sparsity_penalty(step)`` is the Lagrangian term
    (add it to the loss once per step); ``prune()`` returns the smaller plain encoder."""

    def __init__(self, encoder: nn.Module, *, target_sparsity: float, warmup_steps: int = 0,
                 init_log_alpha: float = LOG_ALPHA_RANGE[1], mask_lr: float | None = 0.02,
                 lambda_lr: float | None = 0.02, one_sided: bool = False):
        super().__init__()
        if not isinstance(encoder, (ViT, TextTransformer)):
            raise ConfigError(f"automatic inheritance masks edgeclip ViT and TextTransformer encoders, "
                              f"not {type(encoder).__name__}")
        if not 0.0 <= target_sparsity < 1.0 or warmup_steps < 0:
            raise ConfigError(f"target_sparsity must be in [0, 1) and warmup_steps >= 0, found "
                              f"{target_sparsity}, {warmup_steps}")
        self.encoder = encoder
        self.target, self.warmup_steps = float(target_sparsity), int(warmup_steps)
        self.mask_lr, self.lambda_lr, self.one_sided = mask_lr, lambda_lr, bool(one_sided)
        self.hidden = HardConcrete(encoder.spec.width, init_log_alpha)
        self.heads = nn.ModuleList(HardConcrete(b.attn.heads, init_log_alpha) for b in encoder.blocks)
        self.neurons = nn.ModuleList(HardConcrete(b.mlp.fc.out_features, init_log_alpha) for b in encoder.blocks)
        self.lambda_1 = nn.Parameter(torch.zeros(()))
        self.lambda_2 = nn.Parameter(torch.zeros(()))
        p = next(encoder.parameters())
        self.to(device=p.device)

    @property
    def spec(self):
        return self.encoder.spec

    # ------------------------------------------------------------------ parameters
    def gates(self) -> list[HardConcrete]:
        return [self.hidden, *self.heads, *self.neurons]

    def mask_parameters(self) -> list[nn.Parameter]:
        return [g.log_alpha for g in self.gates()]

    def lagrangian_parameters(self) -> list[nn.Parameter]:
        return [self.lambda_1, self.lambda_2]

    def optimizer_groups(self) -> list[dict[str, Any]]:
        """Own optimizer groups (no weight decay; ``Trainer`` picks these up): masks at
        ``mask_lr``, lambdas at ``lambda_lr`` (a positive lr: their gradient is already negated).
        A ``None`` lr leaves those parameters in the trainer's default no-decay group."""
        out = []
        for params, lr in ((self.mask_parameters(), self.mask_lr), (self.lagrangian_parameters(), self.lambda_lr)):
            if lr is not None:
                out.append({"params": params, "lr": float(lr), "weight_decay": 0.0})
        return out

    # ------------------------------------------------------------------ sparsity
    def _count(self, w, heads, neurons):
        ls = not isinstance(self.encoder.blocks[0].ls_1, nn.Identity)
        return sum(_block_params(w, b.attn.head_dim, h, n, ls) for b, h, n in zip(self.encoder.blocks, heads, neurons))

    def full_params(self) -> int:
        """Parameters of the encoder's blocks (the sparsity budget's denominator)."""
        return int(self._count(self.hidden.log_alpha.numel(), [g.log_alpha.numel() for g in self.heads],
                               [g.log_alpha.numel() for g in self.neurons]))

    def expected_params(self) -> torch.Tensor:
        """Expected number of block parameters kept (differentiable in the log_alphas)."""
        return self._count(self.hidden.expected_l0(), [g.expected_l0() for g in self.heads],
                           [g.expected_l0() for g in self.neurons])

    def expected_sparsity(self) -> torch.Tensor:
        return 1.0 - self.expected_params() / self.full_params()

    def target_sparsity(self, step: int) -> float:
        if self.warmup_steps <= 0:
            return self.target
        return self.target * min(1.0, max(0, int(step)) / self.warmup_steps)

    def sparsity_penalty(self, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(penalty, parts)`` at 0-based training ``step``; add ``penalty`` to the loss."""
        return lagrangian(self.expected_sparsity(), self.target_sparsity(step), self.lambda_1, self.lambda_2,
                          self.one_sided)

    # ------------------------------------------------------------------ forward and pruning
    def masks(self) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """``(hidden, heads per block, neurons per block)`` gate values: sampled in training."""
        return self.hidden(), [g() for g in self.heads], [g() for g in self.neurons]

    @torch.no_grad()
    def deterministic_masks(self) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        return self.hidden.deterministic(), [g.deterministic() for g in self.heads], \
            [g.deterministic() for g in self.neurons]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:  # TinyCLIP's constrain_parameters() after each step, done before use
            for g in self.gates():
                g.constrain_()
        hz, head_z, neuron_z = self.masks()
        keep = (hz > 0).to(hz.dtype)
        enc = self.encoder
        if isinstance(enc, ViT):
            t = enc.patch_embed(x)
            b, w = t.shape[0], t.shape[1]
            t = t.reshape(b, w, -1).transpose(1, 2)
            t = torch.cat([enc.class_embedding.reshape(1, 1, w).expand(b, 1, w), t], dim=1) + enc.pos_embed
            t = _masked_norm(enc.ln_pre, t * hz, keep)
            for blk, zh, zn in zip(enc.blocks, head_z, neuron_z):
                t = _masked_block(blk, t, None, hz, keep, zh, zn)
            return enc.proj(_masked_norm(enc.ln_post, t[:, 0], keep))
        t = (enc.token_embedding(x.long()) + enc.pos_embed) * hz
        for blk, zh, zn in zip(enc.blocks, head_z, neuron_z):
            t = _masked_block(blk, t, enc.mask, hz, keep, zh, zn)
        t = _masked_norm(enc.ln_final, t, keep)
        eot = torch.argmax((x == enc.eot_id).to(torch.float32), dim=-1)
        return enc.proj(torch.gather(t, 1, eot.reshape(-1, 1, 1).expand(-1, 1, t.shape[-1])).squeeze(1))

    @torch.no_grad()
    def prune(self) -> nn.Module:
        """The plain encoder with the structures the deterministic masks drop removed and their
        fractional values folded into the weights: it computes what this module computes in eval."""
        hz, head_z, neuron_z = self.deterministic_masks()
        nz = lambda z: torch.nonzero(z).reshape(-1)  # noqa: E731
        return prune_encoder(self.encoder, [nz(z) for z in head_z], [nz(z) for z in neuron_z], nz(hz),
                             head_scale=head_z, neuron_scale=neuron_z, hidden_scale=hz)

    @torch.no_grad()
    def summary(self) -> dict[str, Any]:
        """What the deterministic masks keep, and the expected sparsity."""
        hz, head_z, neuron_z = self.deterministic_masks()
        return {"width": int((hz > 0).sum()), "heads": [int((z > 0).sum()) for z in head_z],
                "mlp": [int((z > 0).sum()) for z in neuron_z],
                "expected_sparsity": float(self.expected_sparsity())}


def prune(masks: MaskedEncoder) -> nn.Module:
    """The pruned plain encoder of a ``MaskedEncoder`` (``masks.prune()``)."""
    return masks.prune()


def attach_masks(tower: nn.Module, **kwargs) -> MaskedEncoder:
    """Wrap ``tower.encoder`` (an ``ImageTower``/``TextTower``) in a ``MaskedEncoder`` in place;
    ``kwargs`` go to ``MaskedEncoder``. Returns the wrapper (now ``tower.encoder``)."""
    masked = MaskedEncoder(tower.encoder, **kwargs)
    tower.encoder = masked
    return masked


class ClipMasks:
    """The masks of both towers of a CLIP. ``penalty(step)``: with ``joint`` (TinyCLIP's
    ``--total-loss-flag``) one budget over both towers' block parameters, lambdas and targets
    averaged; otherwise the sum of the towers' own penalties."""

    def __init__(self, image: MaskedEncoder | None, text: MaskedEncoder | None, joint: bool = True):
        self.towers = {k: m for k, m in (("image", image), ("text", text)) if m is not None}
        if not self.towers:
            raise ConfigError("ClipMasks needs at least one masked tower")
        self.joint = joint

    def penalty(self, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        ms = list(self.towers.values())
        if not self.joint:
            total, parts = 0.0, {}
            for name, m in self.towers.items():
                loss, p = m.sparsity_penalty(step)
                total = total + loss
                parts.update({f"{name}_{k}": v for k, v in p.items()})
            return total, parts
        expected = 1.0 - sum(m.expected_params() for m in ms) / sum(m.full_params() for m in ms)
        target = sum(m.target_sparsity(step) for m in ms) / len(ms)
        loss, parts = lagrangian(expected, target, sum(m.lambda_1 for m in ms) / len(ms),
                                 sum(m.lambda_2 for m in ms) / len(ms), ms[0].one_sided)
        for name, m in self.towers.items():
            parts[f"{name}_sparsity"] = m.expected_sparsity().detach()
        return loss, parts

    def prune(self, model) -> tuple[Any, dict[str, Any]]:
        """A new ``ClipModel`` like ``model`` with the masked towers' encoders pruned (config and
        facts updated), and what each tower kept."""
        info = {name: m.summary() for name, m in self.towers.items()}
        pruned = {name: m.prune().eval() for name, m in self.towers.items()}
        return with_encoders(model, image=pruned.get("image"), text=pruned.get("text")), info


def attach_clip_masks(model, *, towers: Sequence[str] = ("image", "text"), joint: bool = True,
                      **kwargs) -> ClipMasks:
    """Mask the encoders of ``model.image`` / ``model.text`` (a ``ClipModel`` or any module holding
    the towers, e.g. ``ClipTrainModule``) in place; ``kwargs`` go to ``MaskedEncoder``
    (``target_sparsity``, ``warmup_steps``, ``init_log_alpha``, ``mask_lr``, ``lambda_lr``)."""
    bad = sorted(set(towers) - {"image", "text"})
    if bad:
        raise ConfigError(f"unknown towers {bad}; use image and/or text")
    masked = {t: attach_masks(getattr(model, t), **kwargs) for t in towers}
    return ClipMasks(masked.get("image"), masked.get("text"), joint=joint)
