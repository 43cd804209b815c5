"""``edgeclip build --target T [--recipe R] ...``: every plan validated first (``--target all``: one per
target, sharing the teacher, distill and reference stages), then each target built in turn."""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

__all__ = ["main"]


def main(args) -> int:
    from ..build import make_plan
    from ..bundle.labels import resolve_labels
    from ..config import default_recipe, list_targets, load_recipe, load_target
    recipe = load_recipe(args.recipe) if args.recipe else default_recipe()
    labels = resolve_labels(recipe.export, args.labels)  # read and checked once, before any work
    names = list(list_targets()) if args.target == "all" else [args.target]
    plans = []
    for name in names:  # validate every plan before the first build starts
        out = None
        if args.out:
            out = Path(args.out) / load_target(name).name if args.target == "all" else Path(args.out)
        target = load_target(name)
        if getattr(args, "host_only", False) and target.devices:  # decide on this machine's CPU instead
            target = replace(target, devices=())
        plans.append(make_plan(recipe, target, out, labels=labels))
    if args.plan:
        print("\n\n".join(p.describe() for p in plans))
        return 0
    from ..errors import VerificationFailed
    from ..build import run_build
    failed: list[VerificationFailed] = []
    reference = Path(args.reference) if args.reference else None
    for plan in plans:  # targets share the teacher/distill/reference stages through the cache
        try:
            run_build(plan, force=args.force, reference=reference)
        except VerificationFailed as e:
            if len(plans) == 1:
                raise
            print(f"edgeclip: target {plan.target.name}: {e}", file=sys.stderr)
            failed.append(e)
    if failed:
        raise VerificationFailed(f"{len(failed)} of {len(plans)} targets fell short; see above")
    return 0
