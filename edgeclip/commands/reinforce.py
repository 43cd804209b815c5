"""``edgeclip reinforce``: write a recipe's MobileCLIP reinforced dataset once, outside any build.

The teacher ensemble is the recipe's teacher (pretrained first through the shared stage cache,
exactly as ``edgeclip pretrain`` does, when the recipe says so) plus the stage's extra
``teachers``; the data is ``data.train``; the options are the mobileclip stage's ``reinforce``.
Point the stage's ``options.reinforced`` at the output to train from it. Under ``torchrun``
every rank writes its own shards (``distill/reinforce.py``); the teacher must then exist already
(``edgeclip pretrain`` first), since the ranks must not race to train it.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from .. import tool_versions
from ..build.context import default_root
from ..errors import InputError

__all__ = ["run_reinforce", "main"]


def _stage(recipe, index: int | None):
    stages = [(i, st) for i, st in enumerate(recipe.distill, 1) if st.method == "mobileclip"]
    if not stages:
        raise InputError(f"recipe {recipe.name!r} has no mobileclip distill stage to reinforce data for; "
                         "add one (see recipes/mobileclip-embedded.yaml)")
    if index is None:
        return stages[0][1]
    for i, st in stages:
        if i == index:
            return st
    raise InputError(f"--stage {index}: not a mobileclip stage of {recipe.name!r}; mobileclip stages: "
                     f"{', '.join(str(i) for i, _ in stages)}")


def _teacher(recipe):
    from ..models import load_model

    if not recipe.pretrain:
        return load_model(recipe.teacher).eval()
    if int(os.environ.get("WORLD_SIZE", 1)) > 1:
        from ..build.cache import StageCache
        from ..build.stages.teacher import teacher_key

        root = default_root(recipe.name)
        hit = StageCache(root / ".cache", root / "pretrain-log.jsonl").cached(
            "teacher", teacher_key(recipe, tool_versions()["torch"]))
        if hit is None:
            raise InputError(f"under torchrun the teacher must exist already: run 'edgeclip pretrain "
                             f"--recipe {recipe.source or recipe.name}' once, then reinforce")
        return load_model(f"file:{hit / 'model.safetensors'}").eval()
    from .pretrain import run_pretrain

    return load_model(f"file:{run_pretrain(recipe)['model']}").eval()


def run_reinforce(recipe, out: Path | None = None, stage_index: int | None = None) -> dict:
    from ..distill.mobileclip import ensure_reinforced, parse_options

    stage = _stage(recipe, stage_index)
    opts = parse_options(stage.options)
    if recipe.data.train is None:
        raise InputError(f"recipe {recipe.name!r} has no data.train to reinforce")
    out = Path(out) if out else default_root(recipe.name) / "reinforced"
    t0 = time.perf_counter()
    opts = type(opts)(**{**opts.__dict__, "reinforced": None})  # always write here, never reuse
    ensure_reinforced(recipe, opts, _teacher(recipe), recipe.teacher, out)
    from ..data.reinforced import read_index

    return {"out": out, "index": read_index(out), "seconds": time.perf_counter() - t0}


def main(args) -> int:
    """``edgeclip reinforce [--recipe R] [--out DIR] [--stage N]``."""
    from ..config import default_recipe, load_recipe
    recipe = load_recipe(args.recipe) if args.recipe else default_recipe()
    res = run_reinforce(recipe, Path(args.out) if args.out else None, args.stage)
    ix = res["index"]
    teachers = ", ".join(f"{t['uri']} ({t['dim']})" for t in ix["teachers"])
    print(f"reinforced {ix['samples']} samples in {len(ix['shards'])} shards ({res['seconds']:.0f} s): "
          f"{ix['k']} augmentations, {ix['syn']} synthetic captions, {ix['dtype']}; teachers {teachers}\n"
          f"  {res['out']}\n  train from it with options.reinforced: {res['out']}")
    return 0
