"""``edgeclip pretrain``: train a recipe's builtin teacher once, score it, share it with builds.

The teacher lands in ``<root>/.cache/teacher-<key>`` (``<root>`` = ``build/<recipe>`` unless
``--out``), the same stage folder ``edgeclip build`` uses for that recipe, so a later build of any
target reuses it. Next to the weights, ``zero_shot.json`` holds held-out zero-shot top-1 on the
embedded world (shape, colour and unseen shape-colour pairs) with English and Chinese prompts,
and image->text / text->image retrieval R@1 over held-out scenes with their canonical captions.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from .. import tool_versions
from .._io import write_json_atomic
from ..build.cache import BuildLock, StageCache, drop_resume_checkpoint
from ..build.context import default_root
from ..build.stages.teacher import make_teacher, teacher_key
from ..errors import InputError

__all__ = ["run_pretrain", "score_teacher", "format_scores", "main"]

LANGS = ("en", "zh")


def score_teacher(model_path: Path, n: int = 200, seed: int = 0) -> dict:
    """{lang: {kind: {accuracy, chance, n, classes}}} on the world's held-out split."""
    import torch

    from ..distill.evaluate import evaluate_synthetic, retrieval_r1
    from ..models import load_model

    model = load_model(f"file:{model_path}").eval()
    out: dict = {}
    with torch.no_grad():
        for lang in LANGS:
            scores = evaluate_synthetic(model, n=n, split="heldout", seed=seed, lang=lang)
            out[lang] = {k: {"accuracy": s.accuracy, "chance": s.chance, "n": s.n, "classes": s.classes}
                         for k, s in scores.items()}
            r = retrieval_r1(model, n=n, split="heldout", seed=seed, lang=lang)
            out[lang]["retrieval-i2t"] = {"accuracy": r["i2t_r1"], "chance": r["chance"], "n": n, "classes": n}
            out[lang]["retrieval-t2i"] = {"accuracy": r["t2i_r1"], "chance": r["chance"], "n": n, "classes": n}
    return out


def format_scores(scores: dict) -> str:
    rows = [f"{'prompts':<8} {'task':<13} {'top-1':>7} {'chance':>7}"]
    for lang, kinds in scores.items():
        for kind, s in kinds.items():
            rows.append(f"{lang:<8} {kind:<13} {s['accuracy']:7.1%} {s['chance']:7.1%}")
    return "\n".join(rows)


def run_pretrain(recipe, out_root: Path | None = None, force: bool = False) -> dict:
    """Pretrain (or find cached) the recipe's teacher; return its path, scores and timing."""
    if recipe.pretrain is None:
        raise InputError(f"recipe {recipe.name!r} has no 'pretrain' section: its teacher "
                         f"{recipe.teacher} is used as is; add pretrain: {{steps: ...}} to train one")
    root = Path(out_root) if out_root else default_root(recipe.name)
    cache = StageCache(root / ".cache", root / "pretrain-log.jsonl")
    if force:
        cache.forced = {"teacher"}
    key = teacher_key(recipe, tool_versions()["torch"])
    t0 = time.perf_counter()
    with BuildLock(root):
        folder = cache.cached("teacher", key)
        cached = folder is not None
        if not cached:
            with cache.build("teacher", key) as tmp:
                make_teacher(recipe, key, cache.root, tmp)
            folder = cache.path("teacher", key)
            drop_resume_checkpoint(cache.root, "teacher", key)
        scores_path = folder / "zero_shot.json"
        stale = scores_path.exists() and "retrieval-i2t" not in json.loads(scores_path.read_text()).get("en", {})
        if stale or not scores_path.exists():  # written beside the weights, outside the stage's key
            write_json_atomic(scores_path, score_teacher(folder / "model.safetensors", seed=recipe.seed))
    return {"model": folder / "model.safetensors", "cached": cached, "seconds": time.perf_counter() - t0,
            "scores": json.loads(scores_path.read_text())}


def main(args) -> int:
    """``edgeclip pretrain [--recipe R] [--out DIR] [--force]``."""
    from ..config import default_recipe, load_recipe
    recipe = load_recipe(args.recipe) if args.recipe else default_recipe()
    res = run_pretrain(recipe, Path(args.out) if args.out else None, force=args.force)
    how = "found cached" if res["cached"] else f"trained in {res['seconds']:.0f} s"
    print(f"teacher {recipe.teacher} ({recipe.name}): {how}\n  {res['model']}\n")
    print(format_scores(res["scores"]))
    return 0
