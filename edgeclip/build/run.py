"""``edgeclip build``: stage order, caching and resume, from recipe to verified bundle.

Stages: load teacher -> distill (0..n) -> reference -> per artifact: quantize+export -> verify
-> twin (on each emulated ARM core the target names: ARM accuracy, instructions per inference)
-> bench (load, memory) -> mixed precision (variants below the gates rebuilt with their most
sensitive layers in float) -> rounds (every artifact timed in interleaved rounds beside the
machine's yardstick) -> select -> bundle. Each stage's output folder is keyed by a hash of its inputs
(recipe section, upstream keys, tool versions) and written atomically by ``StageCache``, so a
rerun skips finished stages and an edited quantization section reruns only what it changes.
Teacher, distill and reference stages live in ``<out>/../.cache`` so the targets of one recipe
share them (``--target all``).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from .._io import format_table
from ..errors import VerificationFailed
from . import stages
from .cache import BuildLock
from .context import ArtifactResult, BuildContext, check_force, default_root
from .plan import Plan
from .stages.twin import ranking_device, twin_count

__all__ = ["run_build", "run_reference", "summary_table"]


def run_build(plan: Plan, force: str | None = None, reference: Path | None = None) -> int:
    """``reference``: a folder written by ``edgeclip reference``, used instead of computing one
    once it is checked to belong to this build's model (else a one-line InputError)."""
    check_force(force)  # before the lock: a bad --force writes nothing
    if reference is not None:  # a missing or foreign-format folder fails before any work starts
        from ..verify.refstore import read_info
        read_info(reference)
    with BuildLock(plan.out_dir):
        ctx = BuildContext.create(plan, force, reference)
        model_dir, model_key = stages.teacher_and_distill(ctx)
        ref_dir, ref_key = stages.reference(ctx, model_dir, model_key)
        results = [stages.artifact(ctx, planned, model_dir, model_key, ref_dir, ref_key)
                   for planned in plan.artifacts]
        results = stages.mixed_precision(ctx, results, model_dir, model_key, ref_dir, ref_key)
        ctx.yardstick = stages.rounds(ctx, results, model_dir)  # before select: it compares these p50s
        stages.select(ctx, results)
        # the bundle is rewritten in place: drop the previous manifest first, so a build killed
        # halfway through never leaves the old manifest.json vouching for a mix of old and new files
        (plan.out_dir / "manifest.json").unlink(missing_ok=True)
        report_path = stages.bundle(ctx, model_dir, ref_dir, results)
        pair = teacher_student_table(ctx.distill_dirs)
    if pair:
        print("\n" + pair)
    print(summary_table(results, report_path, ranking_device(plan.target)))
    from ..verify.refstore import provenance, provenance_md
    print(provenance_md(provenance(ref_dir, "stored" if reference else "computed", reference)))
    missing = _towers_without_shipped(results)
    if missing:
        from ..verify.gate import format_shortfalls
        short = [s for r in results for s in r.shortfalls]
        if short:
            print("\nfell short of the target's thresholds:\n" + format_shortfalls(short))
        from .stages.select import budget_miss
        miss = budget_miss(results, plan.target.budgets)
        raise VerificationFailed(
            f"no artifact passed verification{' and the budgets' if miss else ''} for {', '.join(missing)}"
            f"{'; ' + miss if miss else ''}; see the table above and {report_path}")
    return 0


def run_reference(recipe, out_dir: Path | None = None, device: str | None = None) -> dict:
    """``edgeclip reference``: the recipe's teacher/distill stages and its fp32 reference, through
    the stage cache a build of the same recipe uses (``<out>/../.cache``), copied to ``out_dir``.

    ``device``: auto (None; cuda when present, else cpu), cpu or cuda (an error when absent)."""
    from ..verify.refstore import export_reference, resolve_device
    device = resolve_device(device)
    out = Path(out_dir) if out_dir else default_root(recipe.name) / "reference"
    plan = Plan(recipe=recipe, target=None, out_dir=out, towers=())
    t0 = time.perf_counter()
    with BuildLock(out):
        ctx = BuildContext.create(plan, steps=2 + len(recipe.distill))
        model_dir, model_key = stages.teacher_and_distill(ctx)
        ref_dir, _key = stages.reference(ctx, model_dir, model_key, device=device)
        export_reference(ref_dir, out)
    info = json.loads((out / "reference.json").read_text())
    return {"out": out, "info": info, "seconds": time.perf_counter() - t0}


def _towers_without_shipped(results: list[ArtifactResult]) -> list[str]:
    groups: dict[str, bool] = {}
    for r in results:
        k = f"{r.planned.backend}/{r.planned.tower}"
        groups[k] = groups.get(k, False) or r.shipped
    return [k for k, ok in groups.items() if not ok]


def teacher_student_table(distill_dirs) -> str:
    """The recipe's teacher beside its final student (parameters, held-out zero-shot accuracy and
    retention), for the build's summary; '' for a recipe without distillation."""
    from ..verify.distill_summary import distill_summaries, teacher_student_rows
    rows = teacher_student_rows(distill_summaries(distill_dirs)) if distill_dirs else []
    return format_table(rows) if rows else ""


def summary_table(results: list[ArtifactResult], report_path: Path, device: str | None = None) -> str:
    """``device``: the core whose instruction counts ranked the variants, shown beside host ms."""
    rows = [["artifact", "size MB", *([f"M instr {device.split(':')[-1]}"] if device else []), "p50 ms (host)" if device
             else "p50 ms", "cosine", "top1 agr", "runner", "result"]]
    for r in results:
        size = r.artifact.get("size_bytes", 0) / 1e6
        p50 = f"{r.latency['p50_ms']:.2f}" if r.latency else "-"
        cos = f"{r.metrics['cosine_mean']:.5f}" if r.metrics.get("cosine_mean") is not None else "-"
        agr = f"{r.metrics['top1_agreement']:.3f}" if r.metrics.get("top1_agreement") is not None else "-"
        runner = (r.runner or "none") + (" (emulated)" if r.emulated else "")
        if r.shipped:
            res = ("shipped" if r.verified else "shipped, UNVERIFIED") + (", recommended" if r.recommended else "")
        else:
            res = f"not shipped: {r.why_not_shipped}"
        count = twin_count(r, device)
        instr = [f"{count / 1e6:.4g}" if count else "-"] if device else []
        rows.append([r.name, f"{size:.2f}", *instr, p50, cos, agr, runner, res])
    return "\n".join(["", format_table(rows), "", f"report: {report_path}"])
