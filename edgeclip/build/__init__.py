"""``edgeclip build`` and ``edgeclip reference``: from recipe x target to a verified bundle.

    plan.py      make_plan(recipe, target): recipe x target x toolchains, validated before work
    context.py   BuildContext (what every stage shares), ArtifactResult, Progress
    stages/      one module per stage: teacher, distill, reference, artifact, twin, mixed, rounds, select, bundle
    cache.py     StageCache (stage folders keyed by their inputs, atomic), BuildLock
    evalset.py   the fixed evaluation set (real pixels, real captions, the embedded world)
    run.py       run_build / run_reference: stage order, resume, the summary table
"""
from __future__ import annotations

from .plan import Plan, PlannedArtifact, make_plan
from .run import run_build, run_reference

__all__ = ["Plan", "PlannedArtifact", "make_plan", "run_build", "run_reference"]
