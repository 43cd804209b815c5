"""``edgeclip distill``: a recipe's distillation stages outside any build, one process or many.

    edgeclip distill --recipe R [--stage K] [--device auto|cpu|cuda] [--out ROOT]
    torchrun --nproc_per_node=N [--nnodes M --rdzv-endpoint HOST:PORT ...] -m edgeclip distill --recipe R

Trains stages 1..K (all by default) into the stage cache ``edgeclip build`` uses for the recipe
(``ROOT/.cache``, ``ROOT`` = ``build/<recipe>`` unless ``--out``), so a build of any target under
``ROOT`` afterwards finds them (its stage log says cached). Under ``torchrun`` the student trains
data-parallel (gloo on CPU, nccl on CUDA; bf16 autocast on CUDA): every rank holds the teacher,
takes its shard of each global batch (``batch_size`` is the global batch), and the losses gather
features across ranks where they need the whole batch (InfoNCE, affinity mimicking); rank 0
writes checkpoints and the stage's result. A killed run resumes from the last checkpoint when
rerun with the same command. The teacher must be in the cache already when it is pretrained
(``edgeclip pretrain`` first): ranks must not race to train it.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from .. import tool_versions
from ..build.context import default_root
from ..errors import InputError

__all__ = ["run_distill", "main"]


def _check_teacher_cached(recipe, root: Path) -> None:
    """Under torchrun a pretrained teacher must exist: the ranks cannot all train it, and rank 0
    alone cannot while the others wait inside the same process group."""
    from ..build.stages.teacher import teacher_key
    if not recipe.pretrain or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    folder = root / ".cache" / f"teacher-{teacher_key(recipe, tool_versions()['torch'])}"
    if not (folder / ".complete").exists():
        raise InputError(f"under torchrun the pretrained teacher must exist already: run 'edgeclip pretrain "
                         f"--recipe {recipe.source or recipe.name}"
                         + (f" --out {root}" if root != default_root(recipe.name) else "") + "' once, then distill")


def run_distill(recipe, out_root: Path | None = None, upto: int | None = None, device: str = "auto") -> list[dict]:
    """Train (or reuse) the recipe's distill stages 1..``upto``; one row per stage (rank 0's view)."""
    from ..build import stages
    from ..build.cache import BuildLock
    from ..build.context import BuildContext
    from ..build.plan import Plan
    from ..distill import barrier, resolve_device, setup_distributed, teardown

    if not recipe.distill:
        raise InputError(f"recipe {recipe.name!r} has no distill stages; add a 'distill:' list "
                         "(see recipes/tinyclip-embedded.yaml)")
    n = len(recipe.distill)
    if upto is not None and not 1 <= upto <= n:
        raise InputError(f"--stage {upto}: the recipe has distill stages 1..{n}")
    root = Path(out_root) if out_root else default_root(recipe.name)
    _check_teacher_cached(recipe, root)
    # one process group for every stage (the trainer then leaves it alone); joined before any work
    info = setup_distributed(resolve_device(device, int(os.environ.get("LOCAL_RANK", "0"))))
    try:
        plan = Plan(recipe=recipe, target=None, out_dir=root / "distill", towers=())
        lock = BuildLock(plan.out_dir) if info.is_main else contextlib.nullcontext()  # one lock per job
        with lock:
            ctx = BuildContext.create(plan, steps=1 + (upto or n))
            if info.is_main:
                teacher_dir, key = stages.teacher(ctx)
            barrier()  # rank 0 has the teacher's folder in the cache
            if not info.is_main:
                from ..build.stages.teacher import teacher_key
                key = teacher_key(recipe, ctx.versions["torch"])
                teacher_dir = ctx.cache.path("teacher", key)
            t0 = time.perf_counter()
            stages.distill(ctx, teacher_dir, key, upto=upto, device=device)
        rows = []
        for st, folder in ctx.distill_dirs:
            rec = json.loads((folder / "distill.json").read_text()) if (folder / "distill.json").exists() else {}
            rows.append({"method": st.method, "name": st.name, "folder": folder, "steps": rec.get("steps"),
                         "world_size": rec.get("world_size"), "device": rec.get("device"),
                         "precision": rec.get("precision"), "samples_per_s": rec.get("samples_per_s"),
                         "final_loss": rec.get("final_loss")})
        if rows:
            from ..build.run import teacher_student_table
            rows[-1]["seconds"] = time.perf_counter() - t0
            rows[-1]["teacher_student"] = teacher_student_table(ctx.distill_dirs)
        return rows
    finally:
        teardown(info)


def main(args) -> int:
    """``edgeclip distill [--recipe R] [--stage K] [--device D] [--out ROOT]``."""
    from .._io import format_table
    from ..config import default_recipe, load_recipe
    recipe = load_recipe(args.recipe) if args.recipe else default_recipe()
    rows = run_distill(recipe, Path(args.out) if args.out else None, args.stage, args.device)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    table = [["stage", "method", "steps", "ranks", "device", "precision", "samples/s", "final loss"]]
    for i, r in enumerate(rows, 1):
        table.append([f"{i} {r['name'] or ''}".strip(), r["method"], str(r["steps"]), str(r["world_size"]),
                      str(r["device"]), str(r["precision"]),
                      f"{r['samples_per_s']:.1f}" if r["samples_per_s"] else "-",
                      f"{r['final_loss']:.4f}" if r["final_loss"] is not None else "-"])
    print(format_table(table))
    if rows and rows[-1].get("teacher_student"):
        print("\n" + rows[-1]["teacher_student"])
    if rows:
        print(f"\nlast stage: {rows[-1]['folder']}\n  `edgeclip build --recipe {recipe.source or recipe.name}"
              + (f" --out {Path(args.out) / '<target>'}" if args.out else "") + " --target T` reuses it")
    return 0
