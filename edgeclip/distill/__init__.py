"""Distillation: losses (pure functions), the shared trainer, and one module per method.

    METHODS                     Registry("distillation method"): name -> module with
                                check(stage) (plan-time validation) and run(teacher_dir, init_dir,
                                stage, recipe, out, checkpoint_dir, device): tinyclip, mobileclip, dcclip
    clip_loss(image_emb, text_emb, logit_scale)      symmetric InfoNCE, gathered across ranks
    gather_features(x)                               all_gather, gradient kept for the local shard
    Trainer(module, loss_fn, data, TrainConfig(...)).fit(stop_at=None) -> TrainResult
    StepBatches(dataset, batch_size, seed=, collate=)  step -> batch, resumable, rank-sharded
    pretrain_clip(model, data=None, steps, batch_size, lr, weight_decay, warmup_steps, seed,
                  device) -> ClipModel               train a CLIP from scratch (default teacher)
    zero_shot_accuracy(model, kind, n, split) / evaluate_synthetic(model)
    training_pairs(source, image_size, seed) / distill_batches(...)   a recipe's data.train as pairs / batches
    setup_distributed(device) / barrier() / teardown(info) / resolve_device(device)
                                                     the torchrun process group (gloo / nccl)

Importing this package imports neither torch nor any method: names load on first use.
"""
from __future__ import annotations

import importlib

from ..registry import Registry

__all__ = [
    "METHODS", "clip_loss", "clip_logits", "gather_features", "affinity_loss", "tinyclip_loss", "Trainer", "TrainConfig",
    "TrainResult", "StepBatches", "pretrain_clip", "train_clip", "PRETRAIN_DEFAULTS",
    "zero_shot_accuracy", "evaluate_synthetic", "ZeroShotScore", "retrieval_r1", "training_pairs", "distill_batches",
    "setup_distributed", "barrier", "teardown", "resolve_device",
]

METHODS: Registry = Registry("distillation method")


class _LazyMethod:
    """Stands in the registry for ``edgeclip.distill.<module>``, imported on first attribute use,
    so listing methods stays light: ``METHODS.register("tinyclip", _LazyMethod("tinyclip"))``."""

    def __init__(self, module: str):
        self.module = module

    def __getattr__(self, attr: str):
        return getattr(importlib.import_module(f".{self.module}", __name__), attr)


METHODS.register("tinyclip", _LazyMethod("tinyclip"))
METHODS.register("mobileclip", _LazyMethod("mobileclip"))
METHODS.register("dcclip", _LazyMethod("dcclip"))

_LAZY = {
    "clip_loss": "losses", "clip_logits": "losses", "gather_features": "losses",
    "affinity_loss": "losses", "tinyclip_loss": "losses",
    "Trainer": "trainer", "TrainConfig": "trainer", "TrainResult": "trainer",
    "StepBatches": "batches",
    "pretrain_clip": "pretrain", "train_clip": "pretrain", "PRETRAIN_DEFAULTS": "pretrain",
    "zero_shot_accuracy": "evaluate", "evaluate_synthetic": "evaluate", "ZeroShotScore": "evaluate",
    "retrieval_r1": "evaluate", "training_pairs": "_data", "distill_batches": "_data",
    "setup_distributed": "_dist", "barrier": "_dist", "teardown": "_dist", "resolve_device": "_dist",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
