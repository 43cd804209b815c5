"""Distillation and contrastive losses: pure functions of embeddings (no modules, no state).

Embeddings come in L2-normalized (the towers' contract); ``logit_scale`` is the multiplier
(``exp`` of a learned log-scale, or a fixed number such as TinyCLIP's 50), never its log.
Under ``torch.distributed`` every loss sees the whole global batch through ``gather_features``,
with open_clip's semantics (``local_loss=False, gather_with_grad=False``): each rank computes the
full loss, gradients flow only into its own shard, scaled by the world size so that DDP's
gradient average equals the single-process gradient (open_clip's is 1/world of it, which Adam
mostly hides but gradient clipping does not).

Method losses live here too (TinyCLIP affinity mimicking now; MobileCLIP ensemble KD later),
each tested against a naive reference forward and backward, as ``clip_loss`` is.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["gather_features", "clip_logits", "clip_loss", "soft_cross_entropy", "affinity_loss",
           "tinyclip_loss", "ensemble_targets", "ensemble_kd_loss", "mobileclip_loss", "feature_loss"]


def _world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _TimesWorld(torch.autograd.Function):
    """Identity forward; backward multiplies by the world size. DDP averages the ranks' gradients,
    and each rank's features get the full loss's gradient through its own rows only, so the average
    would be the single-process gradient / world. Scaling here, on the feature path alone, makes
    it exact while parameters the loss uses directly (a learned logit scale: the same full-loss
    gradient on every rank) stay right under the average."""

    @staticmethod
    def forward(ctx, x, world: int):
        ctx.world = world
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.world, None


def gather_features(x: torch.Tensor) -> torch.Tensor:
    """``[B, D]`` local features -> ``[world*B, D]`` in rank order, the local shard keeping its
    autograd graph (the others are detached copies), its gradient scaled by the world size for
    DDP's average (``_TimesWorld``). Identity outside a process group.

    Every rank must pass the same batch size (all_gather needs equal shapes)."""
    rank, world = _world()
    if world == 1:
        return x
    import torch.distributed as dist

    gathered = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(gathered, x.detach().contiguous())
    gathered[rank] = _TimesWorld.apply(x, world)  # our shard's graph back: gradients reach only local features
    return torch.cat(gathered, dim=0)


def clip_logits(image_emb: torch.Tensor, text_emb: torch.Tensor,
                logit_scale: torch.Tensor | float) -> torch.Tensor:
    """``[N, N]`` image->text logits ``s * I @ T.T``, at least float32 (bf16 logits under
    autocast lose the ranking of near-equal similarities)."""
    dt = torch.promote_types(image_emb.dtype, torch.float32)
    with torch.autocast(image_emb.device.type, enabled=False):  # autocast would redo it in bf16
        return logit_scale * (image_emb.to(dt) @ text_emb.to(dt).t())


def clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor,
              logit_scale: torch.Tensor | float, gather: bool = True) -> torch.Tensor:
    """Symmetric InfoNCE: the mean of image->text and text->image cross-entropy, where the
    positive of row ``i`` is column ``i``. Features are gathered across ranks when ``gather``
    and a process group is initialized, so the negatives are the whole global batch."""
    if image_emb.shape != text_emb.shape or image_emb.ndim != 2:
        raise ValueError(f"clip_loss needs two [N, D] embeddings of the same shape, got "
                         f"{tuple(image_emb.shape)} and {tuple(text_emb.shape)}")
    if gather:
        image_emb, text_emb = gather_features(image_emb), gather_features(text_emb)
    logits = clip_logits(image_emb, text_emb, logit_scale)
    labels = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


def soft_cross_entropy(logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """``mean_i[-sum_j softmax(target)_ij * log_softmax(logits)_ij]``; no gradient into the target."""
    dt = torch.promote_types(logits.dtype, torch.float32)  # at least fp32, float64 kept for tests
    p = torch.softmax(target_logits.detach().to(dt), dim=-1)
    return -(p * torch.log_softmax(logits.to(dt), dim=-1)).sum(-1).mean()


def affinity_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor | float,
                  teacher_image: torch.Tensor, teacher_text: torch.Tensor,
                  teacher_scale: torch.Tensor | float, gather: bool = True) -> torch.Tensor:
    """TinyCLIP affinity mimicking: the student's image->text and text->image affinity rows
    (softmax over the batch) learn the teacher's, ``0.5 * (L_i2t + L_t2i)`` with
    ``L = soft_cross_entropy(s_student * I T^T, s_teacher * I_t T_t^T)`` (and the transposes).
    Student and teacher may have different embedding widths: only the [N, N] affinities meet.
    Gathered across ranks like ``clip_loss``; the teacher side carries no gradient."""
    if image_emb.shape != text_emb.shape or image_emb.ndim != 2:
        raise ValueError(f"affinity_loss needs two [N, D] student embeddings of the same shape, got "
                         f"{tuple(image_emb.shape)} and {tuple(text_emb.shape)}")
    if teacher_image.shape[0] != image_emb.shape[0] or teacher_text.shape != teacher_image.shape:
        raise ValueError(f"teacher embeddings {tuple(teacher_image.shape)}, {tuple(teacher_text.shape)} "
                         f"do not pair with the student batch of {image_emb.shape[0]}")
    if gather:
        image_emb, text_emb = gather_features(image_emb), gather_features(text_emb)
        teacher_image, teacher_text = gather_features(teacher_image), gather_features(teacher_text)
    s = clip_logits(image_emb, text_emb, logit_scale)
    t = clip_logits(teacher_image.detach(), teacher_text.detach(), teacher_scale)
    return 0.5 * (soft_cross_entropy(s, t) + soft_cross_entropy(s.t(), t.t()))


def tinyclip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor | float,
                  teacher_image: torch.Tensor, teacher_text: torch.Tensor,
                  teacher_scale: torch.Tensor | float, alpha: float = 1.0,
                  gather: bool = True) -> dict[str, torch.Tensor]:
    """``alpha * affinity + (1 - alpha) * clip`` (the paper's ``0.5*alpha*(L_i2t + L_t2i) +
    (1 - alpha)*L_clip``); ``alpha=1`` (the released runs) skips the CLIP term. Returns
    ``{"loss", "affinity", "clip"}`` (the parts detached, for logging)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], found {alpha}")
    aff = affinity_loss(image_emb, text_emb, logit_scale, teacher_image, teacher_text, teacher_scale,
                        gather=gather)
    out = {"affinity": aff.detach()}
    loss = alpha * aff
    if alpha < 1.0:
        cl = clip_loss(image_emb, text_emb, logit_scale, gather=gather)
        loss = loss + (1.0 - alpha) * cl
        out["clip"] = cl.detach()
    out["loss"] = loss
    return out


def _split_dims(dims) -> list[tuple[int, int]]:
    bounds, start = [], 0
    for d in dims:
        bounds.append((start, start + int(d)))
        start += int(d)
    return bounds


def ensemble_targets(teacher_image: torch.Tensor, teacher_text: torch.Tensor, dims, scales
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """MobileCLIP's ensemble targets from stored teacher embeddings ``[N, sum(dims)]`` (each
    teacher's slice L2-normalized): ``P_i2t = mean_k softmax_rows(a_k I_k T_k^T)`` and
    ``P_t2i = mean_k softmax_rows(a_k T_k I_k^T)`` (averaged after the softmax, as
    ``--distill-average-after-softmax`` does). ``scales``: one logit scale or one per teacher."""
    bounds = _split_dims(dims)
    if bounds[-1][1] != teacher_image.shape[1] or teacher_text.shape[1] != teacher_image.shape[1]:
        raise ValueError(f"teacher dims {list(dims)} do not add up to the stored embedding width "
                         f"{teacher_image.shape[1]} / {teacher_text.shape[1]}")
    scales = [float(scales)] * len(bounds) if isinstance(scales, (int, float)) else [float(a) for a in scales]
    if len(scales) != len(bounds):
        raise ValueError(f"{len(scales)} teacher logit scales for {len(bounds)} teachers")
    dt = torch.promote_types(teacher_image.dtype, torch.float32)
    i2t = t2i = 0.0
    for (a, b), s in zip(bounds, scales):
        ti, tt = teacher_image[:, a:b].detach().to(dt), teacher_text[:, a:b].detach().to(dt)
        i2t = i2t + torch.softmax(s * ti @ tt.t(), dim=1)
        t2i = t2i + torch.softmax(s * tt @ ti.t(), dim=1)
    return i2t / len(bounds), t2i / len(bounds)


def ensemble_kd_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale,
                     teacher_image: torch.Tensor, teacher_text: torch.Tensor, dims, teacher_scales,
                     gather: bool = True) -> torch.Tensor:
    """``L_kd = 1/2 [CE(P_i2t, S) + CE(P_t2i, S^T)]`` with ``S = s * I T^T`` the student's logits
    and the ensemble targets of ``ensemble_targets``; gathered across ranks."""
    if gather:
        image_emb, text_emb = gather_features(image_emb), gather_features(text_emb)
        teacher_image, teacher_text = gather_features(teacher_image), gather_features(teacher_text)
    p_i2t, p_t2i = ensemble_targets(teacher_image, teacher_text, dims, teacher_scales)
    s = clip_logits(image_emb, text_emb, logit_scale)
    dt = torch.promote_types(s.dtype, torch.float32)
    ce = lambda p, logits: -(p.to(dt) * torch.log_softmax(logits.to(dt), dim=1)).sum(1).mean()  # noqa: E731
    return 0.5 * (ce(p_i2t, s) + ce(p_t2i, s.t()))


def mobileclip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, syn_text_emb: torch.Tensor | None,
                    logit_scale, teacher_image: torch.Tensor, teacher_text: torch.Tensor,
                    teacher_syn_text: torch.Tensor | None, dims, teacher_scales, w0: float = 0.0,
                    w1: float = 1.0, gather: bool = True) -> dict[str, torch.Tensor]:
    """MobileCLIP's reinforced-training loss
    ``w0 * (L_clip(gt) + L_clip(syn)) + w1 * (L_kd(gt) + L_kd(syn))`` (the syn terms only when
    synthetic captions are given). Returns ``{"loss", "clip_gt", "kd_gt", ...}``, parts detached."""
    out: dict[str, torch.Tensor] = {}
    loss = image_emb.new_zeros((), dtype=torch.float32)
    pairs = [("gt", text_emb, teacher_text)]
    if syn_text_emb is not None:
        pairs.append(("syn", syn_text_emb, teacher_syn_text))
    for name, txt, t_txt in pairs:
        if w0:
            c = clip_loss(image_emb, txt, logit_scale, gather=gather)
            loss = loss + w0 * c
            out[f"clip_{name}"] = c.detach()
        if w1:
            k = ensemble_kd_loss(image_emb, txt, logit_scale, teacher_image, t_txt, dims, teacher_scales,
                                 gather=gather)
            loss = loss + w1 * k
            out[f"kd_{name}"] = k.detach()
    out["loss"] = loss
    return out


def feature_loss(student: torch.Tensor, teacher: torch.Tensor, smooth_l1_weight: float = 1.0,
                 cosine_weight: float = 1.0, beta: float = 1.0) -> torch.Tensor:
    """DC-CLIP stage 1: ``w_l1 * SmoothL1(s, t) + w_cos * mean(1 - cos(s, t))`` between a student's
    (adapted) features ``[N, D]`` and the teacher's ``[N, D]``; no gradient into the teacher."""
    if student.shape != teacher.shape:
        raise ValueError(f"feature_loss needs equal shapes, got {tuple(student.shape)} and {tuple(teacher.shape)}")
    dt = torch.promote_types(student.dtype, torch.float32)
    s, t = student.to(dt), teacher.detach().to(dt)
    l1 = F.smooth_l1_loss(s, t, beta=beta)
    cos = (1 - F.cosine_similarity(s, t, dim=-1)).mean()
    return smooth_l1_weight * l1 + cosine_weight * cos
