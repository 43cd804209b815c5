"""Distillation and contrastive losses: pure functions of embeddings (no modules, no state).

Embeddings come in L2-normalized (the towers' contract); ``logit_scale`` is the multiplier
(``exp`` of a learned log-scale, or a fixed number such as TinyCLIP's 50), never its log.
Under ``torch.distributed`` every loss sees the whole global batch through ``gather_features``,
with open_clip's semantics (``local_loss=False, gather_with_grad=False``): each rank computes the
full loss, gradients flow only into its own shard, and DDP's gradient averaging combines them.

Method losses live here too (TinyCLIP affinity mimicking now; MobileCLIP ensemble KD later),
each tested against a naive reference forward and backward, as ``clip_loss`` is.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["gather_features", "clip_logits", "clip_loss", "soft_cross_entropy", "affinity_loss",
           "tinyclip_loss"]


def _world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_features(x: torch.Tensor) -> torch.Tensor:
    """``[B, D]`` local features -> ``[world*B, D]`` in rank order, the local shard keeping its
    autograd graph (the others are detached copies). Identity outside a process group.

    Every rank must pass the same batch size (all_gather needs equal shapes)."""
    rank, world = _world()
    if world == 1:
        return x
    import torch.distributed as dist

    gathered = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(gathered, x.detach().contiguous())
    gathered[rank] = x  # put the graph back for our shard: gradients reach only local features
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
