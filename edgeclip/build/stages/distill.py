"""The distill stages: each of the recipe's ``distill`` entries, run by its method's module.

Every stage mimics the recipe's teacher and starts from the previous stage's model; its key
chains the previous key, so a changed earlier stage reruns every later one.
"""
from __future__ import annotations

from pathlib import Path

from ..._io import stable_hash

__all__ = ["distill"]


def distill(ctx, teacher_dir: Path, teacher_key: str) -> tuple[Path, str]:
    """Run (or reuse) every distill stage; the last model's folder and key (the teacher's when none)."""
    from ...distill import METHODS
    r = ctx.plan.recipe
    model_dir, key = teacher_dir, teacher_key
    ctx.distill_dirs = []  # (stage, folder): the bundle reports each stage's record
    for i, st in enumerate(r.distill):
        key = stable_hash("distill", key, st, r.data.train, r.seed)
        prev = model_dir

        def run(tmp: Path, st=st, prev=prev, key=key):
            METHODS.get(st.method).run(teacher_dir=teacher_dir, init_dir=prev, stage=st, recipe=r, out=tmp,
                                       checkpoint_dir=ctx.cache.root / f"ckpt-distill-{key}")

        model_dir = ctx.timed(f"distill {i + 1}/{len(r.distill)} {st.method}", "distill", key, ctx.cache, run)
        ctx.distill_dirs.append((st, model_dir))
    return model_dir, key
