"""The distill stages: each of the recipe's ``distill`` entries, run by its method's module.

Every stage mimics the recipe's teacher and starts from the previous stage's model; its key
chains the previous key, so a changed earlier stage reruns every later one.

Under ``torchrun`` (``edgeclip distill``) every rank trains (the trainer wraps the student in
DDP; the data shards by rank), but only rank 0 writes the stage's folder into the shared cache;
the others train into a throwaway folder and wait at a barrier until rank 0 has published it,
since the next stage starts from it. The key holds neither the device nor the world size: a
two-rank result is the same stage as a one-process one, and a later build reuses it.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from ..._io import stable_hash
from ..cache import drop_resume_checkpoint, resume_checkpoint_dir

__all__ = ["distill", "stage_keys"]


def stage_keys(recipe, teacher_key: str) -> list[str]:
    """The cache key of each distill stage, in order (each chains the one before)."""
    keys, key = [], teacher_key
    for st in recipe.distill:
        key = stable_hash("distill", key, st, recipe.data.train, recipe.seed)
        keys.append(key)
    return keys


def distill(ctx, teacher_dir: Path, teacher_key: str, upto: int | None = None,
            device: str = "auto") -> tuple[Path, str]:
    """Run (or reuse) the distill stages (the first ``upto`` of them; all by default); the last
    model's folder and key (the teacher's when none)."""
    from ...distill import METHODS, barrier
    r = ctx.plan.recipe
    rank = _rank()
    model_dir, key = teacher_dir, teacher_key
    ctx.distill_dirs = []  # (stage, folder): the bundle reports each stage's record
    stages = list(zip(r.distill, stage_keys(r, teacher_key)))[:upto]
    for i, (st, key) in enumerate(stages):
        prev = model_dir

        def run(tmp: Path, st=st, prev=prev, key=key):
            METHODS.get(st.method).run(teacher_dir=teacher_dir, init_dir=prev, stage=st, recipe=r, out=tmp,
                                       checkpoint_dir=resume_checkpoint_dir(ctx.cache.root, "distill", key), device=device)

        if rank == 0:
            model_dir = ctx.timed(f"distill {i + 1}/{len(r.distill)} {st.method}", "distill", key, ctx.cache, run)
        else:  # train alongside rank 0 (DDP needs every rank), publish nothing
            model_dir = ctx.cache.path("distill", key)
            if not (model_dir / ".complete").exists():
                with tempfile.TemporaryDirectory(prefix=f"edgeclip-rank{rank}-") as tmp:
                    run(Path(tmp))
        barrier()  # rank 0 has published this stage: the next one starts from it
        if rank == 0:
            drop_resume_checkpoint(ctx.cache.root, "distill", key)
        ctx.distill_dirs.append((st, model_dir))
    return model_dir, key


def _rank() -> int:
    import os
    return int(os.environ.get("RANK", "0"))
