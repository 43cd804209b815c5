"""The stages of one build, one module each, every one a function over a ``BuildContext``.

Every stage computes its cache key from its inputs first, then either reuses the finished
folder or builds it through a temporary one. Keys chain: an artifact's key includes the
model's key, so a new student invalidates every artifact built from the old one.

    teacher   load (and pretrain) the recipe's teacher       teacher.py
    distill   each distillation stage of the recipe          distill.py
    reference fp32 torch outputs on the evaluation set        reference.py
    artifact  export -> verify -> bench of one planned variant artifact.py
    twin      the artifact on each emulated ARM core (devices) twin.py
    mixed     sensitivity, then float layers for gate misses  mixed.py
    rounds    all timed artifacts in interleaved rounds       rounds.py
    select    gate every variant, choose what ships           select.py
    bundle    artifacts, tokenizer, labels, reports, manifest bundle.py
"""
from __future__ import annotations

from pathlib import Path

from .artifact import artifact
from .bundle import bundle
from .distill import distill
from .mixed import mixed_precision
from .reference import reference
from .rounds import rounds
from .select import select
from .teacher import teacher

__all__ = ["teacher", "distill", "teacher_and_distill", "reference", "artifact", "mixed_precision", "rounds", "select", "bundle"]


def teacher_and_distill(ctx) -> tuple[Path, str]:
    """The model the artifacts are built from (the last distill stage's, else the teacher) and its key."""
    teacher_dir, key = teacher(ctx)
    return distill(ctx, teacher_dir, key)
